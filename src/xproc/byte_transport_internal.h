// ByteTransport: how the messages of a ByteConnection move, behind one interface. Two
// implement it: a socket or pipe with CPython's framing (stream_transport_internal.h) and
// the shared-memory rings of a Pipe() end (ring_transport_internal.h). ByteConnection checks
// what every call needs (open, readable, writable) before it calls a transport, so that a
// transport only moves bytes; each method says what its caller has checked.
#pragma once

#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "xproc/byte_connection.h"
#include "xproc/byte_queue.h"  // Timeout
#include "xproc/fd.h"

namespace xproc::detail {

// A payload passed by a function and its context, so that the templates of ByteConnection
// reach a transport through one virtual call without an allocation or a copy:
// `fill(ctx, dst)` writes the payload at dst (8-byte aligned); `consume(ctx, bytes)` reads
// one in place (valid only during the call).
using FillFn = void (*)(void* ctx, std::byte* dst);
using ConsumeFn = void (*)(void* ctx, std::span<const std::byte> payload);

class ByteTransport {
 public:
  // Owns `fd`: the socket or pipe, or the socket pair side of a shared-memory end.
  ByteTransport(Fd fd, bool readable, bool writable, const ConnectionOptions& options) noexcept
      : fd_(std::move(fd)), readable_(readable), writable_(writable), options_(options) {}
  virtual ~ByteTransport() = default;
  ByteTransport(const ByteTransport&) = delete;
  ByteTransport& operator=(const ByteTransport&) = delete;

  bool closed() const noexcept { return !fd_; }
  bool readable() const noexcept { return readable_; }
  bool writable() const noexcept { return writable_; }
  const ConnectionOptions& options() const noexcept { return options_; }
  // OSError("handle is closed") when closed; require_readable and require_writable also
  // OSError("connection is write-only" / "connection is read-only"). Inline: every
  // message passes them.
  void require_open() const {
    if (closed()) [[unlikely]]
      throw_closed();
  }
  void require_readable() const {
    require_open();
    if (!readable_) [[unlikely]]
      throw_write_only();
  }
  void require_writable() const {
    require_open();
    if (!writable_) [[unlikely]]
      throw_read_only();
  }
  [[noreturn]] static void throw_closed();

  // Releases the descriptors and memory; closed() from then on, and every other call is
  // refused by ByteConnection. A transport closes itself before it throws for a stream
  // it cannot resynchronise (a message over the length limit). Idempotent.
  virtual void close() noexcept = 0;

  // Sending; the caller has checked require_writable(). Each blocks until the message is
  // sent whole, sending first what try_send_in_place kept. BrokenPipeError when the peer
  // is gone. `total` is the sum of the sizes of `parts`.
  virtual void send_parts(std::span<const std::span<const std::byte>> parts, size_t total) = 0;
  virtual void send_in_place(size_t size, FillFn fill, void* ctx) = 0;
  // Fills a payload of `size` bytes into the transport's own buffer and offers it without
  // waiting: true when it went out whole, false when the rest is kept for finish_send().
  // ValueError while an earlier one is kept, or when `size` > ByteConnection::kSmallFrameLimit.
  virtual bool try_send_in_place(size_t size, FillFn fill, void* ctx) = 0;
  // Sends, blocking, what try_send_in_place kept (nothing when nothing is).
  virtual void finish_send() = 0;
  // ByteConnection::send_if_room and try_finish_send (for event loops); the caller of
  // send_if_room has checked require_writable(), that of try_finish_send require_open().
  virtual ByteConnection::SendAttempt send_if_room(size_t size, FillFn fill, void* ctx) = 0;
  virtual bool try_finish_send() = 0;
  // The ring this end sends into, to wait for room in it; null for a socket or pipe.
  virtual const ByteQueue* send_ring() const noexcept { return nullptr; }

  // Receiving; the caller has checked require_readable(). EOFError when the peer is gone
  // with no message left; OSError("bad message length"), the transport closed, for one
  // longer than `limit` (recv_in_place and try_recv_in_place: options().max_message_bytes).
  virtual std::vector<std::byte> recv_bytes(size_t limit) = 0;
  virtual void recv_in_place(ConsumeFn consume, void* ctx) = 0;
  // ByteConnection::try_recv_in_place, on an open and readable transport.
  virtual bool try_recv_in_place(ConsumeFn consume, void* ctx) = 0;
  virtual bool poll(Timeout timeout) = 0;

  // The caller has checked require_open(). See ByteConnection for what each returns.
  virtual bool ready_or_wait_fds(std::vector<int>& fds) = 0;
  virtual int fileno() = 0;
  virtual int wait_fileno() = 0;
  // The shared-memory transport only: true while open, and its handles (ValueError
  // "not a shared-memory pipe end" from any other).
  virtual bool shared_memory() const noexcept { return false; }
  virtual ByteConnection::SharedMemoryHandles shared_memory_handles() const;

 protected:
  Fd fd_;

 private:
  [[noreturn]] static void throw_write_only();
  [[noreturn]] static void throw_read_only();

  bool readable_;
  bool writable_;
  ConnectionOptions options_;
};

// The buffer try_send_in_place fills in place: 4 spare bytes, CPython's 4-byte length, the
// payload (8-byte aligned, up to ByteConnection::kSmallFrameLimit); and what of it a send
// that did not wait left for finish_send().
class SmallFrame {
 public:
  // The payload area for `size` bytes, the length written in front of it. ValueError when
  // an earlier frame is still kept, or `size` is over the limit.
  std::byte* prepare(size_t size) {
    if (kept_ || size > ByteConnection::kSmallFrameLimit || buffer_.empty()) [[unlikely]]
      return prepare_slowly(size);
    const uint32_t length = htonl(static_cast<uint32_t>(size));
    std::memcpy(buffer_.data() + 4, &length, 4);
    return buffer_.data() + 8;
  }
  // The frame prepare() made: its length header and payload (what a socket carries), or
  // the payload alone (what a ring record carries).
  std::span<const std::byte> frame(size_t size) const noexcept { return {buffer_.data() + 4, 4 + size}; }
  std::span<const std::byte> payload(size_t size) const noexcept { return {buffer_.data() + 8, size}; }

  // Keeps `rest`, a part of frame() or payload() (possibly empty), for finish_send().
  void keep(std::span<const std::byte> rest) noexcept {
    kept_ = true;
    kept_begin_ = static_cast<size_t>(rest.data() - buffer_.data());
    kept_end_ = kept_begin_ + rest.size();
  }
  bool kept() const noexcept { return kept_; }
  // What keep() kept, no longer kept: a send that fails leaves the stream broken either
  // way. Valid until the next prepare().
  std::span<const std::byte> take_kept() noexcept {
    kept_ = false;
    return {buffer_.data() + kept_begin_, kept_end_ - kept_begin_};
  }
  void clear() noexcept { kept_ = false; }

 private:
  // prepare() the first time, or to throw.
  std::byte* prepare_slowly(size_t size);

  std::vector<std::byte> buffer_;  // allocated by the first prepare()
  bool kept_ = false;
  size_t kept_begin_ = 0;
  size_t kept_end_ = 0;
};

}  // namespace xproc::detail
