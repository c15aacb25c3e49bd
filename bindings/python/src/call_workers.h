// CallWorkers: the threads a Python-hosted Manager server runs its objects' methods on.
// A method may wait (queue.Queue.get, a lock), as multiprocessing's server allows, and
// the server's event loop must go on serving meanwhile; so each call runs on a worker
// thread, a new one started when none is idle (up to a limit), as multiprocessing's
// server starts a thread per connection. An idle worker polls for the next job for a
// moment before it sleeps: a client calling in a loop is served without a wake-up.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

namespace xproc::python {

class CallWorkers {
 public:
  // At most `max_threads` at once; calls past it wait for a thread to come free. Each
  // thread runs `enter` first and `leave` last (to keep a Python thread state for its
  // life rather than making one per call).
  CallWorkers(size_t max_threads, std::chrono::microseconds spin, std::function<void()> enter = {},
              std::function<void()> leave = {});
  CallWorkers(const CallWorkers&) = delete;
  CallWorkers& operator=(const CallWorkers&) = delete;
  // Idle workers stop; a worker still in a call finishes it and stops alone.
  ~CallWorkers();

  // Runs `job` on a worker thread. `job` must not throw.
  void run(std::function<void()> job);

  // Threads started and not yet stopped (started ones may not have run `enter` yet).
  size_t threads() const;

 private:
  struct Shared;
  static void work(const std::shared_ptr<Shared>& shared);
  std::shared_ptr<Shared> shared_;
};

}  // namespace xproc::python
