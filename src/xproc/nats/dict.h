// Dict past one machine: a Manager dict's get / set / delete / keys over a JetStream
// key-value bucket, with what a dict shared between hosts needs beyond them: every entry
// has a revision, so that increment() and compare_and_set() are atomic without a lock.
//
//   auto nats = xproc::nats::connect({.servers = {"nats://10.0.0.2:4222"}});
//   xproc::nats::Dict config(nats, "config", {.replicas = 3});
//   config.set("mode", xproc::Value("fast"));
//   int64_t seen = config.increment("visits");                 // atomic, from any host
//   auto entry = config.entry("mode");                         // value and revision
//   config.compare_and_set("mode", xproc::Value("safe"), entry->revision);  // false if changed
//
// Keys are text of letters, digits and "-/_=." (NATS's key alphabet; not starting or ending
// with '.'); values are xproc Values stored as their Cap'n Proto bytes, which any language
// reads with schema/xproc/value.capnp.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "xproc/nats/connection.h"
#include "xproc/value.h"

namespace xproc::nats {

struct DictOptions {
  // Copies of the bucket in the cluster.
  int replicas = 1;
};

class Dict {
 public:
  // A value and the revision that wrote it (the bucket's sequence, increasing).
  struct Entry {
    Value value;
    uint64_t revision = 0;
  };

  // Binds to the bucket `name` (letters, digits, '-' and '_'), creating it when absent.
  // ConnectionError / TimeoutError / AuthenticationError as connect().
  //
  // Every method blocks on requests to the cluster (one for a read or a set, a few for the
  // others), each waiting at most the connection's request_timeout (then TimeoutError) in tries
  // of at most 100 ms, between which the interrupt check (set_wait_interrupt_check) runs; what
  // it throws ends the call. A write is stored once however many tries it takes (JetStream
  // drops a repeat of its Nats-Msg-Id); one ended by TimeoutError or by the interrupt check may
  // still have been stored. Thread-safe: a handle holds no state of its own past its name.
  Dict(std::shared_ptr<Connection> connection, std::string name, const DictOptions& options = {});
  ~Dict();
  Dict(Dict&&) noexcept;
  Dict& operator=(Dict&&) noexcept;

  // ValueError for a key outside the alphabet above (every method); DecodeError for a stored
  // value that is not a valid Value (another program wrote the bucket).
  std::optional<Value> get(std::string_view key) const;
  // KeyError when absent.
  Value at(std::string_view key) const;
  std::optional<Entry> entry(std::string_view key) const;
  bool contains(std::string_view key) const { return entry(key).has_value(); }
  // Stores `value` and returns its revision.
  uint64_t set(std::string_view key, const Value& value);
  // KeyError when absent (Python's `del d[key]`).
  void erase(std::string_view key);
  // The keys present now, in no particular order; request_timeout bounds each wait for the next
  // of them. The server sends every key's headers at once (about 200 bytes a key, no flow
  // control): a bucket of hundreds of thousands of keys may exceed what it buffers for a client.
  std::vector<std::string> keys() const;
  size_t size() const { return keys().size(); }

  // Stores `value` if the key's current revision is `revision` (0: only if the key is
  // absent) and returns true; false, storing nothing, when another writer got there first.
  bool compare_and_set(std::string_view key, const Value& value, uint64_t revision);
  // Adds `by` to the integer under `key` (absent: 0) and returns the sum, atomically against
  // every other writer (compare-and-set, retried). TypeError when the value is not an int.
  int64_t increment(std::string_view key, int64_t by = 1);

  const std::string& name() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace xproc::nats
