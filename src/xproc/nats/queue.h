// Queue<T> and Queue<Value> past one machine: multiprocessing.JoinableQueue's put / get /
// task_done / join over a JetStream work-queue stream, for processes on any host of a NATS
// cluster.
//
//   auto nats = xproc::nats::connect({.servers = {"nats://10.0.0.2:4222"}});
//   xproc::nats::Queue<xproc::Value> jobs(nats, "jobs", {.replicas = 3});
//   jobs.put(xproc::Value("resize photo 17"));          // on one host
//   xproc::Value job = jobs.get();                       // on another
//   ...; jobs.task_done();                               // acknowledged: gone for good
//
// At least once: a message got and not acknowledged (task_done) within ack_wait — its
// process died, or is still working — is delivered again, to whichever handle gets next.
// The Cap'n Proto bytes travel as they are, with the root's schema id in a header that every
// get checks. One stream per queue (named as the queue), one durable pull consumer shared by
// every handle, so that a message goes to one getter; replicas as the caller asks.
#pragma once

#include <capnp/message.h>

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xproc/errors.h"
#include "xproc/message.h"
#include "xproc/nats/connection.h"
#include "xproc/value.h"

namespace xproc::nats {

// When a got message is acknowledged, and so removed from the stream for good.
enum class Acknowledge {
  kOnTaskDone,  // at least once (JoinableQueue): task_done() acknowledges; a crash before it redelivers
  kOnGet,       // at most once (Queue): get() acknowledges before it returns; task_done() is a no-op
};

struct QueueOptions {
  // Messages the stream holds at most, delivered-but-unacknowledged ones included; a put
  // into a full queue waits (block) or raises Full. 0: bounded by the server's limits only.
  size_t maxsize = 0;
  // Copies of the stream in the cluster (1, 3 or 5 in practice; at most the cluster's size).
  int replicas = 1;
  // The stream's subject; empty: "xproc.queue.<name>".
  std::string subject;
  // How long a got message may stay unacknowledged before it is delivered again. The queue's
  // consumer is shared: the handle that creates it sets this, later handles keep it.
  std::chrono::milliseconds ack_wait{30000};
  Acknowledge acknowledge = Acknowledge::kOnTaskDone;
};

// The untyped engine under Queue<T>: flat Cap'n Proto bytes and the schema id they carry.
class StreamQueue {
 public:
  // Binds to the queue `name` (letters, digits, '-' and '_'), creating its stream and consumer
  // when absent. ValueError when a stream of that name holds another schema's messages or was
  // made otherwise; ConnectionError / TimeoutError / AuthenticationError as connect(). Each of
  // its requests waits at most request_timeout, in tries between which the interrupt check runs.
  StreamQueue(std::shared_ptr<Connection> connection, std::string name, uint64_t schema_id,
              const QueueOptions& options = {});
  // Messages got and not acknowledged are handed back (delivered again at once).
  ~StreamQueue();
  StreamQueue(StreamQueue&&) noexcept;
  StreamQueue& operator=(StreamQueue&&) noexcept;

  // Publishes `message` and returns once the stream has stored it (on its replicas).
  // Full when the queue holds maxsize messages past the deadline (at once without block);
  // TimeoutError when the cluster did not confirm the store in time (it may have stored it:
  // at least once). `message_id` (Nats-Msg-Id): JetStream drops a second message of the
  // same id within its de-duplication window, so that a retried put stores one copy.
  void put_bytes(std::span<const std::byte> message, bool block = true, const Timeout& timeout = {},
                 std::string_view message_id = {});
  // The oldest message not delivered elsewhere, or nullopt at the deadline (Empty for the
  // typed wrappers). DecodeError when it carries another schema id (it is acknowledged and
  // so removed: the next get works, as a local queue's).
  std::optional<std::vector<std::byte>> get_bytes(bool block = true, const Timeout& timeout = {});
  // Acknowledges the oldest message got through this handle and not yet acknowledged, and
  // waits for the server's confirmation. ValueError when there is none, as JoinableQueue's
  // "task_done() called too many times".
  void task_done();
  // Waits until the stream holds no message: every message put was got and acknowledged.
  // TimeoutError at the deadline.
  void join(const Timeout& timeout = {});
  // Messages in the stream now, delivered-but-unacknowledged ones included. One request: it
  // waits at most request_timeout (TimeoutError), in tries between which the interrupt check runs.
  size_t qsize() const;
  bool empty() const { return qsize() == 0; }

  const std::string& name() const noexcept;
  uint64_t schema_id() const noexcept;
  const std::shared_ptr<Connection>& connection() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// A queue of Cap'n Proto messages whose root is a struct T.
template <typename T>
class Queue {
 public:
  using Reader = typename T::Reader;

  Queue(std::shared_ptr<Connection> connection, std::string name, const QueueOptions& options = {})
      : stream_(std::move(connection), std::move(name), capnp::typeId<T>(), options) {}

  void put(Reader message, bool block = true, const Timeout& timeout = {}) {
    const auto words = serialize(message);
    stream_.put_bytes(std::as_bytes(std::span(words.begin(), words.size())), block, timeout);
  }
  void put(capnp::MessageBuilder& message, bool block = true, const Timeout& timeout = {}) {
    const auto words = serialize(message);
    stream_.put_bytes(std::as_bytes(std::span(words.begin(), words.size())), block, timeout);
  }
  void put_nowait(Reader message) { put(message, false); }

  // Empty at the deadline; DecodeError when the message is not a valid T.
  Message<T> get(bool block = true, const Timeout& timeout = {}) {
    auto message = get_message(block, timeout);
    if (!message) throw Empty();
    return std::move(*message);
  }
  Message<T> get_nowait() { return get(false); }
  std::optional<Message<T>> try_get(const Timeout& timeout = std::chrono::seconds(0)) {
    return get_message(true, timeout);
  }

  void task_done() { stream_.task_done(); }
  void join(const Timeout& timeout = {}) { stream_.join(timeout); }
  size_t qsize() const { return stream_.qsize(); }
  bool empty() const { return stream_.empty(); }
  StreamQueue& stream() noexcept { return stream_; }

 private:
  std::optional<Message<T>> get_message(bool block, const Timeout& timeout) {
    auto bytes = stream_.get_bytes(block, timeout);
    if (!bytes) return std::nullopt;
    return Message<T>::decode(*bytes);
  }
  StreamQueue stream_;
};

// Queue<Value>: xproc's untyped values (None, numbers, str, bytes, lists, dicts, ...), which
// Python's xproc.nats.Queue puts and gets.
template <>
class Queue<Value> {
 public:
  Queue(std::shared_ptr<Connection> connection, std::string name, const QueueOptions& options = {})
      : stream_(std::move(connection), std::move(name), capnp::typeId<schema::Value>(), options) {}

  void put(const Value& value, bool block = true, const Timeout& timeout = {}) {
    const auto words = value.encode();
    stream_.put_bytes(std::as_bytes(std::span(words.begin(), words.size())), block, timeout);
  }
  void put_nowait(const Value& value) { put(value, false); }
  Value get(bool block = true, const Timeout& timeout = {}) {
    auto value = get_value(block, timeout);
    if (!value) throw Empty();
    return std::move(*value);
  }
  Value get_nowait() { return get(false); }
  std::optional<Value> try_get(const Timeout& timeout = std::chrono::seconds(0)) { return get_value(true, timeout); }

  void task_done() { stream_.task_done(); }
  void join(const Timeout& timeout = {}) { stream_.join(timeout); }
  size_t qsize() const { return stream_.qsize(); }
  bool empty() const { return stream_.empty(); }
  StreamQueue& stream() noexcept { return stream_; }

 private:
  std::optional<Value> get_value(bool block, const Timeout& timeout) {
    auto bytes = stream_.get_bytes(block, timeout);
    if (!bytes) return std::nullopt;
    return Value::decode(*bytes);
  }
  StreamQueue stream_;
};

}  // namespace xproc::nats
