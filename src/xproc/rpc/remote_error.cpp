// Errors across Cap'n Proto RPC, by the names of XPROC_ERRORS (errors.h).
#include "xproc/rpc/remote_error.h"

#include <string>

#include "xproc/errors.h"
#include "xproc/kj_errors_internal.h"

namespace xproc::rpc {

kj::Exception remote_error(std::string_view python_name, std::string_view message) {
  std::string description(python_name);
  description += ": ";
  description += message;
  return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                       kj::heapString(description.data(), description.size()));
}

void throw_remote(std::string_view python_name, std::string_view message) {
  kj::throwFatalException(remote_error(python_name, message));
}

kj::Exception to_remote(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const kj::Exception& e) {
    return e;
  } catch (const Error& e) {
    return remote_error(error_name(e.kind()), error_wire_message(e));
  } catch (const std::bad_alloc&) {
    return remote_error("MemoryError", "out of memory");
  } catch (const std::exception& e) {
    return remote_error("RuntimeError", e.what());
  }
}

void rethrow_local(const kj::Exception& error) { detail::rethrow_kj(error, ErrorKind::kError, "manager: "); }

}  // namespace xproc::rpc
