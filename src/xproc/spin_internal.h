// AdaptiveSpin: how long a waiter looks for what it waits for before it sleeps, learned
// from how its waits end. One policy for the queue, the pipe and the Manager's client,
// each with its own tuning.
//
// Why adapt: a wait that ends while spinning costs no sleep and no wake-up (a wake-up
// costs the waker microseconds and the sleeper tens of them on a VM), but a spin that
// ends in a sleep anyway only took a CPU from someone — with more busy processes than
// cores, often from the very peer being waited for. So a spin that paid off keeps or
// grows the budget and one that did not halves it, down to a floor. A tuning whose floor
// turns spinning off looks again every `probe_every`-th wait, to notice that the crowd
// has gone.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace xproc::detail {

struct SpinTuning {
  int64_t initial_ns = 0;           // the first budget; 0: the ceiling
  int64_t floor_ns = 0;             // a budget is never halved below this ...
  int64_t floor_divisor = 0;        // ... nor below ceiling / floor_divisor, when set
  bool off_below_floor = false;     // instead of stopping at the floor, stop spinning
  bool restore_on_success = false;  // a wait that ended while spinning restores the ceiling (else doubles)
  unsigned probe_every = 32;        // when off: every probe_every-th wait spins the ceiling
};

class AdaptiveSpin {
 public:
  explicit AdaptiveSpin(const SpinTuning& tuning) noexcept
      : tuning_(tuning), budget_ns_(tuning.initial_ns > 0 ? tuning.initial_ns : kUnset) {}

  // This wait's budget in nanoseconds, at most `ceiling_ns`; 0: sleep at once.
  int64_t next(int64_t ceiling_ns) noexcept {
    const int64_t budget = budget_ns_.load(std::memory_order_relaxed);
    if (budget == kUnset) return ceiling_ns;
    if (budget > 0) return std::min(budget, ceiling_ns);
    const unsigned every = tuning_.probe_every;
    if (every != 0 && waits_while_off_.fetch_add(1, std::memory_order_relaxed) % every == every - 1) return ceiling_ns;
    return 0;
  }

  // How the wait that asked next(ceiling_ns) ended: while it spun, or not.
  void record(bool ended_while_spinning, int64_t ceiling_ns) noexcept {
    int64_t budget = budget_ns_.load(std::memory_order_relaxed);
    if (budget == kUnset || budget > ceiling_ns) budget = ceiling_ns;
    int64_t updated;
    if (ended_while_spinning) {
      updated = tuning_.restore_on_success ? ceiling_ns : std::min(ceiling_ns, std::max<int64_t>(budget, 1) * 2);
    } else {
      const int64_t floor =
          std::max(tuning_.floor_ns, tuning_.floor_divisor > 0 ? ceiling_ns / tuning_.floor_divisor : int64_t{0});
      updated = budget / 2;
      if (updated < floor) updated = tuning_.off_below_floor ? 0 : floor;
    }
    budget_ns_.store(updated, std::memory_order_relaxed);
  }

 private:
  static constexpr int64_t kUnset = -1;  // no wait yet: the first gets the ceiling

  SpinTuning tuning_;
  // Relaxed: a budget another thread of the same queue set a moment ago is as good a guess.
  std::atomic<int64_t> budget_ns_;
  std::atomic<unsigned> waits_while_off_{0};
};

}  // namespace xproc::detail
