// Tests for xproc::nats::Dict against a real nats-server: a dict's operations, revisions and
// compare-and-set, increments racing from several connections, and foreign bytes.
#include "xproc/nats/dict.h"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <algorithm>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/nats_server.h"
#include "support/test_support.h"

namespace {

using xproc::Value;
using xproc::nats::Dict;
using xproc::testing::NatsServers;

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

}  // namespace
