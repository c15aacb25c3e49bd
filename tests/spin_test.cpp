// AdaptiveSpin (spin_internal.h): the one spin-then-sleep policy, with the queue's and the
// Manager client's tunings.
#include <gtest/gtest.h>

#include "xproc/rpc/thread_loop.h"
#include "xproc/spin_internal.h"

namespace xproc::detail {
namespace {

TEST(AdaptiveSpinTest, AQueueTuningDoublesAndHalvesBetweenItsFloorAndCeiling) {
  AdaptiveSpin spin(SpinTuning{.initial_ns = 50'000, .floor_ns = 2'000, .probe_every = 0});
  constexpr int64_t kCeiling = 100'000;
  EXPECT_EQ(spin.next(kCeiling), 50'000);
  spin.record(true, kCeiling);
  EXPECT_EQ(spin.next(kCeiling), 100'000);
  spin.record(true, kCeiling);
  EXPECT_EQ(spin.next(kCeiling), 100'000);  // never above the ceiling
  for (int i = 0; i < 20; ++i) spin.record(false, kCeiling);
  EXPECT_EQ(spin.next(kCeiling), 2'000);  // never below the floor, never off
}

TEST(AdaptiveSpinTest, TheReplyTuningRestoresTurnsOffAndProbes) {
  AdaptiveSpin spin(rpc::kReplySpin);
  constexpr int64_t kCeiling = 50'000;
  EXPECT_EQ(spin.next(kCeiling), kCeiling);  // the first wait: the ceiling
  spin.record(false, kCeiling);
  EXPECT_EQ(spin.next(kCeiling), 25'000);
  spin.record(false, kCeiling);  // 12.5 us: a quarter of the ceiling, still spinning
  EXPECT_EQ(spin.next(kCeiling), 12'500);
  spin.record(false, kCeiling);  // below a quarter: off
  int probes = 0;
  for (int i = 0; i < 64; ++i) {
    const int64_t budget = spin.next(kCeiling);
    EXPECT_TRUE(budget == 0 || budget == kCeiling);
    probes += budget == kCeiling;
  }
  EXPECT_EQ(probes, 2);         // every 32nd wait looks again
  spin.record(true, kCeiling);  // a probe that paid off restores the ceiling
  EXPECT_EQ(spin.next(kCeiling), kCeiling);
}

}  // namespace
}  // namespace xproc::detail
