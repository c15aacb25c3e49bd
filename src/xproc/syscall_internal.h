// System calls that a signal can interrupt (EINTR) go through these, so that no caller
// writes its own retry loop: retry_on_eintr when the caller handles the failure itself,
// retry_syscall when a failure is an OSError. (A wait with a deadline that retries on
// EINTR recomputes what is left of it: poll_milliseconds in poll_internal.h.)
#pragma once

#include <cerrno>
#include <string_view>

#include "xproc/errors.h"

namespace xproc::detail {

// Runs `call()` (a system call's result, -1 with errno on failure) again while it fails
// with EINTR; returns its result, errno intact.
template <typename Call>
auto retry_on_eintr(Call&& call) -> decltype(call()) {
  for (;;) {
    auto result = call();
    if (result != -1 || errno != EINTR) return result;
  }
}

// As retry_on_eintr; throws OSError naming `what` when the call fails otherwise.
template <typename Call>
auto retry_syscall(std::string_view what, Call&& call) -> decltype(call()) {
  auto result = retry_on_eintr(call);
  if (result == -1) throw_os_error(what, errno);
  return result;
}

}  // namespace xproc::detail
