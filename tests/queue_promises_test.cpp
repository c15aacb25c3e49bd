// Queue promises on this thread's kj loop: a get_async resolves with what another process
// put, a dropped (cancelled) one takes nothing, a thousand pending gets share one doorbell
// and each gets one message, promises cancelled at random while a producer streams lose
// and duplicate nothing, puts await room and joins await task_done, and xproc::wait()
// watches queues beside connections.
#include <gtest/gtest.h>

#include <kj/async.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "support/test_support.h"
#include "xproc/byte_connection.h"
#include "xproc/errors.h"
#include "xproc/event_loop.h"
#include "xproc/process.h"
#include "xproc/queue_promises.h"
#include "xproc/wait.h"

namespace {

using xproc::Value;
using ValueQueue = xproc::Queue<xproc::Value>;
using namespace std::chrono_literals;

// Puts 0 .. count-1 from another process, pausing now and then so that the consumer
// empties the queue and sleeps.
xproc::Process producer(ValueQueue q, int count, int pause_every = 0) {
  xproc::Process process([q, count, pause_every]() mutable {
    for (int i = 0; i < count; ++i) {
      q.put(Value(int64_t{i}));
      if (pause_every != 0 && i % pause_every == pause_every - 1) std::this_thread::sleep_for(2ms);
    }
  });
  process.start();
  return process;
}

// Puts 0 .. count-1 from another process in batches, each after a token on `go`: between
// batches the queue stays empty until the consumer says so, whatever either side's speed.
xproc::Process batched_producer(ValueQueue q, ValueQueue go, int count, int batch) {
  xproc::Process process([q, go, count, batch]() mutable {
    for (int i = 0; i < count; ++i) {
      if (i % batch == 0) go.get(true, 30s);
      q.put(Value(int64_t{i}));
    }
  });
  process.start();
  return process;
}

kj::WaitScope& scope() { return xproc::event_loop().waitScope; }

TEST(QueuePromises, GetAsyncResolvesWithWhatAnotherProcessPutInOrder) {
  ValueQueue q;
  auto p = producer(q, 2000, 250);
  for (int64_t i = 0; i < 2000; ++i) ASSERT_EQ(xproc::wait(xproc::get_async(q)).as_int(), i);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(QueuePromises, ADroppedGetTakesNothing) {
  ValueQueue q;
  {
    auto pending = xproc::get_async(q);
    EXPECT_FALSE(pending.poll(scope()));  // asleep on the doorbell
  }
  q.put(Value("kept"));
  {
    auto pending = xproc::get_async(q);  // made and dropped before the loop ran it
  }
  EXPECT_EQ(q.get(false).as_text(), "kept");
}

TEST(QueuePromises, AThousandPendingGetsEachGetOneMessage) {
  ValueQueue q;
  kj::Vector<kj::Promise<Value>> gets;
  for (int i = 0; i < 1000; ++i) gets.add(xproc::get_async(q));
  auto all = kj::joinPromises(gets.releaseAsArray());
  EXPECT_FALSE(all.poll(scope()));
  auto p = producer(q, 1000, 100);
  auto values = xproc::wait(kj::mv(all));
  std::set<int64_t> seen;
  for (const Value& v : values) seen.insert(v.as_int());
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), 999);
  p.join();
  EXPECT_TRUE(q.empty());
}

TEST(QueuePromises, GetsCancelledAtRandomWhileAProducerStreamsLoseAndDuplicateNothing) {
  constexpr int kCount = 20000;
  constexpr int kBatch = 500;
  ValueQueue q;
  ValueQueue go;
  auto p = batched_producer(q, go, kCount, kBatch);
  std::mt19937 random(7);
  std::vector<int64_t> got;
  auto& timer = xproc::event_loop().provider->getTimer();
  int cancelled = 0;
  size_t batches_released = 0;
  bool lost_on_emptied_queue = true;  // lets the first batch go
  while (got.size() < static_cast<size_t>(kCount)) {
    // The next batch is released only after a get has lost to its timer on the emptied
    // queue, so cancellations happen however slow this process runs (a sanitizer build).
    bool batch_consumed = got.size() == batches_released * kBatch;
    if (batch_consumed && lost_on_emptied_queue) {
      go.put(Value(true));
      ++batches_released;
      lost_on_emptied_queue = false;
    }
    // Each get races a short timer; the loser is dropped. A get that lost took nothing.
    auto deadline =
        timer.afterDelay((random() % 200) * kj::MICROSECONDS).then([]() -> kj::Maybe<Value> { return nullptr; });
    auto get = xproc::get_async(q).then([](Value v) -> kj::Maybe<Value> { return kj::mv(v); });
    auto first = xproc::wait(get.exclusiveJoin(kj::mv(deadline)));
    KJ_IF_MAYBE (value, first) {
      got.push_back(value->as_int());
    } else {
      ++cancelled;
      if (got.size() == batches_released * kBatch) lost_on_emptied_queue = true;
    }
  }
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_GE(cancelled, kCount / kBatch - 1);
  std::vector<int64_t> expected(kCount);
  for (int i = 0; i < kCount; ++i) expected[i] = i;
  EXPECT_EQ(got, expected);  // one consumer: in order, each exactly once
  EXPECT_TRUE(q.empty());
}

TEST(QueuePromises, BlockingAndAsyncConsumersShareAStreamEachMessageOnce) {
  constexpr int kCount = 20000;
  ValueQueue q;
  ValueQueue tally;  // what the blocking consumer got, then its stop mark
  xproc::Process blocking([q, tally]() mutable {
    for (;;) {
      auto v = q.get();
      tally.put(v);
      if (v.as_int() < 0) return;
    }
  });
  blocking.start();
  xproc::Process producer([q]() mutable {
    for (int i = 0; i < kCount; ++i) {
      q.put(Value(int64_t{i}));
      if (i % 500 == 499) std::this_thread::sleep_for(2ms);
    }
    for (int consumer = 0; consumer < 2; ++consumer) q.put(Value(int64_t{-1}));
  });
  producer.start();
  std::vector<int64_t> all;
  for (;;) {
    auto v = xproc::wait(xproc::get_async(q));
    if (v.as_int() < 0) break;
    all.push_back(v.as_int());
  }
  const size_t ours = all.size();
  blocking.join();
  producer.join();
  for (;;) {
    auto v = tally.get(false);
    if (v.as_int() < 0) break;
    all.push_back(v.as_int());
  }
  std::sort(all.begin(), all.end());
  std::vector<int64_t> expected(kCount);
  for (int i = 0; i < kCount; ++i) expected[i] = i;
  EXPECT_EQ(all, expected);
  EXPECT_GT(ours, 0u);
  EXPECT_LT(ours, static_cast<size_t>(kCount));  // both consumers took part
}

TEST(QueuePromises, PutAsyncAwaitsRoomAndADroppedOnePutsNothing) {
  ValueQueue q(1);
  xproc::wait(xproc::put_async(q, Value("first")));
  {
    auto blocked = xproc::put_async(q, Value("dropped"));
    EXPECT_FALSE(blocked.poll(scope()));
  }
  auto second = xproc::put_async(q, Value("second"));
  EXPECT_FALSE(second.poll(scope()));
  xproc::Process taker([q]() mutable {
    std::this_thread::sleep_for(20ms);
    q.get();
  });
  taker.start();
  xproc::wait(kj::mv(second));
  taker.join();
  EXPECT_EQ(q.get(false).as_text(), "second");
  EXPECT_TRUE(q.empty());
}

TEST(QueuePromises, JoinAsyncResolvesOnceEveryMessageIsDone) {
  xproc::JoinableQueue<xproc::schema::Value> q;
  capnp::MallocMessageBuilder item;
  item.initRoot<xproc::schema::Value>().setInt64(1);
  for (int i = 0; i < 3; ++i) q.put(item);
  auto joined = xproc::join_async(q);
  EXPECT_FALSE(joined.poll(scope()));
  xproc::Process worker([q]() mutable {
    for (int i = 0; i < 3; ++i) {
      q.get();
      std::this_thread::sleep_for(5ms);
      q.task_done();
    }
  });
  worker.start();
  xproc::wait(kj::mv(joined));
  EXPECT_TRUE(q.empty());
  worker.join();
}

TEST(QueuePromises, AMalformedMessageRejectsTheGetWithDecodeErrorAndTheNextOneWorks) {
  ValueQueue q;
  const std::vector<std::byte> garbage(24, std::byte{0xff});
  q.bytes().put_bytes(garbage);
  q.put(Value("after"));
  EXPECT_THROW(xproc::wait(xproc::get_async(q)), xproc::DecodeError);
  EXPECT_EQ(xproc::wait(xproc::get_async(q)).as_text(), "after");
}

TEST(QueuePromises, TypedQueuesPutAndGetMessages) {
  xproc::Queue<xproc::schema::Value> q;
  capnp::MallocMessageBuilder builder;
  builder.initRoot<xproc::schema::Value>().setText("typed");
  xproc::wait(xproc::put_async(q, builder));
  auto message = xproc::wait(xproc::get_async(q));
  EXPECT_EQ(std::string(message->getText()), "typed");
}

TEST(Wait, ReturnsTheQueueThatGotAMessageBesideConnections) {
  ValueQueue idle, busy;
  auto [a, b] = xproc::byte_pipe(true, {});
  EXPECT_TRUE(xproc::wait({&a}, {&idle, &busy}, 50ms).queues.empty());
  xproc::Process putter([busy]() mutable {
    std::this_thread::sleep_for(20ms);
    busy.put(Value(int64_t{1}));
  });
  putter.start();
  auto ready = xproc::wait({&a}, {&idle, &busy}, 10s);
  ASSERT_EQ(ready.queues.size(), 1u);
  EXPECT_EQ(ready.queues[0], &busy);
  EXPECT_TRUE(ready.connections.empty());
  putter.join();
  b.send_bytes(std::as_bytes(std::span("x", 1)));
  ready = xproc::wait({&a}, {&idle}, 10s);
  ASSERT_EQ(ready.connections.size(), 1u);
  EXPECT_EQ(ready.connections[0], &a);
}

}  // namespace
