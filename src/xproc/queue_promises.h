// Queues awaited on this thread's kj event loop (event_loop.h): a promise beside each
// blocking call of queue.h.
//
//   xproc::Queue<xproc::Value> jobs;
//   kj::Promise<xproc::Value> next = xproc::get_async(jobs);   // nothing taken yet
//   auto job = xproc::wait(kj::mv(next));                      // or .then(...) in a kj program
//
// A promise makes its first attempt when the loop runs, then sleeps on the queue's
// doorbell (queue_waiter.h) until the queue may have changed. Dropping a promise before
// it resolves cancels its wait: a get has taken nothing, a put has put nothing. Errors
// (DecodeError, MessageTooLarge, ValueError after close) reject the promise; xproc::wait()
// throws them again as those errors. Part of the xproc::manager library (kj-async);
// queue.h itself needs no event loop. A loop of another kind (epoll, asio) waits with a
// QueueWaiter.
#pragma once

#include <kj/async.h>
#include <kj/function.h>

#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "xproc/event_loop.h"
#include "xproc/queue.h"
#include "xproc/queue_waiter.h"

namespace xproc {

namespace detail {
// Resolves once `attempt` (which must not block) returns true, trying it on the loop and
// again each time `queue` may have changed as `what` waits for. An error `attempt` throws
// rejects the promise. (queue_promises.cpp.)
kj::Promise<void> when_done(ByteQueue queue, QueueWaiter::For what, kj::Function<bool()> attempt);

// Puts an encoded message once there is room (the promise owns the bytes meanwhile).
inline kj::Promise<void> put_encoded_async(const ByteQueue& queue, std::vector<std::byte> encoded) {
  return when_done(queue, QueueWaiter::For::kRoom, [queue = ByteQueue(queue), encoded = std::move(encoded)]() mutable {
    return queue.put_in_place(
        encoded.size(), [&](std::byte* dst) { std::memcpy(dst, encoded.data(), encoded.size()); }, false);
  });
}

// Resolves with what `decode` makes of the oldest message, once there is one.
template <typename Result, typename Decode>
kj::Promise<Result> get_decoded_async(const ByteQueue& queue, Decode decode) {
  auto got = kj::heap<std::optional<Result>>();
  auto* slot = got.get();
  return when_done(queue, QueueWaiter::For::kMessage,
                   [queue = ByteQueue(queue), slot, decode = std::move(decode)]() mutable {
                     return queue.get_in_place([&](std::span<const std::byte> bytes) { slot->emplace(decode(bytes)); },
                                               false);
                   })
      .then([got = kj::mv(got)]() mutable { return std::move(**got); });
}
}  // namespace detail

// The oldest message, once there is one. Rejected with DecodeError as get() throws it.
template <typename T>
kj::Promise<Message<T>> get_async(Queue<T>& queue) {
  return detail::get_decoded_async<Message<T>>(
      queue.bytes(), [](std::span<const std::byte> bytes) { return Message<T>::decode(bytes); });
}
inline kj::Promise<Value> get_async(Queue<Value>& queue) {
  return detail::get_decoded_async<Value>(queue.bytes(),
                                          [](std::span<const std::byte> bytes) { return Value::decode(bytes); });
}

// Puts a copy of `message` (made now) once there is room: at the first attempt unless the
// queue is bounded and full.
template <typename T>
kj::Promise<void> put_async(Queue<T>& queue, typename T::Reader message) {
  auto root = capnp::AnyStruct::Reader(capnp::toAny(message));
  std::vector<std::byte> encoded(flat_size(root));
  write_flat(root, encoded);
  return detail::put_encoded_async(queue.bytes(), std::move(encoded));
}
template <typename T>
kj::Promise<void> put_async(Queue<T>& queue, capnp::MessageBuilder& message) {
  auto segments = message.getSegmentsForOutput();
  std::vector<std::byte> encoded(detail::flat_size(segments));
  detail::write_flat(segments, encoded.data());
  return detail::put_encoded_async(queue.bytes(), std::move(encoded));
}
inline kj::Promise<void> put_async(Queue<Value>& queue, const Value& value) {
  detail::InlineMessageBuilder encoded;
  value.to_capnp(encoded.builder().initRoot<schema::Value>());
  std::vector<std::byte> flat(encoded.flat_size());
  encoded.write_flat(flat.data());
  return detail::put_encoded_async(queue.bytes(), std::move(flat));
}

// Resolves once every message put so far is marked done (JoinableQueue::join).
template <typename T>
kj::Promise<void> join_async(JoinableQueue<T>& queue) {
  return detail::when_done(queue.bytes(), QueueWaiter::For::kJoin, [bytes = queue.bytes()]() mutable {
    try {
      bytes.join(std::chrono::seconds(0));
      return true;
    } catch (const TimeoutError&) {
      return false;
    }
  });
}

}  // namespace xproc
