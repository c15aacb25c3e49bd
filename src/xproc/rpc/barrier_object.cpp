// The Manager's Barrier: threading.Barrier's rules. A timeout, abort(), reset() while
// parties wait, or a waiter whose connection drops breaks it: every waiter gets
// BrokenBarrierError until reset().
#include "xproc/errors.h"
#include "xproc/rpc/objects.h"

namespace xproc::rpc {
namespace {

class BarrierObject final : public SharedObject, public Served<schema::Barrier::Server> {
 public:
  BarrierObject(Runtime& runtime, uint32_t parties, double default_timeout)
      : SharedObject(runtime, schema::Kind::BARRIER), parties_(parties), default_timeout_(default_timeout) {
    if (parties == 0) throw ValueError("parties must be > 0");
    new_generation();
  }

  capnp::Capability::Client client(Session&) override { return kj::Own<schema::Barrier::Server>(kj::addRef(*this)); }

 protected:
  kj::Promise<void> repr(ReprContext context) override {
    context.getResults().setText("<Barrier parties=" + std::to_string(parties_) + " waiting=" +
                                 std::to_string(waiting_) + " broken=" + (broken_ ? "True" : "False") + ">");
    return kj::READY_NOW;
  }

  kj::Promise<void> wait(WaitContext context) override {
    if (broken_) throw BrokenBarrierError();
    uint32_t index = waiting_++;
    if (waiting_ == parties_) {
      pass_->fulfill(true);
      new_generation();
      context.getResults().setIndex(index);
      return kj::READY_NOW;
    }
    double timeout = context.getParams().getTimeout();
    if (timeout < 0) timeout = default_timeout_;
    kj::Promise<bool> outcome = generation_->addBranch();
    if (timeout >= 0) {
      outcome = outcome.exclusiveJoin(runtime_.timer.afterDelay(seconds(timeout)).then([this] {
        break_barrier();  // as Python: the waiter that times out breaks the barrier
        return false;
      }));
    }
    // A waiter whose call goes away unfinished (its client disconnected) breaks the
    // barrier too: the parties it promised will never arrive.
    auto finished = kj::heap<bool>(false);
    bool* finished_flag = finished.get();
    uint64_t generation = generation_number_;
    auto on_cancel = kj::defer([this, self = kj::addRef(*this), finished = kj::mv(finished), generation] {
      if (!*finished && generation == generation_number_) break_barrier();
    });
    return outcome
        .then([context, index, finished_flag](bool passed) mutable {
          *finished_flag = true;
          if (!passed) throw_remote("BrokenBarrierError", "");
          context.getResults().setIndex(index);
        })
        .attach(kj::mv(on_cancel));
  }

  kj::Promise<void> reset(ResetContext) override {
    if (waiting_ > 0) pass_->fulfill(false);  // the waiters see BrokenBarrierError
    broken_ = false;
    new_generation();
    return kj::READY_NOW;
  }

  kj::Promise<void> abort(AbortContext) override {
    break_barrier();
    return kj::READY_NOW;
  }

  kj::Promise<void> parties(PartiesContext context) override {
    context.getResults().setParties(parties_);
    return kj::READY_NOW;
  }
  kj::Promise<void> nWaiting(NWaitingContext context) override {
    context.getResults().setWaiting(waiting_);
    return kj::READY_NOW;
  }
  kj::Promise<void> broken(BrokenContext context) override {
    context.getResults().setResult(broken_);
    return kj::READY_NOW;
  }

 private:
  void new_generation() {
    auto paf = kj::newPromiseAndFulfiller<bool>();
    pass_ = kj::mv(paf.fulfiller);
    generation_ = kj::heap<kj::ForkedPromise<bool>>(paf.promise.fork());
    waiting_ = 0;
    ++generation_number_;
  }

  void break_barrier() {
    if (broken_) return;
    broken_ = true;
    pass_->fulfill(false);
    new_generation();
    broken_ = true;
  }

  uint32_t parties_;
  double default_timeout_;
  uint32_t waiting_ = 0;
  bool broken_ = false;
  uint64_t generation_number_ = 0;
  kj::Own<kj::PromiseFulfiller<bool>> pass_;
  kj::Own<kj::ForkedPromise<bool>> generation_;
};

}  // namespace

kj::Own<SharedObject> make_barrier(Runtime& runtime, uint32_t parties, double default_timeout) {
  return kj::refcounted<BarrierObject>(runtime, parties, default_timeout);
}

}  // namespace xproc::rpc
