// The Manager's Condition over one of its locks. wait() gives the lock up, parks the
// caller until notify() or the timeout, then takes the lock back at the same recursion
// level, all inside the server: the client makes one call.
#include <list>

#include "xproc/errors.h"
#include "xproc/rpc/objects.h"

namespace xproc::rpc {
namespace {

class ConditionState final : public SharedObject {
 public:
  ConditionState(Runtime& runtime, kj::Own<LockObject> lock)
      : SharedObject(runtime, schema::Kind::CONDITION), lock_(kj::mv(lock)) {}

  capnp::Capability::Client client(Session& session) override;

  LockObject& lock() { return *lock_; }

  kj::Promise<bool> wait(Session& session, uint64_t owner, double timeout) {
    uint32_t level = lock_->release_all(session.id(), owner);  // RuntimeError unless held
    auto paf = kj::newPromiseAndFulfiller<void>();
    auto waiter = waiters_.insert(waiters_.end(), kj::mv(paf.fulfiller));
    kj::Promise<bool> notified = paf.promise.then([] { return true; });
    if (timeout >= 0) {
      notified = notified.exclusiveJoin(runtime_.timer.afterDelay(seconds(timeout)).then([] { return false; }));
    }
    return notified
        .then([this, waiter](bool was_notified) {
          if (!was_notified) waiters_.erase(waiter);  // notify() removes the ones it wakes
          return was_notified;
        })
        .then([this, self = kj::addRef(*this), session = kj::addRef(session), owner, level](bool was_notified) mutable {
          return lock_->acquire(*session, owner, true, -1)
              .then([this, session = kj::mv(session), owner, level, was_notified](bool) {
                lock_->restore(session->id(), owner, level);
                return was_notified;
              });
        });
  }

  void notify(uint64_t session, uint64_t owner, uint32_t n, bool all) {
    bool held = lock_->is_owned_by(session, owner) || (lock_->kind() == schema::Kind::LOCK && lock_->is_locked());
    if (!held) throw RuntimeError("cannot notify on un-acquired lock");
    while (!waiters_.empty() && (all || n > 0)) {
      auto fulfiller = kj::mv(waiters_.front());
      waiters_.pop_front();
      if (!fulfiller->isWaiting()) continue;  // that waiter's call was cancelled
      fulfiller->fulfill();
      if (!all) --n;
    }
  }

  std::string repr_text() const {
    return "<Condition(" + lock_->repr_text() + ", " + std::to_string(waiters_.size()) + ")>";
  }

 private:
  kj::Own<LockObject> lock_;
  std::list<kj::Own<kj::PromiseFulfiller<void>>> waiters_;
};

class ConditionFacade final : public Served<schema::Condition::Server> {
 public:
  ConditionFacade(kj::Own<ConditionState> state, kj::Own<Session> session)
      : state_(kj::mv(state)), session_(kj::mv(session)) {}

 protected:
  kj::Promise<void> repr(ReprContext context) override {
    context.getResults().setText(state_->repr_text());
    return kj::READY_NOW;
  }
  kj::Promise<void> acquire(AcquireContext context) override {
    auto params = context.getParams();
    return state_->lock()
        .acquire(*session_, params.getOwner(), params.getBlocking(), params.getTimeout())
        .then([context](bool acquired) mutable { context.getResults().setAcquired(acquired); });
  }
  kj::Promise<void> release(ReleaseContext context) override {
    state_->lock().release(session_->id(), context.getParams().getOwner());
    return kj::READY_NOW;
  }
  kj::Promise<void> wait(WaitContext context) override {
    auto params = context.getParams();
    return state_->wait(*session_, params.getOwner(), params.getTimeout()).then([context](bool notified) mutable {
      context.getResults().setNotified(notified);
    });
  }
  kj::Promise<void> notify(NotifyContext context) override {
    auto params = context.getParams();
    state_->notify(session_->id(), params.getOwner(), params.getN(), false);
    return kj::READY_NOW;
  }
  kj::Promise<void> notifyAll(NotifyAllContext context) override {
    state_->notify(session_->id(), context.getParams().getOwner(), 0, true);
    return kj::READY_NOW;
  }

 private:
  kj::Own<ConditionState> state_;
  kj::Own<Session> session_;
};

capnp::Capability::Client ConditionState::client(Session& session) {
  return kj::Own<schema::Condition::Server>(kj::heap<ConditionFacade>(kj::addRef(*this), kj::addRef(session)));
}

}  // namespace

kj::Own<SharedObject> make_condition(Runtime& runtime, kj::Own<SharedObject> lock) {
  if (lock->kind() != schema::Kind::LOCK && lock->kind() != schema::Kind::RLOCK) {
    throw TypeError("a condition needs a lock or rlock of this manager");
  }
  auto& lock_object = static_cast<LockObject&>(*lock);
  return kj::refcounted<ConditionState>(runtime, kj::addRef(lock_object));
}

}  // namespace xproc::rpc
