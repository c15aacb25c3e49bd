// Blocking calls from Python: the GIL is released while the C++ library waits, and the
// wait is cut into short slices with a signal check between them, so Ctrl-C raises
// KeyboardInterrupt in a blocked get/recv/join as it does in multiprocessing's.
#pragma once
#include <algorithm>
#include <chrono>
#include <optional>
#include "bindings.h"
#include "xproc/byte_queue.h"

namespace xproc::python {

// How long one slice waits: the longest Ctrl-C can go unnoticed.
inline constexpr std::chrono::milliseconds kSignalCheckInterval{50};

// Raises the pending Python exception (KeyboardInterrupt ...) if a signal handler set
// one. Call with the GIL held.
inline void check_signals() {
  if (PyErr_CheckSignals() != 0) throw nb::python_error();
}

// Python's (block, timeout) pair as a wait cut into slices; a negative timeout counts as 0,
// as multiprocessing's queues and connections take it.
struct SlicedWait {
  SlicedWait(bool block, std::optional<double> timeout) {
    if (!block) {
      at = std::chrono::steady_clock::now();
    } else if (timeout) {
      at = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                  std::chrono::duration<double>(std::max(0.0, *timeout)));
    }
  }
  // The next slice's timeout: up to the deadline, at most kSignalCheckInterval.
  Timeout slice() const {
    auto longest = std::chrono::duration<double>(kSignalCheckInterval);
    if (!at) return longest;
    auto left = std::chrono::duration<double>(*at - std::chrono::steady_clock::now());
    return std::clamp(left, std::chrono::duration<double>::zero(), longest);
  }
  bool passed() const { return at && std::chrono::steady_clock::now() >= *at; }
  xproc::Deadline at;
};

// Calls attempt(slice) with the GIL released until it returns true (true) or the
// deadline passes (false); a signal between attempts raises. Called with the GIL held.
template <typename Attempt>
bool wait_in_slices(const SlicedWait& deadline, Attempt&& attempt) {
  // Most calls find a message (or room) at once: trying first without handing the GIL
  // over saves two GIL transfers per call, a fifth of a small message's cost.
  if (attempt(Timeout(std::chrono::seconds(0)))) return true;
  if (deadline.passed()) return false;
  for (;;) {
    bool done;
    {
      nb::gil_scoped_release unlocked;
      done = attempt(deadline.slice());
    }
    if (done) return true;
    if (deadline.passed()) return false;
    check_signals();
  }
}

}  // namespace xproc::python
