// Tests for xproc::nats::Dict against a real nats-server: a dict's operations, revisions and
// compare-and-set, increments racing from several connections, foreign bytes, and servers that
// do not answer (the interrupt check; writes whose answers were lost, stored once).
#include "xproc/nats/dict.h"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/nats_server.h"
#include "support/test_support.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using xproc::Value;
using xproc::nats::Dict;
using xproc::testing::InterruptCheck;
using xproc::testing::Interrupted;
using xproc::testing::NatsServers;
using xproc::testing::PausedServer;

class NatsDictTest : public xproc::testing::OneNatsServerSuite {};

TEST_F(NatsDictTest, SetGetEraseKeysBehaveAsADict) {
  Dict d(connect(), xproc::testing::unique_name("basic"));
  EXPECT_EQ(d.size(), 0u);
  EXPECT_TRUE(d.keys().empty());
  EXPECT_FALSE(d.get("absent").has_value());
  EXPECT_FALSE(d.contains("absent"));

  const uint64_t first = d.set("mode", Value("fast"));
  const uint64_t second = d.set("config/limits.max_items=", Value::map({{"n", 3}, {"on", true}}));
  EXPECT_GT(second, first);
  EXPECT_EQ(d.get("mode"), Value("fast"));
  EXPECT_EQ(d.at("config/limits.max_items="), Value::map({{"n", 3}, {"on", true}}));
  EXPECT_TRUE(d.contains("mode"));
  auto entry = d.entry("mode");
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->value, Value("fast"));
  EXPECT_EQ(entry->revision, first);

  const uint64_t third = d.set("mode", Value(nullptr));
  EXPECT_GT(third, second);
  EXPECT_EQ(d.entry("mode")->revision, third);
  EXPECT_EQ(d.get("mode"), Value(nullptr));

  auto keys = d.keys();
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"config/limits.max_items=", "mode"}));
  EXPECT_EQ(d.size(), 2u);

  d.erase("mode");
  EXPECT_FALSE(d.contains("mode"));
  EXPECT_FALSE(d.entry("mode").has_value());
  EXPECT_EQ(d.keys(), std::vector<std::string>{"config/limits.max_items="});

  // Another connection's handle sees the same bucket.
  Dict other(connect(), d.name());
  EXPECT_EQ(other.get("config/limits.max_items="), Value::map({{"n", 3}, {"on", true}}));
}

TEST_F(NatsDictTest, AbsentKeyRaisesKeyError) {
  Dict d(connect(), xproc::testing::unique_name("keyerror"));
  EXPECT_THROW(d.at("nope"), xproc::KeyError);
  EXPECT_THROW(d.erase("nope"), xproc::KeyError);
  d.set("gone", Value(1));
  d.erase("gone");
  EXPECT_THROW(d.at("gone"), xproc::KeyError);
  EXPECT_THROW(d.erase("gone"), xproc::KeyError);
}

TEST_F(NatsDictTest, InvalidKeyRaisesValueError) {
  Dict d(connect(), xproc::testing::unique_name("keys"));
  for (const std::string& key :
       std::vector<std::string>{"", ".a", "a.", "a..b", "a b", "a*", "a>", "caf\xc3\xa9", std::string("a\0b", 3)}) {
    EXPECT_THROW(d.get(key), xproc::ValueError) << key;
    EXPECT_THROW(d.set(key, Value(1)), xproc::ValueError) << key;
    EXPECT_THROW(d.compare_and_set(key, Value(1), 0), xproc::ValueError) << key;
  }
}

TEST_F(NatsDictTest, InvalidNameRaisesValueError) {
  auto nats = connect();
  for (const std::string& name : std::vector<std::string>{"", "a.b", "a b", std::string(201, 'd')}) {
    EXPECT_THROW(Dict(nats, name), xproc::ValueError) << name;
  }
}

TEST_F(NatsDictTest, CompareAndSetStoresOnlyOverTheExpectedRevision) {
  Dict d(connect(), xproc::testing::unique_name("cas"));
  EXPECT_TRUE(d.compare_and_set("k", Value("created"), 0));
  EXPECT_FALSE(d.compare_and_set("k", Value("again"), 0));
  const uint64_t created = d.entry("k")->revision;
  const uint64_t updated = d.set("k", Value("updated"));
  EXPECT_FALSE(d.compare_and_set("k", Value("stale"), created));
  EXPECT_EQ(d.get("k"), Value("updated"));
  EXPECT_TRUE(d.compare_and_set("k", Value("won"), updated));
  EXPECT_EQ(d.get("k"), Value("won"));
  // A deleted key is absent: revision 0 creates it again, its old revision does not.
  const uint64_t before_delete = d.entry("k")->revision;
  d.erase("k");
  EXPECT_FALSE(d.compare_and_set("k", Value("late"), before_delete));
  EXPECT_TRUE(d.compare_and_set("k", Value("reborn"), 0));
  EXPECT_EQ(d.get("k"), Value("reborn"));
}

TEST_F(NatsDictTest, IncrementFromFourConnectionsIsExact) {
  const std::string name = xproc::testing::unique_name("count");
  Dict(connect(), name);
  constexpr int kThreads = 4;
  constexpr int kEach = 250;
  std::vector<std::vector<int64_t>> seen(kThreads);
  std::vector<std::exception_ptr> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        Dict d(connect(), name);
        for (int i = 0; i < kEach; ++i) seen[size_t(t)].push_back(d.increment("visits"));
      } catch (...) {
        errors[size_t(t)] = std::current_exception();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  Dict d(connect(), name);
  EXPECT_EQ(d.at("visits"), Value(kThreads * kEach));
  // Each increment returned its own sum: no two writers won with one revision.
  std::set<int64_t> sums;
  for (const auto& list : seen) sums.insert(list.begin(), list.end());
  EXPECT_EQ(sums.size(), size_t(kThreads * kEach));
  EXPECT_EQ(*sums.begin(), 1);
  EXPECT_EQ(*sums.rbegin(), kThreads * kEach);
  EXPECT_EQ(d.increment("visits", -1000), 0);
  EXPECT_EQ(d.increment("fresh", 5), 5);
}

TEST_F(NatsDictTest, IncrementOfNonIntRaisesTypeErrorAndOverflowValueError) {
  Dict d(connect(), xproc::testing::unique_name("incr"));
  d.set("name", Value("text"));
  EXPECT_THROW(d.increment("name"), xproc::TypeError);
  EXPECT_EQ(d.get("name"), Value("text"));
  d.set("big", Value(INT64_MAX));
  EXPECT_THROW(d.increment("big"), xproc::ValueError);
  EXPECT_EQ(d.get("big"), Value(INT64_MAX));
}

TEST_F(NatsDictTest, ForeignBytesRaiseDecodeError) {
  auto nats = connect();
  Dict d(nats, xproc::testing::unique_name("garbage"));
  kvStore* kv = nullptr;
  ASSERT_EQ(js_KeyValue(&kv, nats->jetstream(), d.name().c_str()), NATS_OK);
  ASSERT_EQ(kvStore_PutString(nullptr, kv, "raw", "not a capnp message"), NATS_OK);
  kvStore_Destroy(kv);
  EXPECT_THROW(d.get("raw"), xproc::DecodeError);
  EXPECT_THROW(d.increment("raw"), xproc::DecodeError);
  d.set("raw", Value(1));
  EXPECT_EQ(d.get("raw"), Value(1));
  ASSERT_EQ(js_KeyValue(&kv, nats->jetstream(), d.name().c_str()), NATS_OK);
  ASSERT_EQ(kvStore_PutString(nullptr, kv, "raw", ""), NATS_OK);
  kvStore_Destroy(kv);
  EXPECT_THROW(d.at("raw"), xproc::DecodeError);
  d.erase("raw");
  EXPECT_FALSE(d.get("raw").has_value());
}

TEST_F(NatsDictTest, SuccessiveSetsReturnIncreasingRevisions) {
  Dict d(connect(), xproc::testing::unique_name("revisions"));
  uint64_t last = 0;
  for (int i = 0; i < 5; ++i) {
    const uint64_t revision = d.set("k", Value(i));
    EXPECT_GT(revision, last);
    EXPECT_EQ(d.entry("k")->revision, revision);
    last = revision;
  }
}

// The premise of a write's tries on one server: JetStream looks for the Nats-Msg-Id before it
// checks the expected revision, so that a compare-and-set tried again after its answer was lost
// is told "duplicate", not "wrong last sequence". (A cluster of nats-server 2.9 checks the
// revision first; Dict asks again then, as NatsDictQuorumTest's
// CompareAndSetTriedAgainAfterItsUnansweredTryWasStoredReturnsTrue shows.)
TEST_F(NatsDictTest, OneServerAnswersARepeatedCompareAndSetAsDuplicate) {
  auto nats = connect();
  Dict d(nats, xproc::testing::unique_name("duplicate"));
  const uint64_t revision = d.set("k", Value(1));
  const std::string subject = "$KV." + d.name() + ".k";
  const auto words = Value(2).encode();
  jsPubOptions options;
  jsPubOptions_Init(&options);
  options.MsgId = "one-write";
  options.ExpectLastSubjectSeq = revision;
  for (int i = 0; i < 2; ++i) {
    jsPubAck* ack = nullptr;
    jsErrCode error = jsErrCode(0);
    ASSERT_EQ(js_Publish(&ack, nats->jetstream(), subject.c_str(), words.begin(), int(words.size() * sizeof(words[0])),
                         &options, &error),
              NATS_OK)
        << "try " << i << ", JetStream error " << int(error);
    EXPECT_EQ(ack->Sequence, revision + 1);
    EXPECT_EQ(ack->Duplicate, i == 1);
    jsPubAck_Destroy(ack);
  }
  EXPECT_EQ(d.get("k"), Value(2));
}

// A server that answers nothing (SIGSTOP) holds a call until request_timeout; the interrupt
// check ends it sooner, and the dict works again once the server does.
TEST(NatsDictPausedServerTest, InterruptCheckEndsACallToAServerThatDoesNotAnswer) {
  NatsServers server(1);
  auto options = server.options();
  options.request_timeout = 30s;
  auto nats = xproc::nats::connect(options);
  Dict d(nats, xproc::testing::unique_name("paused"));
  d.set("k", Value(1));
  {
    InterruptCheck check;
    PausedServer paused(server, 0);
    check.interrupt_after(300ms);
    const auto start = Clock::now();
    EXPECT_THROW(d.get("k"), Interrupted);
    const auto waited = Clock::now() - start;
    EXPECT_GE(waited, 250ms);  // it waited for the server...
    EXPECT_LT(waited, 10s);    // ...not for request_timeout
    check.interrupt_after(300ms);
    EXPECT_THROW(d.keys(), Interrupted);
    check.interrupt_after(300ms);
    EXPECT_THROW(Dict(nats, d.name()), Interrupted);
  }
  EXPECT_EQ(d.get("k"), Value(1));
  EXPECT_EQ(d.keys(), std::vector<std::string>{"k"});
  EXPECT_EQ(Dict(nats, d.name()).get("k"), Value(1));
}

// Every try of a set sent to a server that reads them only later carries one Nats-Msg-Id: the
// first stores the value, the others are dropped as duplicates.
TEST(NatsDictPausedServerTest, SetTriedManyTimesStoresOneRevision) {
  NatsServers server(1);
  auto options = server.options();
  options.request_timeout = 30s;
  Dict d(xproc::nats::connect(options), xproc::testing::unique_name("once"));
  const uint64_t before = d.set("k", Value("before"));
  {
    InterruptCheck check;
    PausedServer paused(server, 0);
    check.interrupt_after(450ms);  // four or five tries, all waiting in the server's socket
    EXPECT_THROW(d.set("k", Value("after")), Interrupted);
  }
  const auto deadline = Clock::now() + 10s;
  while (d.get("k") != Value("after") && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(d.entry("k")->revision, before + 1);
  // Stored after every try of the set: no try but the first stored anything.
  EXPECT_EQ(d.set("later", Value(0)), before + 2);
}

// A cluster of three and a bucket replicated on all of them, used through a connection to its
// stream's leader only: pausing the two followers (PausedFollowers) takes the leader's quorum
// away, so that it answers no write until they are back, and leaves the client's connection
// alone.
class NatsDictQuorumTest : public ::testing::Test {
 protected:
  struct PausedFollowers {
    PausedFollowers(const NatsServers& cluster, int leader)
        : one(cluster, (leader + 1) % 3), other(cluster, (leader + 2) % 3) {}
    PausedServer one;
    PausedServer other;
  };

  void SetUp() override {
    cluster_ = std::make_unique<NatsServers>(3);
    const std::string name = xproc::testing::unique_name("quorum");
    auto nats = xproc::nats::connect(cluster_->options());
    Dict(nats, name, {.replicas = 3});
    // The stream's leader, once elected; servers are named n0, n1, n2.
    for (const auto deadline = Clock::now() + 30s; leader_ < 0 && Clock::now() < deadline;) {
      jsStreamInfo* info = nullptr;
      if (js_GetStreamInfo(&info, nats->jetstream(), ("KV_" + name).c_str(), nullptr, nullptr) == NATS_OK &&
          info->Cluster != nullptr && info->Cluster->Leader != nullptr && *info->Cluster->Leader != '\0') {
        leader_ = info->Cluster->Leader[1] - '0';
      }
      jsStreamInfo_Destroy(info);
      if (leader_ < 0) std::this_thread::sleep_for(50ms);
    }
    ASSERT_GE(leader_, 0) << "no leader elected for the bucket's stream";
    auto options = cluster_->options();
    options.servers = {cluster_->urls()[size_t(leader_)]};
    options.request_timeout = 30s;
    d_.emplace(xproc::nats::connect(options), name);
  }

  PausedFollowers pause_followers() const { return PausedFollowers(*cluster_, leader_); }

  std::unique_ptr<NatsServers> cluster_;
  int leader_ = -1;
  std::optional<Dict> d_;
};

// Writes tried while the leader has no quorum store once each, and each call says what happened
// to its write.
TEST_F(NatsDictQuorumTest, WritesUnansweredForWantOfQuorumStoreOnce) {
  Dict& d = *d_;
  const uint64_t first = d.set("k", Value(1));
  // Runs `write` while the followers are paused, and returns its result once they are back.
  const auto without_quorum = [&](auto write) {
    std::future<decltype(write())> result;
    {
      const auto paused = pause_followers();
      result = std::async(std::launch::async, write);
      std::this_thread::sleep_for(600ms);  // several tries, none answered
    }
    return result.get();
  };

  EXPECT_TRUE(without_quorum([&] { return d.compare_and_set("k", Value(2), first); }));
  EXPECT_EQ(d.entry("k")->revision, first + 1);
  EXPECT_EQ(d.get("k"), Value(2));
  const uint64_t set = without_quorum([&] { return d.set("k", Value(3)); });
  EXPECT_EQ(set, first + 2);
  EXPECT_EQ(d.entry("k")->revision, set);
  without_quorum([&] {
    d.erase("k");
    return 0;
  });
  EXPECT_FALSE(d.contains("k"));
  // Stored after every try of the writes above: none stored more than once.
  EXPECT_EQ(d.set("later", Value(0)), first + 4);
}

// The interrupt check of the test below: it holds a request's second try until released.
std::atomic<int> checks_made{0};
std::atomic<bool> second_try_released{false};
void hold_second_try() {
  if (++checks_made != 2) return;
  while (!second_try_released) std::this_thread::sleep_for(1ms);
}

// A compare-and-set whose first try was stored unanswered, tried again: a clustered nats-server
// 2.9 refuses the second try as if another writer had come first (it checks the expected
// revision before the Nats-Msg-Id), and the call must still say true.
TEST_F(NatsDictQuorumTest, CompareAndSetTriedAgainAfterItsUnansweredTryWasStoredReturnsTrue) {
  Dict& d = *d_;
  const uint64_t first = d.set("k", Value(1));
  std::future<bool> swapped;
  checks_made = 0;
  second_try_released = false;
  xproc::nats::set_wait_interrupt_check(&hold_second_try);
  // On every way out, before `swapped` waits for its thread: the held try let go, the check off.
  struct Release {
    ~Release() {
      second_try_released = true;
      xproc::nats::set_wait_interrupt_check(nullptr);
    }
  } release;
  {
    const auto paused = pause_followers();
    swapped = std::async(std::launch::async, [&] { return d.compare_and_set("k", Value(2), first); });
    // The first try went unanswered once the second is held.
    const auto deadline = Clock::now() + 10s;
    while (checks_made < 2 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    ASSERT_GE(checks_made, 2);
  }
  // Back: the first try is stored before the second goes out. (Unless the pause cost the leader
  // its leadership, and its uncommitted try with it: the second stores the value then.)
  const auto deadline = Clock::now() + 5s;
  while (d.get("k") != Value(2) && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  second_try_released = true;
  EXPECT_TRUE(swapped.get());
  EXPECT_EQ(d.get("k"), Value(2));
  EXPECT_EQ(d.entry("k")->revision, first + 1);
  EXPECT_EQ(d.set("later", Value(0)), first + 2);
}

}  // namespace
