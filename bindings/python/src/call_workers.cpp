// CallWorkers: a pool that grows when every worker is busy (call_workers.h).
#include "call_workers.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace xproc::python {

struct CallWorkers::Shared {
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::function<void()>> jobs;
  std::atomic<size_t> queued{0};  // jobs.size(), read without the mutex while spinning
  size_t threads = 0;
  size_t idle = 0;
  size_t max_threads = 0;
  std::chrono::microseconds spin{0};
  std::function<void()> enter;
  std::function<void()> leave;
  bool stopping = false;
};

void CallWorkers::work(const std::shared_ptr<Shared>& shared) {
  using Clock = std::chrono::steady_clock;
  if (shared->enter) shared->enter();
  std::unique_lock lock(shared->mutex);
  for (;;) {
    if (shared->jobs.empty() && !shared->stopping && shared->spin.count() > 0) {
      lock.unlock();
      const auto until = Clock::now() + shared->spin;
      while (shared->queued.load(std::memory_order_acquire) == 0 && Clock::now() < until) {
        std::this_thread::yield();
      }
      lock.lock();
    }
    shared->wake.wait(lock, [&] { return !shared->jobs.empty() || shared->stopping; });
    if (shared->jobs.empty()) break;  // stopping
    auto job = std::move(shared->jobs.front());
    shared->jobs.pop_front();
    shared->queued.fetch_sub(1, std::memory_order_relaxed);
    --shared->idle;
    lock.unlock();
    job();
    job = nullptr;
    lock.lock();
    ++shared->idle;
  }
  --shared->threads;
  --shared->idle;
  lock.unlock();
  if (shared->leave) shared->leave();
}

CallWorkers::CallWorkers(size_t max_threads, std::chrono::microseconds spin, std::function<void()> enter,
                         std::function<void()> leave)
    : shared_(std::make_shared<Shared>()) {
  shared_->max_threads = max_threads;
  shared_->spin = spin;
  shared_->enter = std::move(enter);
  shared_->leave = std::move(leave);
}

CallWorkers::~CallWorkers() {
  std::lock_guard lock(shared_->mutex);
  shared_->stopping = true;
  shared_->wake.notify_all();
}

size_t CallWorkers::threads() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->threads;
}

void CallWorkers::run(std::function<void()> job) {
  std::unique_lock lock(shared_->mutex);
  shared_->jobs.push_back(std::move(job));
  shared_->queued.fetch_add(1, std::memory_order_release);
  if (shared_->idle < shared_->jobs.size() && shared_->threads < shared_->max_threads) {
    ++shared_->threads;
    ++shared_->idle;
    std::thread([shared = shared_] { work(shared); }).detach();
  }
  lock.unlock();
  shared_->wake.notify_one();
}

}  // namespace xproc::python
