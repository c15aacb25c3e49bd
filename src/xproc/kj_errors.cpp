#include "xproc/kj_errors_internal.h"

#include <string>

namespace xproc::detail {

void rethrow_kj(const kj::Exception& error, ErrorKind otherwise, std::string_view context) {
  std::string_view text(error.getDescription().cStr());
  switch (error.getType()) {
    case kj::Exception::Type::DISCONNECTED:
      throw ConnectionError(std::string(context) + "connection lost: " + std::string(text));
    case kj::Exception::Type::OVERLOADED:
      throw ConnectionError(std::string(context) + "peer overloaded: " + std::string(text));
    default: break;
  }
  constexpr std::string_view kRemotePrefix = "remote exception: ";
  std::string_view named = text.starts_with(kRemotePrefix) ? text.substr(kRemotePrefix.size()) : text;
  if (const size_t colon = named.find(": "); colon != std::string_view::npos) {
    if (ErrorKind kind = error_kind_named(named.substr(0, colon)); kind != ErrorKind::kError) {
      throw_error(kind, named.substr(colon + 2));
    }
  } else if (ErrorKind kind = error_kind_named(named); kind != ErrorKind::kError) {
    throw_error(kind, {});  // "Empty" alone: the class's own message
  }
  throw_error(otherwise, std::string(context) + std::string(text));
}

}  // namespace xproc::detail
