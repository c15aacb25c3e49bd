// The one place a kj::Exception becomes an xproc error. Cap'n Proto and kj report every
// failure as kj::Exception; xproc's API throws only xproc::Error (errors.h).
#pragma once

#include <string_view>

#include <kj/exception.h>

#include "xproc/errors.h"

namespace xproc::detail {

// Throws, for `error`:
//   - a connection that dropped (DISCONNECTED) or a peer that is overloaded: ConnectionError;
//   - a description that names a row of XPROC_ERRORS ("KeyError: 'a'", as a Manager's
//     replies carry them, after kj's "remote exception: "): that error, with its message;
//   - anything else (a malformed message, a TLS failure): an error of kind `otherwise`.
// `context` goes in front of kj's own description in the last two cases.
[[noreturn]] void rethrow_kj(const kj::Exception& error, ErrorKind otherwise, std::string_view context = {});

// Runs `body`, rethrowing what kj throws as rethrow_kj does.
template <typename Body>
auto translating_kj(ErrorKind otherwise, std::string_view context, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const kj::Exception& error) {
    rethrow_kj(error, otherwise, context);
  }
}

}  // namespace xproc::detail
