// The Manager's Event: a flag that waiters block on until it is set.
#include "xproc/rpc/objects.h"

namespace xproc::rpc {
namespace {

class EventObject final : public SharedObject, public Served<schema::Event::Server> {
 public:
  explicit EventObject(Runtime& runtime) : SharedObject(runtime, schema::Kind::EVENT) {}

  capnp::Capability::Client client(Session&) override { return kj::Own<schema::Event::Server>(kj::addRef(*this)); }

 protected:
  kj::Promise<void> repr(ReprContext context) override {
    context.getResults().setText(std::string("<Event set=") + (set_ ? "True" : "False") + ">");
    return kj::READY_NOW;
  }
  kj::Promise<void> set(SetContext) override {
    set_ = true;
    changed_.wake_all();
    return kj::READY_NOW;
  }
  kj::Promise<void> clear(ClearContext) override {
    set_ = false;
    return kj::READY_NOW;
  }
  kj::Promise<void> isSet(IsSetContext context) override {
    context.getResults().setResult(set_);
    return kj::READY_NOW;
  }
  kj::Promise<void> wait(WaitContext context) override {
    context.allowCancellation();  // see allow_cancellation_note in server_core.h
    return retry_until(runtime_.timer, changed_, true, context.getParams().getTimeout(),
                       [this, self = kj::addRef(*this)] { return set_; })
        .then([context](bool is_set) mutable { context.getResults().setResult(is_set); });
  }

 private:
  bool set_ = false;
  WaitList changed_;
};

}  // namespace

kj::Own<SharedObject> make_event(Runtime& runtime) { return kj::refcounted<EventObject>(runtime); }

}  // namespace xproc::rpc
