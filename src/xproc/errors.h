// The exceptions xproc's public C++ API throws, named as Python names them.
//
// Sorted by what the caller can do: Empty/Full/TimeoutError -> retry later or give up;
// EOFError/ConnectionError -> the peer is gone, reconnect or stop; DecodeError/
// MessageTooLarge/ValueError -> the input is wrong, fix it; OSError -> the system said
// no (errno attached). Every error keeps its message; nothing here is kj-specific.
//
// XPROC_ERRORS is the one list of them. Each row: the class (also the name it travels
// under in a Manager's replies, and its Python name), the Python module that defines that
// name, and its C status (XPROC_<status> in bindings/c/include/xproc.h). The Manager's
// wire mapping, the Python translator and the C ABI expand this list; tests/errors_test.cpp
// throws every row through each of them.
#pragma once

#include <cerrno>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#define XPROC_ERRORS(X)                                           \
  X(Empty, "queue", EMPTY)                                        \
  X(Full, "queue", FULL)                                          \
  X(EOFError, "builtins", EOF)                                    \
  X(TimeoutError, "builtins", TIMEOUT)                            \
  X(AuthenticationError, "multiprocessing", AUTHENTICATION_ERROR) \
  X(ConnectionError, "builtins", CONNECTION_ERROR)                \
  X(BrokenPipeError, "builtins", BROKEN_PIPE)                     \
  X(MessageTooLarge, "xproc", MESSAGE_TOO_LARGE)                  \
  X(DecodeError, "xproc", DECODE_ERROR)                           \
  X(BufferTooShort, "multiprocessing", BUFFER_TOO_SHORT)          \
  X(ValueError, "builtins", VALUE_ERROR)                          \
  X(KeyError, "builtins", KEY_ERROR)                              \
  X(IndexError, "builtins", INDEX_ERROR)                          \
  X(TypeError, "builtins", TYPE_ERROR)                            \
  X(RuntimeError, "builtins", RUNTIME_ERROR)                      \
  X(AttributeError, "builtins", ATTRIBUTE_ERROR)                  \
  X(BrokenBarrierError, "threading", BROKEN_BARRIER)              \
  X(MemoryError, "builtins", NO_MEMORY)                           \
  X(OSError, "builtins", OS_ERROR)                                \
  X(PermissionError, "builtins", PERMISSION_ERROR)

namespace xproc {

// One value per row of XPROC_ERRORS, named k<Class>, and kError for the base class:
// what Error::kind() returns, so that a caller can switch on an error without a chain of
// catch clauses.
enum class ErrorKind {
  kError,  // the base class itself: travels and is raised as RuntimeError
#define XPROC_ERROR_KIND(Class, module, status) k##Class,
  XPROC_ERRORS(XPROC_ERROR_KIND)
#undef XPROC_ERROR_KIND
};

// Base of everything xproc throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  // Which row of XPROC_ERRORS this is (the most derived class's).
  virtual ErrorKind kind() const noexcept { return ErrorKind::kError; }
};

// A non-blocking or timed get found no message (Python: queue.Empty).
class Empty : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kEmpty; }
  Empty() : Error("queue is empty") {}
  using Error::Error;
};

// A non-blocking or timed put found no room (Python: queue.Full).
class Full : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kFull; }
  Full() : Error("queue is full") {}
  using Error::Error;
};

// The other end closed or died before a whole message arrived (Python: EOFError).
class EOFError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kEOFError; }
  using Error::Error;
};

// A blocking call's timeout ran out where Python raises TimeoutError (join, locks...).
class TimeoutError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kTimeoutError; }
  using Error::Error;
};

// The HMAC challenge-response failed (Python: multiprocessing.AuthenticationError).
class AuthenticationError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kAuthenticationError; }
  using Error::Error;
};

// The peer or server is gone or refused us (Python: ConnectionError).
class ConnectionError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kConnectionError; }
  using Error::Error;
};

// Writing to a connection whose peer has closed it (Python: BrokenPipeError).
class BrokenPipeError : public ConnectionError {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kBrokenPipeError; }
  using ConnectionError::ConnectionError;
};

// A message is larger than the queue or connection accepts; nothing was changed.
class MessageTooLarge : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kMessageTooLarge; }
  using Error::Error;
};

// Bytes that are not a valid message of the expected type (or exceed decode limits).
class DecodeError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kDecodeError; }
  using Error::Error;
};

// recv_bytes_into's buffer cannot hold the message (Python: multiprocessing.BufferTooShort).
// The whole message is in message(); nothing is lost.
class BufferTooShort : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kBufferTooShort; }
  explicit BufferTooShort(std::string message)
      : Error("buffer too short for a message of " + std::to_string(message.size()) + " bytes"),
        message_(std::move(message)) {}
  const std::string& message() const noexcept { return message_; }

 private:
  std::string message_;
};

// A bad argument or a call in the wrong state (Python: ValueError).
class ValueError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kValueError; }
  using Error::Error;
};

// A missing key in a mapping (Python: KeyError).
class KeyError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kKeyError; }
  using Error::Error;
};

// An index out of range (Python: IndexError).
class IndexError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kIndexError; }
  using Error::Error;
};

// A value of the wrong kind (Python: TypeError).
class TypeError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kTypeError; }
  using Error::Error;
};

// An operation in the wrong state, such as releasing a lock one does not hold (Python:
// RuntimeError).
class RuntimeError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kRuntimeError; }
  using Error::Error;
};

// A missing attribute of a Manager namespace (Python: AttributeError).
class AttributeError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kAttributeError; }
  using Error::Error;
};

// A Manager barrier was aborted, reset, or timed out while waiting (Python:
// threading.BrokenBarrierError).
class BrokenBarrierError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kBrokenBarrierError; }
  BrokenBarrierError() : Error("barrier is broken") {}
  using Error::Error;
};

// Memory (or /dev/shm) cannot hold what was asked for, such as a message as large as
// this one (Python: MemoryError). Nothing else changed.
class MemoryError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kMemoryError; }
  using Error::Error;
};

// A system call failed; errno() tells which way (Python: OSError).
class OSError : public Error {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kOSError; }
  // `what` is the message, `error_number` the errno error_number() returns.
  OSError(std::string what, int error_number) : Error(std::move(what)), errno_(error_number) {}
  int error_number() const noexcept { return errno_; }

 private:
  int errno_;
};

// Refused for want of permission, or because a file is not owned and protected as xproc
// requires (Python: PermissionError, an OSError with errno EACCES).
class PermissionError : public OSError {
 public:
  ErrorKind kind() const noexcept override { return ErrorKind::kPermissionError; }
  explicit PermissionError(std::string what, int error_number = EACCES) : OSError(std::move(what), error_number) {}
};

// The name a kind travels under and Python raises ("KeyError"); "RuntimeError" for kError.
std::string_view error_name(ErrorKind kind) noexcept;
// The kind error_name() gives `name`; kError for a name that is not in XPROC_ERRORS.
ErrorKind error_kind_named(std::string_view name) noexcept;
// An error's message as it travels in a Manager's reply: OSError and PermissionError carry
// their errno in front, as Python prints them ("[Errno 13] ...").
std::string error_wire_message(const Error& error);
// Throws the error of `kind` with `message` as error_wire_message() wrote it.
[[noreturn]] void throw_error(ErrorKind kind, std::string_view message);

// Throws OSError "<call>: <strerror(errno)>" with the errno attached.
[[noreturn]] void throw_os_error(std::string_view call, int error_number);

namespace detail {
inline void append_values(std::ostringstream&) {}
template <typename T, typename... Rest>
void append_values(std::ostringstream& out, const T& value, const Rest&... rest) {
  out << (out.tellp() > 0 ? ", " : "") << value;
  append_values(out, rest...);
}
template <typename... Values>
std::string describe_values(const char* names, const Values&... values) {
  std::ostringstream list;
  append_values(list, values...);
  return std::string(names) + " = " + list.str();
}
}  // namespace detail

}  // namespace xproc

// Throws xproc::ValueError with the failed condition and the values involved, e.g.
//   XPROC_REQUIRE(size <= max, "message too large", size, max);
// The first value argument is a human message; the rest are printed with their names.
#define XPROC_REQUIRE(cond, message, ...)                                                                           \
  do {                                                                                                              \
    if (!(cond)) {                                                                                                  \
      throw ::xproc::ValueError(                                                                                    \
          std::string(message) +                                                                                    \
          " (" #cond __VA_OPT__(+std::string("; ") + ::xproc::detail::describe_values(#__VA_ARGS__, __VA_ARGS__)) + \
          ")");                                                                                                     \
    }                                                                                                               \
  } while (false)
