// Calls batched per loop turn (Proxy::call_async, rpc/call_batches.h) and the server's
// Object.batch (rpc/batch_dispatch.cpp), including batches no xproc client would send.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "support/test_support.h"
#include "xproc/errors.h"
#include "xproc/manager.h"
#include "xproc/rpc/server_core.h"

namespace xproc {
namespace {

using std::chrono::seconds;

// Waits for every promise of `replies` (in one loop run) and returns what each gave: its
// Value, or the xproc error it raised, as "<ErrorName>".
std::vector<std::string> outcomes(Manager& manager, std::vector<kj::Promise<Value>> replies) {
  std::vector<std::string> out(replies.size());
  kj::Vector<kj::Promise<void>> done;
  for (size_t i = 0; i < replies.size(); ++i) {
    done.add(replies[i].then([&out, i](Value value) { out[i] = value.repr(); },
                             [&out, i](kj::Exception&& error) {
                               try {
                                 rpc::rethrow_local(error);
                               } catch (const Error& e) {
                                 out[i] = std::string(error_name(e.kind()));
                               }
                             }));
  }
  manager.wait(kj::joinPromises(done.releaseAsArray()));
  return out;
}

TEST(CallBatchesTest, CallsOfOneTurnRunInOrderAndFailAlone) {
  Manager manager;
  auto d = manager.dict();
  std::vector<kj::Promise<Value>> replies;
  replies.push_back(d.call_async("setItem", {"a", 1}));
  replies.push_back(d.call_async("getItem", {"a"}));
  replies.push_back(d.call_async("getItem", {"missing"}));  // KeyError, alone
  replies.push_back(d.call_async("increment", {"a", 41}));
  replies.push_back(d.call_async("len"));
  replies.push_back(d.call_async("popitem"));  // two results: a tuple
  replies.push_back(d.call_async("contains", {"a"}));
  EXPECT_EQ(outcomes(manager, std::move(replies)),
            (std::vector<std::string>{"None", "1", "KeyError", "42", "1", "('a', 42)", "False"}));
}

TEST(CallBatchesTest, ManyCallsToSeveralObjectsInOneTurn) {
  Manager manager;
  auto d = manager.dict();
  auto l = manager.list();
  std::vector<kj::Promise<Value>> replies;
  for (int i = 0; i < 2000; ++i) {
    replies.push_back(d.call_async("setItem", {i, i * 2}));
    replies.push_back(l.call_async("append", {i}));
  }
  for (const auto& outcome : outcomes(manager, std::move(replies))) ASSERT_EQ(outcome, "None");
  EXPECT_EQ(d.size(), 2000u);
  EXPECT_EQ(l.size(), 2000u);
  EXPECT_EQ(d[1999], Value(3998));
  EXPECT_EQ(l[1999], Value(1999));
}

TEST(CallBatchesTest, ACallDroppedBeforeTheLoopRunsNeverRuns) {
  Manager manager;
  auto d = manager.dict();
  { auto dropped = d.call_async("setItem", {"x", 1}); }
  auto kept = d.call_async("setItem", {"y", 2});
  manager.wait(kj::mv(kept));
  EXPECT_FALSE(d.contains("x"));
  EXPECT_EQ(d["y"], Value(2));
}

TEST(CallBatchesTest, ACallThatMayWaitGoesAloneAfterTheObjectsEarlierCalls) {
  Manager manager;
  auto lock = manager.lock();
  ASSERT_EQ(manager.wait(lock.call_async("acquire", {true, 5.0})), Value(true));
  // release travels in a batch; acquire (it has a timeout) on its own. Were it to overtake
  // the release, this owner would find its own lock held and time out.
  auto released = lock.call_async("release");
  auto acquired = lock.call_async("acquire", {true, 2.0});
  manager.wait(kj::mv(released));
  EXPECT_EQ(manager.wait(kj::mv(acquired)), Value(true));
}

TEST(CallBatchesTest, ArgumentsOfTheWrongTypeAreRefusedBeforeAnythingIsSent) {
  Manager manager;
  auto d = manager.dict();
  auto q = manager.queue();
  EXPECT_THROW(d.call_async("noSuchMethod"), AttributeError);
  EXPECT_THROW(d.call_async("getItem", {1, 2, 3}), TypeError);
  EXPECT_THROW(q.call_async("put", {1, "not a bool"}), TypeError);
  EXPECT_THROW(q.call_async("get", {true, -1.0}), ValueError);  // a negative timeout
  EXPECT_EQ(manager.wait(d.call_async("len")), Value(0));
}

// A batch built by hand on the object's capability, as a client in another language
// could send it.
class RawBatch {
 public:
  RawBatch(capnp::Capability::Client object, unsigned calls)
      : request_(object.castAs<schema::Object>().batchRequest()), calls_(request_.initCalls(calls)) {}

  schema::Object::BatchedCall::Builder operator[](unsigned i) { return calls_[i]; }
  capnp::Response<schema::Object::BatchResults> send(Manager& manager) { return manager.wait(request_.send()); }

 private:
  capnp::Request<schema::Object::BatchParams, schema::Object::BatchResults> request_;
  capnp::List<schema::Object::BatchedCall>::Builder calls_;
};

TEST(CallBatchesTest, ServerRefusesWhatABatchMayNotCarryAndAnswersTheRest) {
  Manager manager;
  auto q = manager.queue();
  q.put(7);
  RawBatch batch(q.client(), 5);
  const uint64_t queue_id = capnp::typeId<schema::Queue>();
  // 0: get may wait (it has a timeout): refused.
  batch[0].setInterfaceId(queue_id);
  batch[0].setMethodId(1);
  batch[0].getParams().initAs<schema::Queue::GetParams>().setTimeout(1);
  // 1: a batch in a batch: refused.
  batch[1].setInterfaceId(capnp::typeId<schema::Object>());
  batch[1].setMethodId(rpc::kBatchMethod);
  // 2: a method the interface does not have.
  batch[2].setInterfaceId(queue_id);
  batch[2].setMethodId(999);
  // 3: an interface the object does not serve.
  batch[3].setInterfaceId(capnp::typeId<schema::Dict>());
  batch[3].setMethodId(0);
  // 4: a good call after all of them.
  batch[4].setInterfaceId(queue_id);
  batch[4].setMethodId(2);  // qsize
  auto reply = batch.send(manager);
  auto returns = reply.getReturns();
  ASSERT_EQ(returns.size(), 5u);
  for (unsigned i = 0; i < 4; ++i) EXPECT_TRUE(returns[i].isFailure()) << i;
  EXPECT_EQ(std::string(returns[0].getFailure().cStr()).rfind("TypeError: get() may wait", 0), 0u)
      << returns[0].getFailure().cStr();
  EXPECT_EQ(std::string(returns[1].getFailure().cStr()), "TypeError: batch() cannot be batched");
  ASSERT_TRUE(returns[4].isResults());
  EXPECT_EQ(returns[4].getResults().getAs<schema::Queue::QsizeResults>().getSize(), 1u);
  // Nothing was taken, and the connection serves on.
  EXPECT_EQ(q.get(true, seconds(5)), Value(7));
}

TEST(CallBatchesTest, ParametersOfAnotherShapeFailTheirCallAlone) {
  Manager manager;
  auto d = manager.dict();
  d.set("k", 1);
  RawBatch batch(d.client(), 3);
  const uint64_t dict_id = capnp::typeId<schema::Dict>();
  batch[0].setInterfaceId(dict_id);
  batch[0].setMethodId(0);  // getItem, its params a text instead of a struct
  batch[0].getParams().setAs<capnp::Text>("not a struct");
  batch[1].setInterfaceId(dict_id);
  batch[1].setMethodId(0);  // getItem with a key that is a text, not a Value
  batch[1].getParams().initAsAnyStruct(0, 1).getPointerSection()[0].setAs<capnp::Text>("k");
  batch[2].setInterfaceId(dict_id);
  batch[2].setMethodId(0);
  Value("k").to_capnp(batch[2].getParams().initAs<schema::Dict::GetItemParams>().initKey());
  auto reply = batch.send(manager);
  auto returns = reply.getReturns();
  ASSERT_EQ(returns.size(), 3u);
  EXPECT_TRUE(returns[0].isFailure());
  EXPECT_TRUE(returns[1].isFailure());
  ASSERT_TRUE(returns[2].isResults());
  EXPECT_EQ(Value::from_capnp(returns[2].getResults().getAs<schema::Dict::GetItemResults>().getValue()), Value(1));
}

TEST(CallBatchesTest, CallsWaitingForTheirTurnFailAsDisconnectedWhenTheServerGoes) {
  Manager manager;
  auto d = manager.dict();
  manager.wait(d.call_async("len"));  // connected
  auto pending = d.call_async("setItem", {"a", 1});
  manager.shutdown();
  EXPECT_THROW(manager.wait(kj::mv(pending)), ConnectionError);
}

TEST(CallBatchesTest, AnEmptyBatchIsAnsweredEmpty) {
  Manager manager;
  auto d = manager.dict();
  auto request = d.client().castAs<schema::Object>().batchRequest();
  request.initCalls(0);
  EXPECT_EQ(manager.wait(request.send()).getReturns().size(), 0u);
}

}  // namespace
}  // namespace xproc
