// Connection<T> and Pipe<T>: multiprocessing's Pipe()/Connection for Cap'n Proto messages.
// send() writes one frame whose payload is the message's standard flat serialization, so
// CPython's Connection.recv_bytes() on the other end receives exactly those bytes.
//
// Connection<Value> carries Python-like values; ByteConnection (byte_connection.h) raw bytes.
#pragma once

#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "xproc/byte_connection.h"
#include "xproc/message.h"
#include "xproc/value.h"

namespace xproc {

// What every Connection<T> shares: the byte-level calls, passed through.
class ConnectionBase {
 public:
  // Takes over `bytes` (an end of byte_pipe(), a Listener's or a Client's connection).
  explicit ConnectionBase(ByteConnection bytes) : bytes_(std::move(bytes)) {}

  // ByteConnection's calls, with its blocking rules and errors (byte_connection.h).
  void send_bytes(std::span<const std::byte> buf, size_t offset = 0, std::optional<size_t> size = {}) {
    bytes_.send_bytes(buf, offset, size);
  }
  std::vector<std::byte> recv_bytes(std::optional<size_t> maxlength = {}) { return bytes_.recv_bytes(maxlength); }
  size_t recv_bytes_into(std::span<std::byte> buffer, size_t offset = 0) {
    return bytes_.recv_bytes_into(buffer, offset);
  }
  bool poll(Timeout timeout = std::chrono::seconds(0)) { return bytes_.poll(timeout); }
  void close() noexcept { bytes_.close(); }
  bool closed() const noexcept { return bytes_.closed(); }
  bool readable() const noexcept { return bytes_.readable(); }
  bool writable() const noexcept { return bytes_.writable(); }
  int fileno() const { return bytes_.fileno(); }
  // The untyped end under this one (for bindings and wait()); owned by this connection.
  ByteConnection& bytes() noexcept { return bytes_; }

 protected:
  ByteConnection bytes_;
};

// A connection whose every message is a Cap'n Proto struct T, one per frame. Move-only,
// as its ByteConnection; one thread at a time per direction.
template <typename T>
class Connection : public ConnectionBase {
 public:
  using Reader = typename T::Reader;

  // Takes over `bytes`; Pipe<T>() makes both ends at once.
  explicit Connection(ByteConnection bytes) : ConnectionBase(std::move(bytes)) {}

  // Serializes `message` once and sends it as one frame. BrokenPipeError when the peer is
  // gone.
  void send(Reader message) {
    const auto root = capnp::AnyStruct::Reader(capnp::toAny(message));
    const size_t size = flat_size(root);
    bytes_.send_in_place(size, [&](std::byte* out) { write_flat(root, {out, size}); });
  }
  void send(capnp::MessageBuilder& message) {
    auto words = serialize(message);
    bytes_.send_bytes({reinterpret_cast<const std::byte*>(words.begin()), words.size() * sizeof(capnp::word)});
  }
  // Blocks for the next message. EOFError when the peer closed; DecodeError when the frame
  // is not a valid T (the frame is consumed; the connection stays usable).
  Message<T> recv() {
    std::optional<Message<T>> message;
    bytes_.recv_in_place([&](std::span<const std::byte> bytes) { message.emplace(Message<T>::decode(bytes)); });
    return std::move(*message);
  }
};

// Connection<Value>: Python-like values (schema::Value), what Python's Connection.send()
// and recv() carry between xproc processes.
template <>
class Connection<Value> : public ConnectionBase {
 public:
  explicit Connection(ByteConnection bytes) : ConnectionBase(std::move(bytes)) {}

  // Encodes `value` once, straight into the frame. BrokenPipeError when the peer is gone.
  void send(const Value& value) {
    detail::InlineMessageBuilder encoded;
    value.to_capnp(encoded.builder().initRoot<schema::Value>());
    bytes_.send_in_place(encoded.flat_size(), [&](std::byte* out) { encoded.write_flat(out); });
  }
  // Blocks for the next message. EOFError when the peer closed; DecodeError when the frame
  // is not a Value (it is consumed; the connection stays usable).
  Value recv() {
    Value value;
    bytes_.recv_in_place([&](std::span<const std::byte> bytes) { value = Value::decode(bytes); });
    return value;
  }
};

// Two connected ends. duplex: both ends read and write. Not duplex: the first end only
// reads and the second only writes, as Python's Pipe(duplex=False). The messages travel
// through shared memory (one ring per direction, ConnectionOptions::pipe_ring_bytes) with
// a socket pair underneath for hang-ups and large payloads; with pipe_ring_bytes = 0, what
// CPython makes: a socket pair, or one way an OS pipe when the process ignores SIGPIPE.
// Made before fork(), both ends work in the child; several processes may share an end.
std::pair<ByteConnection, ByteConnection> byte_pipe(bool duplex = true, ConnectionOptions options = {});

// byte_pipe()'s two ends as Connection<T>s (Connection<Value> for Python-like values).
template <typename T>
std::pair<Connection<T>, Connection<T>> Pipe(bool duplex = true, ConnectionOptions options = {}) {
  auto [a, b] = byte_pipe(duplex, options);
  return {Connection<T>(std::move(a)), Connection<T>(std::move(b))};
}

}  // namespace xproc
