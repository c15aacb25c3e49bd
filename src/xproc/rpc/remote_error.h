// Python-named errors across Cap'n Proto RPC.
//
// A Manager call that fails raises a kj::Exception whose description is "<PythonName>:
// <message>" ("KeyError: 'a'"), so clients in any language can map it back to their own
// exception; the client side here turns it into the xproc::Error of that name. A dropped
// connection (kj DISCONNECTED) becomes ConnectionError.
#pragma once

#include <exception>
#include <string_view>

#include <kj/exception.h>

namespace xproc::rpc {

// The kj::Exception carrying `python_name` and `message` (type FAILED).
kj::Exception remote_error(std::string_view python_name, std::string_view message);

// Throws remote_error(...): for code running inside a server promise chain, where a
// std::exception would lose its name.
[[noreturn]] void throw_remote(std::string_view python_name, std::string_view message);

// What a server method threw, as a remote error: an xproc::Error travels under its row's
// name in XPROC_ERRORS (OSError with its errno); a kj::Exception passes through;
// std::bad_alloc is a MemoryError, anything else a RuntimeError.
kj::Exception to_remote(std::exception_ptr error);

// Client side: throws the xproc::Error named by a remote error's description, or
// ConnectionError when the connection dropped (detail::rethrow_kj).
[[noreturn]] void rethrow_local(const kj::Exception& error);

}  // namespace xproc::rpc
