// Timeout: how long a blocking call may wait; nullopt waits as long as it takes. The rule
// for xproc's C++ API: a negative timeout is a ValueError, as Python's queue module says.
// Bindings map their language's own conventions onto it (multiprocessing's queues treat a
// negative timeout as 0, threading's acquire(timeout=-1) waits forever).
#pragma once

#include <chrono>
#include <optional>

namespace xproc {

using Timeout = std::optional<std::chrono::duration<double>>;

// The point on the monotonic clock where a wait gives up; nullopt: never. Every wait in
// xproc works towards one, so that retries (EINTR, spurious wake-ups, bounded sleeps)
// never stretch a caller's timeout.
using Deadline = std::optional<std::chrono::steady_clock::time_point>;

}  // namespace xproc
