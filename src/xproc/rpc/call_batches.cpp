#include "xproc/rpc/call_batches.h"

#include <string>
#include <utility>

#include <capnp/orphan.h>

#include "xproc/rpc/server_core.h"  // kBatchMethod

namespace xproc::rpc {
namespace {

// The first segment of a batch request: room for a few small calls.
constexpr capnp::MessageSize kBatchRequestWords{256, 0};

// The calls one batch carries at most. A batch's reply is one message, which must stay
// within the client's message limit (64 MiB) however large each call's result is; beyond
// this the calls leave in further batches, in order. Sixty-four calls already pay the
// RPC's cost a sixty-fourth each.
constexpr size_t kMaxBatchCalls = 64;

// A batch's reply, kept while any of its calls' responses is held.
class SharedReply final : public capnp::ResponseHook, public kj::Refcounted {
 public:
  explicit SharedReply(capnp::Response<schema::Object::BatchResults>&& reply) : reply_(kj::mv(reply)) {}
  schema::Object::BatchResults::Reader reader() const { return reply_; }

 private:
  capnp::Response<schema::Object::BatchResults> reply_;
};

kj::Exception disconnected() {
  return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                       kj::str("the connection to the manager was closed before the call was answered"));
}

class LogErrors final : public kj::TaskSet::ErrorHandler {
 public:
  // Every batch's failure goes to its calls' promises: nothing reaches here.
  void taskFailed(kj::Exception&& exception) override { KJ_LOG(ERROR, "batched call", exception); }
};

}  // namespace

bool batchable(const MethodPlan& plan, schema::Kind kind) {
  if (kind == schema::Kind::USER) return false;
  for (const auto& parameter : plan.positional) {
    if (parameter.shape == FieldShape::kTimeout) return false;
  }
  return true;
}

// The calls of one object's batch: each one's parameters (built in the batch request's
// message, adopted into its list when it leaves) and the fulfiller of its promise.
struct CallBatches::Pending {
  explicit Pending(capnp::Capability::Client target)
      : request(target.castAs<schema::Object>().batchRequest(kBatchRequestWords)) {}

  struct Call {
    uint64_t interface_id;
    uint16_t method_id;
    capnp::Orphan<capnp::DynamicStruct> params;
    kj::Own<kj::PromiseFulfiller<capnp::Response<capnp::AnyPointer>>> answer;
  };
  capnp::Request<schema::Object::BatchParams, schema::Object::BatchResults> request;
  std::vector<Call> calls;
};

// The promises of a batch sent: settled by its reply, or failed with the connection (a
// batch dropped unanswered fails its calls as disconnected).
struct CallBatches::InFlight {
  std::vector<kj::Own<kj::PromiseFulfiller<capnp::Response<capnp::AnyPointer>>>> answers;

  ~InFlight() { fail(disconnected()); }

  void fail(const kj::Exception& error) {
    for (auto& answer : answers) {
      if (answer) answer->reject(kj::cp(error));
      answer = nullptr;
    }
  }

  void settle(capnp::Response<schema::Object::BatchResults>&& reply) {
    auto shared = kj::refcounted<SharedReply>(kj::mv(reply));
    auto returns = shared->reader().getReturns();
    if (returns.size() != answers.size()) {
      // The server's reply is not trusted to be well formed.
      fail(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                         kj::str("remote exception: RuntimeError: the manager answered ", returns.size(),
                                 " calls of a batch of ", answers.size())));
      return;
    }
    for (unsigned i = 0; i < returns.size(); ++i) {
      auto& answer = answers[i];
      auto returned = returns[i];
      if (!answer->isWaiting()) {
        answer = nullptr;
        continue;
      }
      if (returned.isFailure()) {
        // As Cap'n Proto's RPC gives a failed call's exception (rpc.c++, toException).
        answer->reject(kj::Exception(kj::Exception::Type::FAILED, "(remote)", 0,
                                     kj::str("remote exception: ", returned.getFailure())));
      } else {
        answer->fulfill(capnp::Response<capnp::AnyPointer>(returned.getResults(), kj::addRef(*shared)));
      }
      answer = nullptr;
    }
  }
};

CallBatches::CallBatches() : errors_(std::make_unique<LogErrors>()), tasks_(*errors_) {}

CallBatches::~CallBatches() {
  // Pending calls never left: their promises fail as disconnected (the Pending's
  // fulfillers would otherwise reject with a note about a destroyed fulfiller).
  for (auto& [id, pending] : pending_) {
    for (auto& call : pending->calls) call.answer->reject(disconnected());
  }
}

CallBatches::Added CallBatches::add(uint64_t object_id, capnp::Capability::Client& target, const MethodPlan& plan) {
  auto full = pending_.find(object_id);
  if (full != pending_.end() && full->second->calls.size() >= kMaxBatchCalls) flush(object_id);
  auto& slot = pending_[object_id];
  if (!slot) {
    slot = std::make_unique<Pending>(target);
    order_.push_back(object_id);
  }
  auto orphanage =
      capnp::Orphanage::getForMessageContaining(static_cast<schema::Object::BatchParams::Builder&>(slot->request));
  auto paf = kj::newPromiseAndFulfiller<capnp::Response<capnp::AnyPointer>>();
  slot->calls.push_back(
      Pending::Call{plan.interface_id, plan.ordinal, orphanage.newOrphan(plan.params), kj::mv(paf.fulfiller)});
  if (!flush_due_) {
    flush_due_ = true;
    tasks_.add(kj::evalLater([this]() {
      flush_due_ = false;
      flush_all();
    }));
  }
  return Added{slot->calls.back().params.get(), kj::mv(paf.promise)};
}

void CallBatches::flush(uint64_t object_id) {
  auto found = pending_.find(object_id);
  if (found == pending_.end()) return;
  auto pending = std::move(found->second);
  pending_.erase(found);
  std::erase(order_, object_id);
  send(*pending);
}

void CallBatches::flush_all() {
  auto order = std::exchange(order_, {});
  auto pending = std::exchange(pending_, {});
  for (uint64_t id : order) send(*pending.at(id));
}

void CallBatches::send(Pending& pending) {
  auto in_flight = kj::heap<InFlight>();
  size_t live = 0;
  for (auto& call : pending.calls) live += call.answer->isWaiting() ? 1 : 0;
  if (live == 0) return;  // every caller gave up before the batch left
  auto list = pending.request.initCalls(static_cast<unsigned>(live));
  unsigned i = 0;
  for (auto& call : pending.calls) {
    if (!call.answer->isWaiting()) continue;  // cancelled: never runs
    auto entry = list[i++];
    entry.setInterfaceId(call.interface_id);
    entry.setMethodId(call.method_id);
    entry.getParams().adopt(kj::mv(call.params));
    in_flight->answers.push_back(kj::mv(call.answer));
  }
  auto& settling = *in_flight;
  tasks_.add(
      pending.request.send()
          .then([&settling](capnp::Response<schema::Object::BatchResults>&& reply) { settling.settle(kj::mv(reply)); },
                [&settling](kj::Exception&& error) { settling.fail(error); })
          .attach(kj::mv(in_flight)));
}

}  // namespace xproc::rpc
