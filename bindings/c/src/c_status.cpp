#include "c_status.h"

#include <kj/exception.h>

#include "xproc/errors.h"
#include "xproc/kj_errors_internal.h"
#include "xproc/version.h"

namespace xproc::c_api {
namespace {

thread_local std::string t_last_error;

}  // namespace

int fail(int code, const char* message) noexcept {
  try {
    t_last_error = message;
  } catch (...) {
    t_last_error.clear();
  }
  return code;
}

void clear_error() noexcept { t_last_error.clear(); }

const char* last_error() noexcept { return t_last_error.c_str(); }

int status_of(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::kError: return XPROC_UNKNOWN_ERROR;
#define XPROC_C_STATUS(Class, module, status) \
  case ErrorKind::k##Class: return XPROC_##status;
      XPROC_ERRORS(XPROC_C_STATUS)
#undef XPROC_C_STATUS
  }
  return XPROC_UNKNOWN_ERROR;
}

int translate_current_exception() noexcept {
  try {
    throw;
  } catch (const Error& e) {
    return fail(status_of(e.kind()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(XPROC_NO_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return fail(XPROC_UNKNOWN_ERROR, e.what());
  } catch (const kj::Exception& e) {
    // The library translates kj's exceptions where they arise; one that slipped through
    // still gets its row when it names one.
    try {
      detail::rethrow_kj(e, ErrorKind::kError);
    } catch (const Error& error) {
      return fail(status_of(error.kind()), error.what());
    } catch (...) {
      return fail(XPROC_UNKNOWN_ERROR, "unknown error");
    }
  } catch (...) {
    return fail(XPROC_UNKNOWN_ERROR, "unknown error");
  }
}

void* copy_out(std::span<const std::byte> bytes) {
  void* out = std::malloc(bytes.empty() ? 1 : bytes.size());
  if (out == nullptr) throw std::bad_alloc();
  if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
  return out;
}

char* copy_text(const std::string& text) {
  auto* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out == nullptr) throw std::bad_alloc();
  std::memcpy(out, text.c_str(), text.size() + 1);
  return out;
}

}  // namespace xproc::c_api

extern "C" {

const char* xproc_strerror(int code) {
  switch (code) {
    case XPROC_OK: return "XPROC_OK: success";
    case XPROC_EMPTY: return "XPROC_EMPTY: no message before the timeout";
    case XPROC_FULL: return "XPROC_FULL: no room before the timeout";
    case XPROC_EOF: return "XPROC_EOF: the other end closed";
    case XPROC_TIMEOUT: return "XPROC_TIMEOUT: timed out";
    case XPROC_VALUE_ERROR: return "XPROC_VALUE_ERROR: bad argument";
    case XPROC_KEY_ERROR: return "XPROC_KEY_ERROR: no such key";
    case XPROC_INDEX_ERROR: return "XPROC_INDEX_ERROR: index out of range";
    case XPROC_TYPE_ERROR: return "XPROC_TYPE_ERROR: wrong kind of value";
    case XPROC_AUTHENTICATION_ERROR: return "XPROC_AUTHENTICATION_ERROR: authentication failed";
    case XPROC_BROKEN_PIPE: return "XPROC_BROKEN_PIPE: the peer is gone";
    case XPROC_CONNECTION_ERROR: return "XPROC_CONNECTION_ERROR: cannot reach the peer or server";
    case XPROC_OS_ERROR: return "XPROC_OS_ERROR: a system call failed";
    case XPROC_MESSAGE_TOO_LARGE: return "XPROC_MESSAGE_TOO_LARGE: message too large";
    case XPROC_DECODE_ERROR: return "XPROC_DECODE_ERROR: not a valid message";
    case XPROC_RUNTIME_ERROR: return "XPROC_RUNTIME_ERROR: operation not allowed in this state";
    case XPROC_INVALID_ARGUMENT: return "XPROC_INVALID_ARGUMENT: NULL handle or out-parameter";
    case XPROC_NO_MEMORY: return "XPROC_NO_MEMORY: out of memory";
    case XPROC_UNKNOWN_ERROR: return "XPROC_UNKNOWN_ERROR: unexpected error";
    case XPROC_PERMISSION_ERROR: return "XPROC_PERMISSION_ERROR: not allowed, or not owned as required";
    case XPROC_BUFFER_TOO_SHORT: return "XPROC_BUFFER_TOO_SHORT: the buffer cannot hold the message";
    case XPROC_ATTRIBUTE_ERROR: return "XPROC_ATTRIBUTE_ERROR: no such attribute";
    case XPROC_BROKEN_BARRIER: return "XPROC_BROKEN_BARRIER: the barrier is broken";
    default: return "unknown xproc status code";
  }
}

const char* xproc_last_error_message(void) { return xproc::c_api::last_error(); }

void xproc_free(void* buffer) { std::free(buffer); }

const char* xproc_version(void) { return XPROC_VERSION_STRING; }

}  // extern "C"
