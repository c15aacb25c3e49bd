// main() of every test binary: GoogleTest plus a global environment that fails the run
// when a test leaves a child process or one of its /dev/shm/xproc.* segments behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"

namespace {

class LeakCheckEnvironment : public ::testing::Environment {
 public:
  // Segments are named after the pid that made them: one a killed earlier process of the
  // same pid left is there before this one starts, and is not this run's leak.
  void SetUp() override { found_at_start_ = xproc::testing::leaked_segments(); }

  void TearDown() override {
    // A child that was just killed may take a moment to become a reapable zombie; give
    // well-behaved code a short grace period, then report what is left.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!xproc::testing::child_pids().empty() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (pid_t pid : xproc::testing::child_pids()) {
      ADD_FAILURE() << "child process " << pid << " was left behind (not reaped)";
    }
    for (const std::string& name : xproc::testing::leaked_segments()) {
      if (std::find(found_at_start_.begin(), found_at_start_.end(), name) != found_at_start_.end()) continue;
      ADD_FAILURE() << "shared-memory segment /dev/shm/" << name << " was left behind";
    }
  }

 private:
  std::vector<std::string> found_at_start_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new LeakCheckEnvironment);
  return RUN_ALL_TESTS();
}
