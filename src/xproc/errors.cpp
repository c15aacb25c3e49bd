// Helpers behind errors.h: the rows of XPROC_ERRORS by name, and back to exceptions.
#include "xproc/errors.h"

#include <charconv>
#include <cstring>
#include <type_traits>
#include <utility>

namespace xproc {

std::string_view error_name(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::kError: return "RuntimeError";
#define XPROC_ERROR_NAME(Class, module, status) \
  case ErrorKind::k##Class: return #Class;
      XPROC_ERRORS(XPROC_ERROR_NAME)
#undef XPROC_ERROR_NAME
  }
  return "RuntimeError";
}

ErrorKind error_kind_named(std::string_view name) noexcept {
#define XPROC_ERROR_BY_NAME(Class, module, status) \
  if (name == #Class) return ErrorKind::k##Class;
  XPROC_ERRORS(XPROC_ERROR_BY_NAME)
#undef XPROC_ERROR_BY_NAME
  return ErrorKind::kError;
}

std::string error_wire_message(const Error& error) {
  if (const auto* os = dynamic_cast<const OSError*>(&error)) {
    return "[Errno " + std::to_string(os->error_number()) + "] " + error.what();
  }
  return error.what();
}

namespace {

// Splits "[Errno N] text" into N and text; errno 0 when there is no such prefix.
std::pair<int, std::string_view> split_errno(std::string_view message) {
  constexpr std::string_view kPrefix = "[Errno ";
  int number = 0;
  if (!message.starts_with(kPrefix)) return {0, message};
  const char* begin = message.data() + kPrefix.size();
  const char* end = message.data() + message.size();
  auto [after, error] = std::from_chars(begin, end, number);
  if (error != std::errc() || end - after < 2 || after[0] != ']' || after[1] != ' ') return {0, message};
  return {number, std::string_view(after + 2, static_cast<size_t>(end - after - 2))};
}

}  // namespace

// An error of class E with `text` as error_wire_message() wrote it.
template <typename E>
[[noreturn]] void throw_as(std::string_view text) {
  if constexpr (std::is_base_of_v<OSError, E>) {
    auto [number, rest] = split_errno(text);
    if constexpr (std::is_same_v<E, PermissionError>)
      throw E(std::string(rest), number == 0 ? EACCES : number);
    else
      throw E(std::string(rest), number);
  } else if constexpr (std::is_default_constructible_v<E>) {
    if (text.empty()) throw E();  // its own message ("queue is empty")
    throw E(std::string(text));
  } else {
    throw E(std::string(text));
  }
}

void throw_error(ErrorKind kind, std::string_view message) {
  switch (kind) {
    case ErrorKind::kError: throw Error(std::string(message));
#define XPROC_THROW_AS(Class, module, status) \
  case ErrorKind::k##Class: throw_as<Class>(message);
      XPROC_ERRORS(XPROC_THROW_AS)
#undef XPROC_THROW_AS
  }
  throw Error(std::string(message));
}

void throw_os_error(std::string_view call, int error_number) {
  throw OSError(std::string(call) + ": " + std::strerror(error_number), error_number);
}

}  // namespace xproc
