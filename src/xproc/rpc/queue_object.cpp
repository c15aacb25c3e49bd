// The Manager's Queue and JoinableQueue: a FIFO of Values with Python's blocking put/get.
// Items are kept as the caller's Cap'n Proto Value, copied once in and once out.
#include <deque>

#include <capnp/message.h>

#include "xproc/errors.h"
#include "xproc/rpc/objects.h"

namespace xproc::rpc {
namespace {

class QueueObject final : public SharedObject, public Served<schema::JoinableQueue::Server> {
 public:
  QueueObject(Runtime& runtime, int64_t maxsize, bool joinable)
      : SharedObject(runtime, joinable ? schema::Kind::JOINABLE_QUEUE : schema::Kind::QUEUE),
        maxsize_(maxsize > 0 ? static_cast<size_t>(maxsize) : 0),
        joinable_(joinable) {}

  capnp::Capability::Client client(Session&) override {
    return kj::Own<schema::JoinableQueue::Server>(kj::addRef(*this));
  }

 protected:
  kj::Promise<void> repr(ReprContext context) override {
    context.getResults().setText(std::string(joinable_ ? "<JoinableQueue" : "<Queue") + " qsize=" +
                                 std::to_string(items_.size()) + " maxsize=" + std::to_string(maxsize_) + ">");
    return kj::READY_NOW;
  }

  kj::Promise<void> put(PutContext context) override {
    context.allowCancellation();  // see allow_cancellation_note in server_core.h
    auto params = context.getParams();
    auto item = capnp::clone(params.getValue());  // copied now: the params go with the call
    return retry_until(runtime_.timer, not_full_, params.getBlock(), params.getTimeout(),
                       [this, self = kj::addRef(*this), item = kj::mv(item)]() mutable {
                         if (full()) return false;
                         items_.push_back(kj::mv(item));
                         ++unfinished_;
                         not_empty_.wake_all();
                         return true;
                       })
        .then([](bool put) {
          if (!put) throw_remote("Full", "");
        });
  }

  kj::Promise<void> get(GetContext context) override {
    context.allowCancellation();
    auto params = context.getParams();
    return retry_until(runtime_.timer, not_empty_, params.getBlock(), params.getTimeout(),
                       [this, self = kj::addRef(*this), context]() mutable {
                         if (items_.empty()) return false;
                         context.getResults().setValue(*items_.front());
                         items_.pop_front();
                         not_full_.wake_all();
                         return true;
                       })
        .then([](bool got) {
          if (!got) throw_remote("Empty", "");
        });
  }

  kj::Promise<void> qsize(QsizeContext context) override {
    context.getResults().setSize(items_.size());
    return kj::READY_NOW;
  }
  kj::Promise<void> empty(EmptyContext context) override {
    context.getResults().setResult(items_.empty());
    return kj::READY_NOW;
  }
  kj::Promise<void> full(FullContext context) override {
    context.getResults().setResult(full());
    return kj::READY_NOW;
  }

  kj::Promise<void> taskDone(TaskDoneContext) override {
    require_joinable();
    if (unfinished_ == 0) throw ValueError("task_done() called too many times");
    if (--unfinished_ == 0) all_done_.wake_all();
    return kj::READY_NOW;
  }

  kj::Promise<void> join(JoinContext context) override {
    require_joinable();
    context.allowCancellation();
    return retry_until(runtime_.timer, all_done_, true, context.getParams().getTimeout(),
                       [this, self = kj::addRef(*this)] { return unfinished_ == 0; })
        .then([context](bool done) mutable { context.getResults().setDone(done); });
  }

 private:
  bool full() const { return maxsize_ != 0 && items_.size() >= maxsize_; }
  void require_joinable() const {
    if (!joinable_) throw ValueError("task_done() and join() belong to a JoinableQueue");
  }

  size_t maxsize_;
  bool joinable_;
  std::deque<kj::Own<schema::Value::Reader>> items_;
  uint64_t unfinished_ = 0;  // put but not yet task_done
  WaitList not_empty_;
  WaitList not_full_;
  WaitList all_done_;
};

}  // namespace

kj::Own<SharedObject> make_queue(Runtime& runtime, int64_t maxsize, bool joinable) {
  return kj::refcounted<QueueObject>(runtime, maxsize, joinable);
}

}  // namespace xproc::rpc
