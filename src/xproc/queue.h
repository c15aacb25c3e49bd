// Queue<T>: multiprocessing.Queue for Cap'n Proto messages of type T (or xproc::Value),
// over a ByteQueue in shared memory. put() serializes once, straight into the ring; get()
// returns an owned, validated copy (Message<T>), or a zero-copy view with get_view().
//
// Like Python's queues, a Queue is a handle: copies share one queue, and a Queue made
// before Process::start() works in the child. Thread- and process-safe; see byte_queue.h
// for what happens when a process dies mid-operation (nothing is torn, nothing wedges).
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstring>
#include <optional>
#include <string_view>

#include "xproc/byte_queue.h"
#include "xproc/message.h"
#include "xproc/value.h"

namespace xproc {

// What every Queue<T> shares: the state queries, passed through to the engine.
class QueueBase {
 public:
  // Python's names and meanings (ByteQueue's): messages in the queue now, and whether it
  // is empty or full at that instant; other processes may change it at once.
  size_t qsize() const noexcept { return bytes_.qsize(); }
  bool empty() const noexcept { return bytes_.empty(); }
  bool full() const noexcept { return bytes_.full(); }
  // This handle may no longer put (ValueError), as Python's close().
  void close() noexcept { bytes_.close(); }
  // A snapshot of the queue's header and counters (ByteQueue::info).
  QueueInfo info() const { return bytes_.info(); }
  // The untyped engine (for bindings and tools); shares this queue.
  ByteQueue& bytes() noexcept { return bytes_; }

 protected:
  explicit QueueBase(ByteQueue bytes) : bytes_(std::move(bytes)) {}
  ByteQueue bytes_;
};

// A queue of Cap'n Proto messages whose root is a struct T; the schema's id is recorded in
// the segment, so that open() refuses a queue of another type.
template <typename T>
class Queue : public QueueBase {
 public:
  using Reader = typename T::Reader;

  // An anonymous queue holding at most `maxsize` messages (0: bounded by bytes only).
  explicit Queue(size_t maxsize = 0) : Queue(QueueOptions{.maxsize = maxsize}) {}
  explicit Queue(const QueueOptions& options)
      : Queue(ByteQueue(options, capnp::typeId<T>(), detail::QueueKind::kQueue)) {}
  // A named queue; see ByteQueue::create.
  static Queue create(std::string_view name, const QueueOptions& options = {}) {
    return Queue(ByteQueue::create(name, options, capnp::typeId<T>(), detail::QueueKind::kQueue));
  }
  // Opens a named queue (see ByteQueue::open); ValueError when its messages are not T
  // (schema ids differ).
  static Queue open(std::string_view name, const Sharing& sharing = {}) {
    ByteQueue bytes = ByteQueue::open(name, sharing);
    if (bytes.schema_id() != capnp::typeId<T>()) {
      throw ValueError("queue '" + std::string(name) + "' carries schema id " + schema_id_hex(bytes.schema_id()) +
                       ", not " + schema_id_hex(capnp::typeId<T>()));
    }
    return Queue(std::move(bytes));
  }
  static bool remove(std::string_view name) { return ByteQueue::remove(name); }

  // Serializes `message` straight into the ring (no heap allocation). Full / MessageTooLarge
  // / ValueError as ByteQueue::put_bytes.
  void put(Reader message, bool block = true, const Timeout& timeout = {}) {
    if (!put_reader(message, block, timeout)) throw Full();
  }
  // Copies a builder's segments as they are (the fastest put for a freshly built message).
  void put(capnp::MessageBuilder& message, bool block = true, const Timeout& timeout = {}) {
    if (!put_builder(message, block, timeout)) throw Full();
  }
  void put_nowait(Reader message) { put(message, false); }
  bool try_put(Reader message, const Timeout& timeout = std::chrono::seconds(0)) {
    return put_reader(message, true, timeout);
  }
  bool try_put(capnp::MessageBuilder& message, const Timeout& timeout = std::chrono::seconds(0)) {
    return put_builder(message, true, timeout);
  }

  // Removes the oldest message and returns an owned copy. Empty on timeout; DecodeError if
  // that message is not a valid T (it is consumed; the next get works).
  Message<T> get(bool block = true, const Timeout& timeout = {}) {
    auto message = get_message(block, timeout);
    if (!message) throw Empty();
    return std::move(*message);
  }
  Message<T> get_nowait() { return get(false); }
  std::optional<Message<T>> try_get(const Timeout& timeout = std::chrono::seconds(0)) {
    return get_message(true, timeout);
  }
  // Zero-copy read: calls f(T::Reader) on the message in shared memory, then removes it.
  // The reader is valid only during the call. False when empty at the deadline. (A message
  // of up to 1 KiB is read from a copy on the stack, which costs less than reading shared
  // bytes through Cap'n Proto's checked reader; see detail::with_validated_root.)
  template <typename F>
  bool get_view(F&& f, bool block = true, const Timeout& timeout = {}) {
    return bytes_.get_in_place(
        [&](std::span<const std::byte> bytes) { detail::with_validated_root<T>(bytes, DecodeLimits{}, f); }, block,
        timeout);
  }

 protected:
  explicit Queue(ByteQueue bytes) : QueueBase(std::move(bytes)) {}
  Queue(const QueueOptions& options, detail::QueueKind kind)
      : QueueBase(ByteQueue(options, capnp::typeId<T>(), kind)) {}

 private:
  // The calls above pass `block` and the caller's Timeout straight through (see
  // ByteQueue::put_bytes on why no Timeout is rebuilt on the way).
  bool put_reader(Reader message, bool block, const Timeout& timeout) {
    auto root = capnp::AnyStruct::Reader(capnp::toAny(message));
    const size_t size = flat_size(root);
    return bytes_.put_in_place(
        size,
        [&](std::byte* dst) {
          write_flat(root, {dst, size});
        },
        block, timeout);
  }
  bool put_builder(capnp::MessageBuilder& message, bool block, const Timeout& timeout) {
    auto segments = message.getSegmentsForOutput();
    return bytes_.put_in_place(
        detail::flat_size(segments), [&](std::byte* dst) { detail::write_flat(segments, dst); }, block, timeout);
  }
  std::optional<Message<T>> get_message(bool block, const Timeout& timeout) {
    std::optional<Message<T>> out;
    bytes_.get_in_place([&](std::span<const std::byte> bytes) { out.emplace(Message<T>::decode(bytes)); }, block,
                        timeout);
    return out;
  }
};

// Queue<Value>: untyped Python-like values (None, numbers, str, bytes, list, dict...).
template <>
class Queue<Value> : public QueueBase {
 public:
  // As Queue<T>'s, for queues whose schema is xproc's Value.
  explicit Queue(size_t maxsize = 0) : Queue(QueueOptions{.maxsize = maxsize}) {}
  explicit Queue(const QueueOptions& options)
      : QueueBase(ByteQueue(options, capnp::typeId<schema::Value>(), detail::QueueKind::kQueue)) {}
  static Queue create(std::string_view name, const QueueOptions& options = {}) {
    return Queue(ByteQueue::create(name, options, capnp::typeId<schema::Value>(), detail::QueueKind::kQueue));
  }
  static Queue open(std::string_view name, const Sharing& sharing = {}) {
    ByteQueue bytes = ByteQueue::open(name, sharing);
    if (bytes.schema_id() != capnp::typeId<schema::Value>()) {
      throw ValueError("queue '" + std::string(name) + "' does not carry xproc Values");
    }
    return Queue(std::move(bytes));
  }

  // Encodes `value` once, straight into the ring. Full / MessageTooLarge / ValueError as
  // ByteQueue::put_bytes.
  void put(const Value& value, bool block = true, const Timeout& timeout = {}) {
    detail::InlineMessageBuilder encoded;
    value.to_capnp(encoded.builder().initRoot<schema::Value>());
    if (!bytes_.put_in_place(
            encoded.flat_size(), [&](std::byte* dst) { encoded.write_flat(dst); }, block, timeout)) {
      throw Full();
    }
  }
  void put_nowait(const Value& value) { put(value, false); }
  // Decodes straight from the ring (the Value built is the owned copy). DecodeError when
  // the message is not a Value; it is consumed all the same.
  Value get(bool block = true, const Timeout& timeout = {}) {
    auto value = get_value(block, timeout);
    if (!value) throw Empty();
    return std::move(*value);
  }
  Value get_nowait() { return get(false); }
  std::optional<Value> try_get(const Timeout& timeout = std::chrono::seconds(0)) { return get_value(true, timeout); }
  // Zero-copy read: calls f(schema::Value::Reader) on the message in shared memory (read
  // an array there with ArrayView::read), then removes it. The reader is valid only
  // during the call. False when empty at the deadline.
  template <typename F>
  bool get_view(F&& f, bool block = true, const Timeout& timeout = {}) {
    return bytes_.get_in_place(
        [&](std::span<const std::byte> bytes) { detail::with_validated_root<schema::Value>(bytes, DecodeLimits{}, f); },
        block, timeout);
  }

 private:
  explicit Queue(ByteQueue bytes) : QueueBase(std::move(bytes)) {}
  std::optional<Value> get_value(bool block, const Timeout& timeout) {
    std::optional<Value> out;
    bytes_.get_in_place([&](std::span<const std::byte> bytes) { out.emplace(Value::decode(bytes)); }, block, timeout);
    return out;
  }
};

// multiprocessing.SimpleQueue: an unbounded Queue (same engine, no maxsize).
template <typename T>
class SimpleQueue : public Queue<T> {
 public:
  SimpleQueue() : Queue<T>(QueueOptions{}, detail::QueueKind::kSimple) {}
};

// multiprocessing.JoinableQueue: a Queue whose consumers call task_done() for each message
// they finish, and whose join() waits (across processes) until all are done.
template <typename T>
class JoinableQueue : public Queue<T> {
 public:
  explicit JoinableQueue(size_t maxsize = 0)
      : Queue<T>(QueueOptions{.maxsize = maxsize}, detail::QueueKind::kJoinable) {}
  // ValueError when called more times than messages were put.
  void task_done() { this->bytes_.task_done(); }
  // Blocks until every message put so far is marked done; TimeoutError on timeout.
  void join(const Timeout& timeout = {}) { this->bytes_.join(timeout); }
};

}  // namespace xproc
