// Maps xproc::Error subclasses to Python names and back.
#include "xproc/rpc/remote_error.h"

#include <string>
#include <typeinfo>

#include "xproc/errors.h"

namespace xproc::rpc {
namespace {

constexpr std::string_view kRemotePrefix = "remote exception: ";

std::string_view python_name_of(const Error& e) {
  // Most derived first: BrokenPipeError is a ConnectionError.
  if (dynamic_cast<const Empty*>(&e)) return "Empty";
  if (dynamic_cast<const Full*>(&e)) return "Full";
  if (dynamic_cast<const KeyError*>(&e)) return "KeyError";
  if (dynamic_cast<const IndexError*>(&e)) return "IndexError";
  if (dynamic_cast<const ValueError*>(&e)) return "ValueError";
  if (dynamic_cast<const TypeError*>(&e)) return "TypeError";
  if (dynamic_cast<const AttributeError*>(&e)) return "AttributeError";
  if (dynamic_cast<const RuntimeError*>(&e)) return "RuntimeError";
  if (dynamic_cast<const BrokenBarrierError*>(&e)) return "BrokenBarrierError";
  if (dynamic_cast<const TimeoutError*>(&e)) return "TimeoutError";
  if (dynamic_cast<const AuthenticationError*>(&e)) return "AuthenticationError";
  if (dynamic_cast<const MessageTooLarge*>(&e)) return "MessageTooLarge";
  if (dynamic_cast<const DecodeError*>(&e)) return "DecodeError";
  return "RuntimeError";
}

}  // namespace

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
    return remote_error(python_name_of(e), e.what());
  } catch (const std::bad_alloc&) {
    return remote_error("MemoryError", "out of memory");
  } catch (const std::exception& e) {
    return remote_error("RuntimeError", e.what());
  }
}

void rethrow_local(const kj::Exception& error) {
  std::string_view text(error.getDescription().cStr());
  if (error.getType() == kj::Exception::Type::DISCONNECTED) {
    throw ConnectionError("manager connection lost: " + std::string(text));
  }
  if (text.starts_with(kRemotePrefix)) text.remove_prefix(kRemotePrefix.size());
  auto colon = text.find(": ");
  std::string_view name = colon == std::string_view::npos ? std::string_view() : text.substr(0, colon);
  std::string message(colon == std::string_view::npos ? text : text.substr(colon + 2));
  if (name == "Empty") throw Empty(message.empty() ? "queue is empty" : message);
  if (name == "Full") throw Full(message.empty() ? "queue is full" : message);
  if (name == "KeyError") throw KeyError(message);
  if (name == "IndexError") throw IndexError(message);
  if (name == "ValueError") throw ValueError(message);
  if (name == "TypeError") throw TypeError(message);
  if (name == "AttributeError") throw AttributeError(message);
  if (name == "RuntimeError") throw RuntimeError(message);
  if (name == "BrokenBarrierError") throw BrokenBarrierError(message);
  if (name == "TimeoutError") throw TimeoutError(message);
  if (name == "AuthenticationError") throw AuthenticationError(message);
  if (name == "MessageTooLarge") throw MessageTooLarge(message);
  if (name == "DecodeError") throw DecodeError(message);
  if (error.getType() == kj::Exception::Type::OVERLOADED)
    throw ConnectionError("manager overloaded: " + std::string(text));
  throw Error(std::string(text));
}

}  // namespace xproc::rpc
