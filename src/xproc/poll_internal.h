// A helper shared by the code that waits in poll(2) on the monotonic clock.
#pragma once

#include <chrono>
#include <cmath>

#include "xproc/byte_queue.h"

namespace xproc::detail {

// Milliseconds for poll(2) until `deadline` (-1: no deadline), rounded up so a poll never
// returns just before the deadline.
inline int poll_milliseconds(const ByteQueue::Deadline& deadline) {
  if (!deadline) return -1;
  const auto left = *deadline - std::chrono::steady_clock::now();
  if (left <= std::chrono::steady_clock::duration::zero()) return 0;
  return static_cast<int>(std::ceil(std::chrono::duration<double, std::milli>(left).count()));
}

}  // namespace xproc::detail
