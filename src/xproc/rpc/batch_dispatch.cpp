// The server's side of Object.batch (manager.capnp): the calls a batch carries, run one by
// one through the object's own dispatch, each with a call context that reads its
// parameters from the batch and writes its results into the batch's reply.
//
// Why: kj's RpcSystem costs the server a few microseconds per call (the message read,
// the question and answer tables, promise nodes, the Return and the Finish), several
// times what a dict lookup costs. A client with many calls to send at once (an event
// loop's turn) pays that once for all of them.
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>

#include <capnp/capability.h>
#include <capnp/schema.h>

#include "xproc/rpc/server_core.h"

namespace xproc::rpc {
namespace {

// One batched call's context: what a method's CallContext reads and writes. Tail calls and
// pipelining on results are not for batched calls (none of the objects' methods make
// them).
class BatchedCallContext final : public capnp::CallContextHook, public kj::Refcounted {
 public:
  BatchedCallContext(capnp::AnyPointer::Reader params, schema::Object::BatchedReturn::Builder answer)
      : params_(params), answer_(answer) {}

  capnp::AnyPointer::Reader getParams() override { return params_; }
  void releaseParams() override {}
  capnp::AnyPointer::Builder getResults(kj::Maybe<capnp::MessageSize>) override {
    if (!results_) results_ = answer_.initResults();
    return *results_;
  }
  kj::Promise<void> tailCall(kj::Own<capnp::RequestHook>&&) override {
    KJ_UNIMPLEMENTED("a batched call cannot make a tail call");
  }
  void allowCancellation() override {}
  void setPipeline(kj::Own<capnp::PipelineHook>&&) override {}
  kj::Promise<capnp::AnyPointer::Pipeline> onTailCall() override { return kj::NEVER_DONE; }
  capnp::ClientHook::VoidPromiseAndPipeline directTailCall(kj::Own<capnp::RequestHook>&&) override {
    KJ_UNIMPLEMENTED("a batched call cannot make a tail call");
  }
  kj::Own<capnp::CallContextHook> addRef() override { return kj::addRef(*this); }

 private:
  capnp::AnyPointer::Reader params_;
  schema::Object::BatchedReturn::Builder answer_;
  std::optional<capnp::AnyPointer::Builder> results_;
};

std::string method_name(capnp::InterfaceSchema::Method method) {
  auto name = method.getProto().getName();
  return {name.begin(), name.size()};
}

// Why a call of (interface_id, method_id) on an object serving `serves` may not be
// batched, "" when it may, or nothing when the object has no such method (left to the
// dispatch, which answers it as any call of it would be answered).
std::optional<std::string> find_refusal(capnp::InterfaceSchema serves, uint64_t interface_id, uint16_t method_id) {
  if (interface_id == capnp::typeId<schema::Object>() && method_id == kBatchMethod) {
    return "TypeError: batch() cannot be batched";
  }
  capnp::InterfaceSchema declaring = serves;
  if (serves.getProto().getId() != interface_id) {
    KJ_IF_MAYBE (base, serves.findSuperclass(interface_id)) {
      declaring = *base;
    } else {
      return std::nullopt;
    }
  }
  auto methods = declaring.getMethods();
  if (method_id >= methods.size()) return std::nullopt;
  auto method = methods[method_id];
  if (method.getParamType().findFieldByName("timeout") != nullptr) {
    return "TypeError: " + method_name(method) + "() may wait: it cannot be batched";
  }
  return "";
}

// find_refusal(), remembered for the methods the schema has (a finite set: the ids a
// client makes up are looked up each time and never stored).
const std::string& refusal(capnp::InterfaceSchema serves, uint64_t interface_id, uint16_t method_id) {
  struct Key {
    uint64_t serves, interface_id;
    uint16_t method_id;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& key) const noexcept {
      return std::hash<uint64_t>()(key.serves * 31 + key.interface_id) ^ key.method_id;
    }
  };
  static thread_local std::unordered_map<Key, std::string, KeyHash> known;
  static const std::string kNone;
  const Key key{serves.getProto().getId(), interface_id, method_id};
  auto found = known.find(key);
  if (found != known.end()) return found->second;
  auto why = find_refusal(serves, interface_id, method_id);
  if (!why) return kNone;
  return known.emplace(key, std::move(*why)).first->second;
}

}  // namespace

kj::Promise<void> run_batch(capnp::Capability::Server& server, capnp::InterfaceSchema serves,
                            capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer> context) {
  auto calls = context.getParams().getAs<schema::Object::BatchParams>().getCalls();
  // Room for each answer's header and a small result: a larger one grows the message.
  const uint64_t words = 8 + calls.size() * 8ull;
  auto answers =
      context.getResults(capnp::MessageSize{words, 0}).initAs<schema::Object::BatchResults>().initReturns(calls.size());
  kj::Vector<kj::Promise<void>> running(calls.size());
  for (unsigned i = 0; i < calls.size(); ++i) {
    auto call = calls[i];
    auto answer = answers[i];
    const std::string& why = refusal(serves, call.getInterfaceId(), call.getMethodId());
    if (!why.empty()) {
      answer.setFailure(why);
      continue;
    }
    auto hook = kj::refcounted<BatchedCallContext>(call.getParams(), answer);
    // The object's own dispatch (Served::dispatchCall): counted, its errors Python-named.
    auto dispatched = server.dispatchCall(call.getInterfaceId(), call.getMethodId(),
                                          capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer>(*hook));
    running.add(
        dispatched.promise
            .then([]() {}, [answer](kj::Exception&& error) mutable { answer.setFailure(error.getDescription()); })
            .attach(kj::mv(hook)));
  }
  return kj::joinPromises(running.releaseAsArray());
}

}  // namespace xproc::rpc
