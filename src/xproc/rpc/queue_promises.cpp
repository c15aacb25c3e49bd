// Queue promises (queue_promises.h) on this thread's kj loop.
//
// A promise tries its operation without blocking; when that fails it sleeps on the
// queue's doorbell (queue_waiter.h), observed by the loop, and tries again when it rings
// or QueueWaiter::kRecheck passes. The promises of one thread that await the same change
// of the same queue share one doorbell (a queue has 32 waiter slots for all processes, and
// a thousand pending gets must not need a thousand): each ring wakes them all, and each
// tries again. Nothing is taken or put until an attempt succeeds, so dropping a promise
// loses nothing.
#include <algorithm>
#include <vector>

#include <kj/async-unix.h>

#include "xproc/event_loop.h"
#include "xproc/queue_promises.h"
#include "xproc/rpc/remote_error.h"
#include "xproc/rpc/thread_loop.h"

namespace xproc {

kj::AsyncIoContext& event_loop() { return rpc::thread_loop().io(); }

void rethrow_promise_error(const kj::Exception& error) { rpc::rethrow_local(error); }

namespace detail {
namespace {

class LoopBell;

// This thread's shared doorbells (a slot of its ThreadLoop: forgotten with the loop in a
// forked child). A bell is listed while any promise holds it.
struct LoopBells {
  std::vector<LoopBell*> live;
};

// One doorbell of one queue, observed by this thread's loop for all the promises that
// await the same change.
class LoopBell final : public kj::Refcounted {
 public:
  LoopBell(const ByteQueue& queue, QueueWaiter::For what, LoopBells& table)
      : queue_(queue),
        what_(what),
        table_(table),
        waiter_(queue, what),
        observer_(event_loop().unixEventPort, waiter_.fileno(), kj::UnixEventPort::FdObserver::OBSERVE_READ) {
    table_.live.push_back(this);
  }
  ~LoopBell() noexcept(false) { std::erase(table_.live, this); }

  bool awaits(const ByteQueue& queue, QueueWaiter::For what) const {
    return what_ == what && queue_.same_handle(queue);
  }

  // After a failed attempt: true when the caller may sleep (next_ring()); false when the
  // queue changed since the bell last looked — then every sleeper is woken to try again,
  // since the change may be what they wait for and re-arming spoils a ring meant for them.
  bool arm() {
    if (waiter_.arm()) return true;
    KJ_IF_MAYBE (wake, wake_) {
      (*wake)->fulfill();
    }
    return false;
  }

  // Resolves at the next ring (or wake); each sleeper gets a branch of one fork.
  kj::Promise<void> next_ring() {
    if (ring_ == nullptr || rung_) {
      auto woken = kj::newPromiseAndFulfiller<void>();
      wake_ = kj::mv(woken.fulfiller);
      rung_ = false;
      ring_ = observer_.whenBecomesReadable()
                  .exclusiveJoin(kj::mv(woken.promise))
                  .then([this]() {
                    waiter_.clear();
                    rung_ = true;
                    wake_ = nullptr;
                  })
                  .fork();
    }
    KJ_IF_MAYBE (ring, ring_) {
      return ring->addBranch().attach(kj::addRef(*this));
    }
    KJ_UNREACHABLE;
  }

 private:
  ByteQueue queue_;
  QueueWaiter::For what_;
  LoopBells& table_;
  QueueWaiter waiter_;
  kj::UnixEventPort::FdObserver observer_;
  kj::Maybe<kj::ForkedPromise<void>> ring_;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> wake_;
  bool rung_ = false;
};

kj::Own<LoopBell> bell_for(const ByteQueue& queue, QueueWaiter::For what) {
  auto& table = rpc::thread_loop().slot<LoopBells>();
  for (LoopBell* bell : table.live) {
    if (bell->awaits(queue, what)) return kj::addRef(*bell);
  }
  return kj::refcounted<LoopBell>(queue, what, table);
}

struct Attempts {
  ByteQueue queue;
  QueueWaiter::For what;
  kj::Function<bool()> attempt;
  kj::Own<kj::PromiseFulfiller<void>> done;
  kj::Own<LoopBell> bell;  // from the first attempt that failed

  // Tries once; true when done succeeded or failed for good.
  bool settled() {
    try {
      if (!attempt()) return false;
      done->fulfill();
    } catch (...) {
      // As a remote error, so that xproc::wait() throws the same xproc error again.
      done->reject(rpc::to_remote(std::current_exception()));
    }
    return true;
  }
};

kj::Promise<void> keep_trying(kj::Own<Attempts> attempts) {
  for (;;) {
    if (attempts->settled()) return kj::READY_NOW;
    if (attempts->bell.get() == nullptr) {
      // Registered after the attempt: it may have missed a change made in between.
      attempts->bell = bell_for(attempts->queue, attempts->what);
      continue;
    }
    if (!attempts->bell->arm()) continue;
    auto& timer = event_loop().provider->getTimer();
    const auto recheck = std::chrono::duration_cast<std::chrono::milliseconds>(QueueWaiter::kRecheck).count();
    return attempts->bell->next_ring()
        .exclusiveJoin(timer.afterDelay(recheck * kj::MILLISECONDS))
        .then([attempts = kj::mv(attempts)]() mutable { return keep_trying(kj::mv(attempts)); });
  }
}

}  // namespace

kj::Promise<void> when_done(ByteQueue queue, QueueWaiter::For what, kj::Function<bool()> attempt) {
  // The attempts run on their own (eagerly), and a success is passed on through a
  // fulfiller: that arms the holder's next step to run at once, before any event already
  // queued — such as a timer raced against the get in an exclusiveJoin, which would
  // otherwise cancel a get whose message was already taken. (A promise resolved by a
  // `then` that returns a ready promise is passed on only after the events queued before.)
  // The first attempt too is made by the loop, not by the call that makes the promise: a
  // promise dropped before the loop ran has taken (or put) nothing, and an error rejects
  // the promise rather than escaping from that call.
  rpc::thread_loop();  // made on first use
  auto result = kj::newPromiseAndFulfiller<void>();
  auto attempts = kj::heap<Attempts>(Attempts{std::move(queue), what, kj::mv(attempt), kj::mv(result.fulfiller), {}});
  auto driver = kj::evalLater([attempts = kj::mv(attempts)]() mutable {
                  return keep_trying(kj::mv(attempts));
                }).eagerlyEvaluate(nullptr);
  return result.promise.attach(kj::mv(driver));
}

}  // namespace detail
}  // namespace xproc
