// Tests for xproc::nats::Queue against real nats-server processes: JoinableQueue's
// semantics, handles on other connections, redelivery, schemas, and a cluster member
// SIGKILLed while messages flow.
#include "xproc/nats/queue.h"

#include <capnp/message.h>
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <thread>

#include "counter.capnp.h"
#include "support/nats_server.h"
#include "support/test_support.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using xproc::Value;
using xproc::nats::Acknowledge;
using xproc::nats::Queue;
using xproc::nats::QueueOptions;
using xproc::testing::NatsServers;
using Params = Counter::IncrementParams;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

class NatsQueueTest : public xproc::testing::OneNatsServerSuite {};

TEST_F(NatsQueueTest, PutGetTaskDoneJoinRoundTripInOrder) {
  Queue<Value> q(connect(), xproc::testing::unique_name("round"));
  for (int i = 0; i < 20; ++i) q.put(Value::list({i, "item " + std::to_string(i)}));
  EXPECT_EQ(q.qsize(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(q.get(true, 5s), Value::list({i, "item " + std::to_string(i)}));
    q.task_done();
  }
  q.join(10s);
  EXPECT_EQ(q.qsize(), 0u);
  EXPECT_TRUE(q.empty());
  q.put(Value("last"));
  EXPECT_EQ(q.get_nowait(), Value("last"));
  q.task_done();
}

TEST_F(NatsQueueTest, GetOnEmptyRaisesEmptyWithinTimeout) {
  Queue<Value> q(connect(), xproc::testing::unique_name("empty"));
  EXPECT_THROW(q.get_nowait(), xproc::Empty);
  EXPECT_FALSE(q.try_get().has_value());
  const auto start = Clock::now();
  EXPECT_THROW(q.get(true, 0.5s), xproc::Empty);
  EXPECT_LT(seconds_since(start), 1.5);
  EXPECT_THROW(q.get(true, -1s), xproc::ValueError);
}

TEST_F(NatsQueueTest, TaskDoneWithoutGetRaisesValueError) {
  Queue<Value> q(connect(), xproc::testing::unique_name("extra"));
  EXPECT_THROW(q.task_done(), xproc::ValueError);
  q.put(Value(1));
  q.get(true, 5s);
  q.task_done();
  EXPECT_THROW(q.task_done(), xproc::ValueError);
}

TEST_F(NatsQueueTest, JoinWithUnfinishedTaskRaisesTimeoutError) {
  Queue<Value> q(connect(), xproc::testing::unique_name("join"));
  q.put(Value("job"));
  q.get(true, 5s);
  const auto start = Clock::now();
  EXPECT_THROW(q.join(0.3s), xproc::TimeoutError);
  EXPECT_LT(seconds_since(start), 1.3);
  q.task_done();
  q.join(10s);
}

TEST_F(NatsQueueTest, PutIntoFullQueueRaisesFull) {
  Queue<Value> q(connect(), xproc::testing::unique_name("full"), {.maxsize = 2});
  q.put(Value(1));
  q.put(Value(2));
  EXPECT_THROW(q.put_nowait(Value(3)), xproc::Full);
  const auto start = Clock::now();
  EXPECT_THROW(q.put(Value(3), true, 0.5s), xproc::Full);
  EXPECT_LT(seconds_since(start), 1.5);
  // Room again once a message is acknowledged: a blocked put goes through.
  EXPECT_EQ(q.get(true, 5s), Value(1));
  q.task_done();
  q.put(Value(3), true, 10s);
  EXPECT_EQ(q.get(true, 5s), Value(2));
  EXPECT_EQ(q.get(true, 5s), Value(3));
}

TEST_F(NatsQueueTest, SecondHandleGetsWhatTheFirstDidNot) {
  const std::string name = xproc::testing::unique_name("two");
  Queue<Value> first(connect(), name);
  Queue<Value> second(connect(), name);
  first.put(Value("a"));
  second.put(Value("b"));
  EXPECT_EQ(first.get(true, 5s), Value("a"));
  EXPECT_EQ(second.get(true, 5s), Value("b"));
  EXPECT_THROW(second.get(true, 0.3s), xproc::Empty);
  first.task_done();
  second.task_done();
  first.join(10s);
}

TEST_F(NatsQueueTest, UnacknowledgedMessageIsRedeliveredAfterAckWait) {
  const std::string name = xproc::testing::unique_name("redeliver");
  Queue<Value> slow(connect(), name, {.ack_wait = 1s});
  Queue<Value> other(connect(), name, {.ack_wait = 1s});
  slow.put(Value("work"));
  EXPECT_EQ(slow.get(true, 5s), Value("work"));
  // Not acknowledged: after ack_wait it goes to whoever gets next.
  EXPECT_EQ(other.get(true, 10s), Value("work"));
  other.task_done();
  other.join(10s);
}

TEST_F(NatsQueueTest, DestroyedHandleHandsBackUnacknowledgedMessageAtOnce) {
  const std::string name = xproc::testing::unique_name("handback");
  Queue<Value> other(connect(), name, {.ack_wait = 60s});
  {
    Queue<Value> leaving(connect(), name, {.ack_wait = 60s});
    leaving.put(Value("first"));
    leaving.put(Value("second"));
    EXPECT_EQ(leaving.get(true, 5s), Value("first"));
    EXPECT_EQ(leaving.get(true, 5s), Value("second"));
  }
  // Well before ack_wait: the destructor handed both back.
  const auto start = Clock::now();
  std::set<std::string> got;
  got.insert(other.get(true, 10s).as_text());
  got.insert(other.get(true, 10s).as_text());
  EXPECT_LT(seconds_since(start), 10.0);
  EXPECT_EQ(got, (std::set<std::string>{"first", "second"}));
}

TEST_F(NatsQueueTest, AcknowledgeOnGetRemovesAtGet) {
  Queue<Value> q(connect(), xproc::testing::unique_name("onget"), {.acknowledge = Acknowledge::kOnGet});
  q.put(Value(7));
  EXPECT_EQ(q.get(true, 5s), Value(7));
  q.join(10s);    // no task_done needed
  q.task_done();  // and a no-op
  EXPECT_EQ(q.qsize(), 0u);
}

TEST_F(NatsQueueTest, TypedQueueRoundTripsStruct) {
  Queue<Params> q(connect(), xproc::testing::unique_name("typed"));
  capnp::MallocMessageBuilder builder;
  builder.initRoot<Params>().setBy(42);
  q.put(builder);
  q.put(builder.getRoot<Params>().asReader());
  EXPECT_EQ(q.get(true, 5s)->getBy(), 42);
  EXPECT_EQ(q.get(true, 5s)->getBy(), 42);
}

TEST_F(NatsQueueTest, MessageOfAnotherSchemaRaisesDecodeErrorAndNextGetWorks) {
  auto nats = connect();
  const std::string name = xproc::testing::unique_name("schema");
  Queue<Params> q(nats, name);
  // Another program's message on the queue's subject: another schema id, then none at all.
  const uint64_t other_id = capnp::typeId<Counter::ValueResults>();
  for (const bool with_header : {true, false}) {
    natsMsg* message = nullptr;
    ASSERT_EQ(natsMsg_Create(&message, ("xproc.queue." + name).c_str(), nullptr, "x", 1), NATS_OK);
    if (with_header) natsMsgHeader_Set(message, "Xproc-Schema-Id", xproc::schema_id_hex(other_id).c_str());
    ASSERT_EQ(js_PublishMsg(nullptr, nats->jetstream(), message, nullptr, nullptr), NATS_OK);
    natsMsg_Destroy(message);
  }
  capnp::MallocMessageBuilder builder;
  builder.initRoot<Params>().setBy(5);
  q.put(builder);

  try {
    q.get(true, 5s);
    FAIL() << "expected DecodeError";
  } catch (const xproc::DecodeError& error) {
    const std::string what = error.what();
    EXPECT_NE(what.find(xproc::schema_id_hex(other_id)), std::string::npos) << what;
    EXPECT_NE(what.find(xproc::schema_id_hex(capnp::typeId<Params>())), std::string::npos) << what;
  }
  EXPECT_THROW(q.get(true, 5s), xproc::DecodeError);
  EXPECT_EQ(q.get(true, 5s)->getBy(), 5);
  q.task_done();
  q.join(10s);
}

TEST_F(NatsQueueTest, InvalidNameRaisesValueError) {
  auto nats = connect();
  for (const std::string& name :
       std::vector<std::string>{"", "a.b", "a b", "a*", "a>", "caf\xc3\xa9", std::string(201, 'q')}) {
    EXPECT_THROW(Queue<Value>(nats, name), xproc::ValueError) << name;
  }
  Queue<Value> longest(nats, std::string(200, 'q'));
}

TEST_F(NatsQueueTest, StreamOfAnotherSchemaRaisesValueError) {
  auto nats = connect();
  const std::string name = xproc::testing::unique_name("mixed");
  Queue<Value> values(nats, name);
  EXPECT_THROW(Queue<Params>(nats, name), xproc::ValueError);
  Queue<Value> again(nats, name);
}

// A cluster of three, the stream on all of them, one SIGKILLed while a producer puts with
// message ids and a consumer gets: nothing lost, nothing stored twice.
TEST(NatsQueueClusterTest, KillingAServerMidwayLosesNoMessage) {
  NatsServers cluster(3);
  xproc::nats::Options options = cluster.options();
  options.request_timeout = 2s;
  const std::string name = xproc::testing::unique_name("cluster");
  constexpr int kCount = 2000;
  auto producer_connection = xproc::nats::connect(options);
  auto consumer_connection = xproc::nats::connect(options);
  Queue<Value> producer(producer_connection, name, {.replicas = 3, .ack_wait = 3s});
  Queue<Value> consumer(consumer_connection, name, {.replicas = 3, .ack_wait = 3s});

  std::atomic<int> put{0};
  std::atomic<bool> producer_failed{false};
  std::exception_ptr producer_error;
  std::thread producing([&] {
    try {
      for (int i = 0; i < kCount; ++i) {
        const auto words = Value(i).encode();
        producer.stream().put_bytes(std::as_bytes(std::span(words.begin(), words.size())), true, 60s,
                                    name + "-" + std::to_string(i));
        put = i + 1;
      }
    } catch (...) {
      producer_error = std::current_exception();
      producer_failed = true;
    }
  });

  std::vector<int64_t> received;
  std::exception_ptr consumer_error;
  std::thread consuming([&] {
    try {
      std::set<int64_t> distinct;
      const auto deadline = Clock::now() + 120s;
      while (int(distinct.size()) < kCount && Clock::now() < deadline && !producer_failed) {
        auto value = consumer.try_get(1s);
        if (!value) continue;
        received.push_back(value->as_int());
        distinct.insert(value->as_int());
        consumer.task_done();
      }
      // A delivery the killed server had not yet replicated is delivered once more by the new
      // consumer leader, and only to a getter that keeps asking: drain until the stream is
      // empty, as a worker that runs until join() would.
      while (!producer_failed && Clock::now() < deadline && consumer.qsize() > 0) {
        auto value = consumer.try_get(500ms);
        if (!value) continue;
        received.push_back(value->as_int());
        consumer.task_done();
      }
    } catch (...) {
      consumer_error = std::current_exception();
    }
  });

  while (put < kCount / 2 && !producer_failed) std::this_thread::sleep_for(1ms);
  // The server both clients are connected to (they try the servers in order).
  cluster.kill(0);
  producing.join();
  consuming.join();
  cluster.start(0);
  if (producer_error) std::rethrow_exception(producer_error);
  if (consumer_error) std::rethrow_exception(consumer_error);

  // Every message got; the stream stored each once (the retried puts' ids were dropped).
  std::vector<int64_t> distinct = received;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  ASSERT_EQ(distinct.size(), size_t(kCount));
  EXPECT_EQ(distinct.front(), 0);
  EXPECT_EQ(distinct.back(), kCount - 1);
  jsStreamInfo* info = nullptr;
  ASSERT_EQ(js_GetStreamInfo(&info, consumer_connection->jetstream(), name.c_str(), nullptr, nullptr), NATS_OK);
  EXPECT_EQ(info->State.LastSeq, uint64_t(kCount));
  jsStreamInfo_Destroy(info);
  // In order but for the few deliveries the dead server took with it: each comes back after
  // ack_wait, behind the messages after it (and, if only its acknowledgement was lost, twice).
  // One getter taking one message at a time has at most a few in flight at the kill.
  size_t out_of_order = 0;
  for (size_t i = 1; i < received.size(); ++i) out_of_order += received[i] < received[i - 1] ? 1 : 0;
  EXPECT_LE(out_of_order, 5u);
  EXPECT_LE(received.size() - distinct.size(), 5u);
  consumer.join(30s);
}

// A server that answers nothing (SIGSTOP) holds qsize(), join() and a new handle until
// request_timeout; the interrupt check ends them sooner, and the queue works again once the server does.
TEST(NatsQueuePausedServerTest, InterruptCheckEndsCallsToAServerThatDoesNotAnswer) {
  NatsServers server(1);
  auto options = server.options();
  options.request_timeout = 30s;
  Queue<Value> q(xproc::nats::connect(options), xproc::testing::unique_name("paused"));
  q.put(Value(1));
  {
    xproc::testing::InterruptCheck check;
    xproc::testing::PausedServer paused(server, 0);
    check.interrupt_after(300ms);
    const auto start = Clock::now();
    EXPECT_THROW(q.qsize(), xproc::testing::Interrupted);
    EXPECT_GE(seconds_since(start), 0.25);  // it waited for the server...
    EXPECT_LT(seconds_since(start), 10.0);  // ...not for request_timeout
    check.interrupt_after(300ms);
    EXPECT_THROW(q.join(), xproc::testing::Interrupted);
    check.interrupt_after(300ms);
    EXPECT_THROW(Queue<Value>(q.stream().connection(), q.stream().name()), xproc::testing::Interrupted);
  }
  EXPECT_EQ(q.qsize(), 1u);
  EXPECT_EQ(q.get(true, 10s), Value(1));
  q.task_done();
  q.join(10s);
}

}  // namespace
