// CallWorkers (bindings/python/src/call_workers.h): the threads a Python-hosted Manager
// server runs its objects' methods on. Plain C++, so tested here and under TSan.
#include "call_workers.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace xproc::python {
namespace {

using namespace std::chrono_literals;

// Waits for `condition` up to 10 s.
template <typename Condition>
bool eventually(Condition condition) {
  for (auto until = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < until;) {
    if (condition()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return condition();
}

// A gate jobs wait at until it opens.
struct Gate {
  std::mutex mutex;
  std::condition_variable opened_cv;
  bool opened = false;
  void wait() {
    std::unique_lock lock(mutex);
    opened_cv.wait(lock, [&] { return opened; });
  }
  void open() {
    std::lock_guard lock(mutex);
    opened = true;
    opened_cv.notify_all();
  }
};

TEST(CallWorkersTest, RunsEveryJob) {
  std::atomic<int> done{0};
  CallWorkers workers(4, 50us);
  for (int i = 0; i < 1000; ++i) workers.run([&] { done.fetch_add(1); });
  EXPECT_TRUE(eventually([&] { return done.load() == 1000; }));
}

TEST(CallWorkersTest, AJobThatWaitsDoesNotHoldUpTheOthers) {
  // What a Manager method that blocks (queue.get) needs: the next call runs meanwhile.
  Gate gate;
  std::atomic<bool> waiting_done{false}, other_done{false};
  CallWorkers workers(4, 0us);
  workers.run([&] {
    gate.wait();
    waiting_done = true;
  });
  workers.run([&] { other_done = true; });
  EXPECT_TRUE(eventually([&] { return other_done.load(); }));
  EXPECT_FALSE(waiting_done.load());
  gate.open();
  EXPECT_TRUE(eventually([&] { return waiting_done.load(); }));
}

TEST(CallWorkersTest, AtTheLimitJobsWaitForAThread) {
  Gate gate;
  std::atomic<int> started{0}, done{0};
  CallWorkers workers(2, 0us);
  for (int i = 0; i < 3; ++i) {
    workers.run([&] {
      started.fetch_add(1);
      gate.wait();
      done.fetch_add(1);
    });
  }
  EXPECT_TRUE(eventually([&] { return started.load() == 2; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(started.load(), 2);  // the third waits: two threads at most
  gate.open();
  EXPECT_TRUE(eventually([&] { return done.load() == 3; }));
}

TEST(CallWorkersTest, EachThreadEntersOnceAndLeavesWhenThePoolGoes) {
  // The counters outlive the test's frame: a thread leaves after the pool is gone.
  struct Counts {
    std::atomic<int> entered{0}, left{0}, done{0};
  };
  auto counts = std::make_shared<Counts>();
  {
    CallWorkers workers(
        3, 20us, [counts] { counts->entered.fetch_add(1); }, [counts] { counts->left.fetch_add(1); });
    for (int i = 0; i < 200; ++i) workers.run([counts] { counts->done.fetch_add(1); });
    EXPECT_TRUE(eventually([&] { return counts->done.load() == 200; }));
    // A thread started for the last jobs may not have entered yet; every one started does.
    const int started = static_cast<int>(workers.threads());
    EXPECT_GE(started, 1);
    EXPECT_LE(started, 3);
    EXPECT_TRUE(eventually([&] { return counts->entered.load() == started; }));
  }
  EXPECT_TRUE(eventually([&] { return counts->left.load() == counts->entered.load(); }));
  EXPECT_LE(counts->entered.load(), 3);
}

TEST(CallWorkersTest, AThreadStillInAJobFinishesAfterThePoolIsGone) {
  Gate gate;
  std::atomic<bool> done{false};
  {
    CallWorkers workers(1, 0us);
    workers.run([&] {
      gate.wait();
      done = true;
    });
  }
  gate.open();
  EXPECT_TRUE(eventually([&] { return done.load(); }));
}

}  // namespace
}  // namespace xproc::python
