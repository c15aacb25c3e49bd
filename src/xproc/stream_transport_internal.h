// StreamTransport: a ByteConnection over one socket or pipe descriptor, with CPython's
// framing (multiprocessing.connection: a 4-byte big-endian signed length, or -1 and an
// 8-byte length, then the payload). What Listener and Client connections use, and a Pipe()
// without shared memory.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "xproc/byte_transport_internal.h"
#include "xproc/spin_internal.h"

struct iovec;  // <sys/uio.h>

namespace xproc::detail {

// A write to a pipe whose reader is gone raises SIGPIPE, which kills a process that has
// not ignored it. Python ignores it at start-up (as many servers do); one query per write
// then replaces the three system calls of masking it.
bool sigpipe_ignored();

class StreamTransport final : public ByteTransport {
 public:
  // Looks once at what `fd` is: a socket (send() with MSG_NOSIGNAL) or not (a pipe), and
  // whether it is non-blocking (as byte_pipe makes its pipes).
  StreamTransport(Fd fd, bool readable, bool writable, const ConnectionOptions& options);

  void close() noexcept override;

  void send_parts(std::span<const std::span<const std::byte>> parts, size_t total) override;
  void send_in_place(size_t size, FillFn fill, void* ctx) override;
  bool try_send_in_place(size_t size, FillFn fill, void* ctx) override;
  void finish_send() override;
  // A frame up to kSmallFrameLimit is offered to the fd without waiting (kBegun when it
  // took part of it); a larger one, or any on a blocking pipe, is sent blocking.
  ByteConnection::SendAttempt send_if_room(size_t size, FillFn fill, void* ctx) override;
  bool try_finish_send() override;

  std::vector<std::byte> recv_bytes(size_t limit) override;
  // Through recv_bytes: the payload is read into the copy consume sees.
  void recv_in_place(ConsumeFn consume, void* ctx) override;
  bool try_recv_in_place(ConsumeFn consume, void* ctx) override;
  bool poll(Timeout timeout) override;

  bool ready_or_wait_fds(std::vector<int>& fds) override;
  int fileno() override { return fd_.get(); }
  int wait_fileno() override { return fd_.get(); }

 private:
  // The adaptive spin before a read waits in the kernel: from 20 us, doubled when spinning
  // found data, halved when not, between 1 us and the ceiling.
  static constexpr SpinTuning kReadSpin{.initial_ns = 20'000, .floor_ns = 1'000};
  static constexpr int64_t kMaxSpinNs = 50'000;

  // Writes all of `iov`, waiting for room (in poll() on a non-blocking fd); the iovecs
  // are advanced past what is written.
  void writev_all(::iovec* iov, int count);
  // One write or read that never waits: MSG_DONTWAIT on a socket, a plain call on a
  // non-blocking fd. -1 with EAGAIN when it would have to wait, and always for a blocking
  // pipe, so the caller falls back to a waiting call.
  ssize_t write_now(const std::byte* data, size_t n);
  ssize_t read_now(std::byte* out, size_t n);
  // For a non-blocking fd in a blocking call: waits in poll() for `events`.
  void wait_until_ready(short events) const;
  // Sends the frame small_ holds for a payload of `size`; without `block`, keeps what the
  // fd did not take at once (returning false) instead of waiting.
  bool write_small_frame(size_t size, bool block);
  // One write of `bytes` that does not wait: how many the fd took (0 when it is full).
  size_t write_some_now(std::span<const std::byte> bytes);
  // Reads exactly n bytes (from the buffer first); false on EOF before any byte when
  // `eof_ok`, EOFError on EOF mid-way.
  bool read_exact(std::byte* out, size_t n, bool eof_ok);
  // One read into the buffer that first polls without waiting for up to the adaptive spin
  // budget, then waits: a peer that is sending right now is read without a sleep and a
  // wake-up (a wake-up costs the sender microseconds, the receiver tens of them on a VM).
  ssize_t read_into_buffer();
  // The next frame's payload size; closes the transport (OSError) when it is negative or
  // over `limit`.
  size_t read_frame_length(size_t limit);
  // A whole frame from the buffer (topped up by one non-waiting read), removed from it;
  // the span stays valid until the next read. nullopt when there is none yet, or the frame
  // is one recv_bytes must report on (too long, a 64-bit length).
  std::optional<std::span<const std::byte>> take_buffered_frame();
  bool buffered() const noexcept { return buffer_begin_ < buffer_end_; }

  bool is_socket_ = true;
  bool nonblocking_ = false;       // O_NONBLOCK was set on the fd (as byte_pipe does for pipes)
  std::vector<std::byte> buffer_;  // bytes read from the fd but not yet handed out
  size_t buffer_begin_ = 0;
  size_t buffer_end_ = 0;
  AdaptiveSpin read_spin_{kReadSpin};
  SmallFrame small_;
};

}  // namespace xproc::detail
