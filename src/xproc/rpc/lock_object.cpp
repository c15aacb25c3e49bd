// The Manager's Lock and RLock. The holder is (session, owner): the client connection and
// the thread tag the client sends. A lock whose holder's connection drops is released.
//
// A plain Lock may be released by anyone, as threading.Lock: a process may take it and
// leave, and another release it for that process (multiprocessing's manager keeps such a
// lock locked until then). When the server has already released it for a holder that
// left, that release is owed and accepted once, from a client other than the holder,
// rather than refused as a release of an unlocked lock.
#include "xproc/errors.h"
#include "xproc/rpc/objects.h"

namespace xproc::rpc {
namespace {

class LockState final : public LockObject {
 public:
  LockState(Runtime& runtime, bool recursive)
      : LockObject(runtime, recursive ? schema::Kind::RLOCK : schema::Kind::LOCK), recursive_(recursive) {}

  capnp::Capability::Client client(Session& session) override;

  kj::Promise<bool> acquire(Session& session, uint64_t owner, bool blocking, double timeout) override {
    return retry_until(runtime_.timer, released_, blocking, timeout,
                       [this, self = kj::addRef(*this), session = kj::addRef(session), owner]() mutable {
                         if (session->closed()) return false;  // its call is being cancelled
                         if (level_ == 0) {
                           holder_session_ = session->id();
                           holder_owner_ = owner;
                           level_ = 1;
                           session->track(*this);
                           return true;
                         }
                         if (recursive_ && is_owned_by(session->id(), owner)) {
                           ++level_;
                           return true;
                         }
                         return false;
                       });
  }

  void release(uint64_t session, uint64_t owner) override {
    if (recursive_) {
      if (level_ == 0 || !is_owned_by(session, owner)) throw RuntimeError("cannot release un-acquired lock");
    } else if (owed_releases_ > 0 && !(level_ > 0 && holder_session_ == session)) {
      --owed_releases_;  // the release of a lock the server gave back for a holder that left
      return;
    } else if (level_ == 0) {
      throw RuntimeError("release unlocked lock");
    }
    if (--level_ == 0) released_.wake_all();
  }

  bool is_owned_by(uint64_t session, uint64_t owner) const override {
    return level_ > 0 && holder_session_ == session && holder_owner_ == owner;
  }

  bool is_locked() const override { return level_ > 0; }

  uint32_t release_all(uint64_t session, uint64_t owner) override {
    // Python's Condition asks an rlock whether the caller owns it, and a plain lock only
    // whether it is locked.
    bool held = recursive_ ? is_owned_by(session, owner) : level_ > 0;
    if (!held) {
      throw RuntimeError("cannot wait on un-acquired lock");
    }
    uint32_t level = level_;
    level_ = 0;
    released_.wake_all();
    return level;
  }

  void restore(uint64_t session, uint64_t owner, uint32_t level) override {
    KJ_REQUIRE(is_owned_by(session, owner));
    level_ = level;
  }

  void session_closed(uint64_t session) override {
    if (level_ > 0 && holder_session_ == session) {
      level_ = 0;
      if (!recursive_) ++owed_releases_;
      released_.wake_all();
    }
  }

  std::string repr_text() const override {
    std::string text = std::string(level_ ? "<locked " : "<unlocked ") + (recursive_ ? "RLock" : "Lock");
    if (recursive_) text += " count=" + std::to_string(level_);
    return text + ">";
  }

 private:
  bool recursive_;
  uint32_t level_ = 0;  // 0: free; > 1 only for an rlock
  uint64_t holder_session_ = 0;
  uint64_t holder_owner_ = 0;
  uint64_t owed_releases_ = 0;  // plain lock: released by the server for holders that left
  WaitList released_;
};

// A client's view of a lock: knows which session calls.
class LockFacade final : public Served<schema::Lock::Server> {
 public:
  LockFacade(kj::Own<LockObject> lock, kj::Own<Session> session) : lock_(kj::mv(lock)), session_(kj::mv(session)) {}

 protected:
  kj::Promise<void> repr(ReprContext context) override {
    context.getResults().setText(lock_->repr_text());
    return kj::READY_NOW;
  }
  kj::Promise<void> acquire(AcquireContext context) override {
    context.allowCancellation();  // see allow_cancellation_note in server_core.h
    auto params = context.getParams();
    return lock_->acquire(*session_, params.getOwner(), params.getBlocking(), params.getTimeout())
        .then([context](bool acquired) mutable { context.getResults().setAcquired(acquired); });
  }
  kj::Promise<void> release(ReleaseContext context) override {
    lock_->release(session_->id(), context.getParams().getOwner());
    return kj::READY_NOW;
  }
  kj::Promise<void> locked(LockedContext context) override {
    context.getResults().setResult(lock_->is_locked());
    return kj::READY_NOW;
  }

 private:
  kj::Own<LockObject> lock_;
  kj::Own<Session> session_;
};

capnp::Capability::Client LockState::client(Session& session) {
  return kj::Own<schema::Lock::Server>(kj::heap<LockFacade>(kj::addRef(*this), kj::addRef(session)));
}

}  // namespace

kj::Own<SharedObject> make_lock(Runtime& runtime, bool recursive) {
  return kj::refcounted<LockState>(runtime, recursive);
}

}  // namespace xproc::rpc
