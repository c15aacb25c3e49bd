// The Manager's Semaphore and BoundedSemaphore. A bounded semaphore guards a resource, so
// what a client acquired and did not release comes back when its connection drops; a
// plain semaphore is often a signal (one side releases, the other acquires), so its
// count is never given back on a client's behalf.
//
// Anyone may release a semaphore, as threading's: a process may acquire and leave, and
// another release for it (multiprocessing's manager keeps the count down until then).
// What the server gave back for a client that left is owed that release: a release from
// a client holding nothing settles it, rather than being refused as one too many.
#include <algorithm>
#include <unordered_map>

#include "xproc/errors.h"
#include "xproc/rpc/objects.h"

namespace xproc::rpc {
namespace {

class SemaphoreState final : public SharedObject {
 public:
  SemaphoreState(Runtime& runtime, int64_t value, bool bounded)
      : SharedObject(runtime, bounded ? schema::Kind::BOUNDED_SEMAPHORE : schema::Kind::SEMAPHORE),
        value_(value),
        initial_(value),
        bounded_(bounded) {
    if (value < 0) throw ValueError("semaphore initial value must be >= 0");
  }

  capnp::Capability::Client client(Session& session) override;

  kj::Promise<bool> acquire(Session& session, bool blocking, double timeout) {
    return retry_until(runtime_.timer, released_, blocking, timeout,
                       [this, self = kj::addRef(*this), session = kj::addRef(session)]() mutable {
                         if (value_ == 0 || session->closed()) return false;
                         --value_;
                         if (bounded_) {
                           ++held_[session->id()];
                           session->track(*this);
                         }
                         return true;
                       });
  }

  void release(uint64_t session, uint32_t n) {
    if (n == 0) return;
    if (owed_releases_ > 0 && !held_.contains(session)) {
      const uint64_t settled = std::min<uint64_t>(n, owed_releases_);
      owed_releases_ -= settled;
      n -= static_cast<uint32_t>(settled);
      if (n == 0) return;
    }
    if (bounded_ && value_ + n > initial_) throw ValueError("Semaphore released too many times");
    value_ += n;
    if (bounded_) {
      auto it = held_.find(session);
      if (it != held_.end()) {
        it->second = it->second > n ? it->second - n : 0;
        if (it->second == 0) held_.erase(it);
      }
    }
    released_.wake_all();
  }

  void session_closed(uint64_t session) override {
    auto it = held_.find(session);
    if (it == held_.end()) return;
    // What others released for it already stays released.
    const int64_t returned = std::min(static_cast<int64_t>(it->second), initial_ - value_);
    value_ += returned;
    owed_releases_ += static_cast<uint64_t>(returned);
    held_.erase(it);
    released_.wake_all();
  }

  int64_t value() const { return value_; }
  std::string repr_text() const {
    return std::string(bounded_ ? "<BoundedSemaphore" : "<Semaphore") + " value=" + std::to_string(value_) + ">";
  }

 private:
  int64_t value_;
  int64_t initial_;
  bool bounded_;
  std::unordered_map<uint64_t, uint64_t> held_;  // session -> acquisitions not yet released
  uint64_t owed_releases_ = 0;                   // given back for clients that left
  WaitList released_;
};

class SemaphoreFacade final : public Served<schema::Semaphore::Server> {
 public:
  SemaphoreFacade(kj::Own<SemaphoreState> state, kj::Own<Session> session)
      : state_(kj::mv(state)), session_(kj::mv(session)) {}

 protected:
  kj::Promise<void> repr(ReprContext context) override {
    context.getResults().setText(state_->repr_text());
    return kj::READY_NOW;
  }
  kj::Promise<void> acquire(AcquireContext context) override {
    context.allowCancellation();  // see allow_cancellation_note in server_core.h
    auto params = context.getParams();
    return state_->acquire(*session_, params.getBlocking(), params.getTimeout()).then([context](bool acquired) mutable {
      context.getResults().setAcquired(acquired);
    });
  }
  kj::Promise<void> release(ReleaseContext context) override {
    state_->release(session_->id(), context.getParams().getN());
    return kj::READY_NOW;
  }
  kj::Promise<void> value(ValueContext context) override {
    context.getResults().setValue(state_->value());
    return kj::READY_NOW;
  }

 private:
  kj::Own<SemaphoreState> state_;
  kj::Own<Session> session_;
};

capnp::Capability::Client SemaphoreState::client(Session& session) {
  return kj::Own<schema::Semaphore::Server>(kj::heap<SemaphoreFacade>(kj::addRef(*this), kj::addRef(session)));
}

}  // namespace

kj::Own<SharedObject> make_semaphore(Runtime& runtime, int64_t value, bool bounded) {
  return kj::refcounted<SemaphoreState>(runtime, value, bounded);
}

}  // namespace xproc::rpc
