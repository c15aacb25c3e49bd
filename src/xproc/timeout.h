// Timeout: how long a blocking call may wait; nullopt waits as long as it takes. The rule
// for xproc's C++ API: a negative timeout is a ValueError, as Python's queue module says.
// Bindings map their language's own conventions onto it (multiprocessing's queues treat a
// negative timeout as 0, threading's acquire(timeout=-1) waits forever).
#pragma once

#include <chrono>
#include <optional>

namespace xproc {

using Timeout = std::optional<std::chrono::duration<double>>;

}  // namespace xproc
