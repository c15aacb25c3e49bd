// The client's side of Object.batch (manager.capnp): calls made on an event-loop
// connection wait for the loop's next turn, and then the calls to each object leave in
// one batch, a single RPC, whose reply settles each call's own promise.
//
// Why: Cap'n Proto's RPC costs both sides a few microseconds per call, far more than a
// dict lookup. A program that sends many calls before it waits (an asyncio gather, a C++
// loop of call_async) is the one Redis serves with pipelining; batching the calls of a
// turn gives it one round trip and one RPC for all of them.
//
// What may be batched: a method that answers at once, i.e. one without a `timeout`
// parameter (a call that may wait must not hold up the calls behind it, and its reply
// must not be lost to a cancellation), on a built-in object (a user's interface has no
// batch). Order: the calls to one object run in the order they were made. A call that
// cannot be batched flushes its object's pending batch before it goes, so it cannot
// overtake an earlier call to the same object.
//
// Cancelling: dropping a call's promise before its batch leaves takes it out of the batch
// (it never runs); after, its reply is ignored.
//
// Size: a batch carries at most 64 calls (further calls of the turn leave in the next
// batches, in order), because its reply is one message within the client's limit.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include <capnp/any.h>
#include <capnp/capability.h>
#include <capnp/dynamic.h>
#include <kj/async.h>

#include "xproc/manager.capnp.h"
#include "xproc/rpc/method_plan.h"

namespace xproc::rpc {

// Whether a call of `plan` on an object of `kind` travels in a batch.
bool batchable(const MethodPlan& plan, schema::Kind kind);

class CallBatches {
 public:
  CallBatches();
  ~CallBatches();  // calls not yet answered fail as disconnected
  KJ_DISALLOW_COPY(CallBatches);

  struct Added {
    capnp::DynamicStruct::Builder params;  // to fill before the loop runs
    kj::Promise<capnp::Response<capnp::AnyPointer>> reply;
  };
  // Adds a call of `plan` to the batch for the object `object_id` (reached through
  // `target`) that leaves at this thread's next loop turn.
  Added add(uint64_t object_id, capnp::Capability::Client& target, const MethodPlan& plan);

  // Sends the pending batch for `object_id` now, if there is one.
  void flush(uint64_t object_id);

 private:
  struct Pending;
  struct InFlight;
  void flush_all();
  void send(Pending& pending);

  std::unordered_map<uint64_t, std::unique_ptr<Pending>> pending_;
  std::vector<uint64_t> order_;  // objects with a pending batch, in the order of their first call
  bool flush_due_ = false;       // a flush is queued for the loop's next turn
  std::unique_ptr<kj::TaskSet::ErrorHandler> errors_;
  kj::TaskSet tasks_;  // the queued flush, and the batches sent awaiting their reply
};

}  // namespace xproc::rpc
