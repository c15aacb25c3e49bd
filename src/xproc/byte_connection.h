// ByteConnection: multiprocessing.connection.Connection over a socket or pipe fd, moving
// byte messages with CPython's framing (4-byte big-endian signed length, or -1 and an
// 8-byte length for payloads of 2 GiB and more). Connection<T> (connection.h) builds
// typed Cap'n Proto messages on it.
//
// A peer that closes or dies gives EOFError on recv and BrokenPipeError on send — never a
// SIGPIPE, never a hang, never half a message. Move-only; one thread at a time per
// direction.
//
// The ends of a Pipe() carry their messages through shared memory instead (one
// ring per direction, see ring_pipe_internal.h); the socket pair under them still tells
// when the other end is gone and carries messages too large for the ring. The calls and
// their errors are the same; only Listener/Client connections speak CPython's wire.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "xproc/byte_queue.h"  // Timeout

struct iovec;  // <sys/uio.h>

namespace xproc {

struct ConnectionOptions {
  // Largest message recv accepts; a longer frame closes the connection with OSError
  // ("bad message length"), without allocating its claimed size.
  size_t max_message_bytes = size_t{1} << 30;
  // Pipe() only: bytes of the shared-memory ring of each direction, reserved when the pipe
  // is made (messages up to 64 KiB, or a quarter of this when smaller, travel through it).
  // 0 = what CPython's Pipe makes: a socket pair, or an OS pipe one way. Otherwise 64 bytes
  // to 4 GiB (ValueError outside); short of memory or descriptors, Pipe() falls back on 0.
  size_t pipe_ring_bytes = size_t{512} << 10;
};

namespace detail {
struct RingEnd;
struct PipeRecord;
// A write to a pipe whose reader is gone raises SIGPIPE, which kills a process that has
// not ignored it. Python ignores it at start-up (as many servers do); one query per write
// then replaces the three system calls of masking it.
bool sigpipe_ignored();
}  // namespace detail

class ByteConnection {
 public:
  // Takes ownership of `fd`.
  ByteConnection(int fd, bool readable, bool writable, ConnectionOptions options = {});
  ByteConnection(ByteConnection&& other) noexcept;
  ByteConnection& operator=(ByteConnection&& other) noexcept;
  ByteConnection(const ByteConnection&) = delete;
  ByteConnection& operator=(const ByteConnection&) = delete;
  ~ByteConnection();

  // Sends buf[offset, offset + size) as one message (size defaults to the rest).
  // BrokenPipeError when the peer is gone; OSError("connection is read-only") on a
  // read-only end; OSError on a closed connection; ValueError on bad offset/size.
  void send_bytes(std::span<const std::byte> buf, size_t offset = 0, std::optional<size_t> size = {});
  // buf[offset, offset + size) as send_bytes checks it: ValueError as CPython raises.
  static std::span<const std::byte> message_slice(std::span<const std::byte> buf, size_t offset,
                                                  std::optional<size_t> size);
  // Sends the concatenation of `parts` as one message (one system call when it fits).
  void send_parts(std::span<const std::span<const std::byte>> parts);

  // Payloads up to this size go out through the connection's own buffer: one copy and one
  // plain send(), as CPython does for small messages.
  static constexpr size_t kSmallFrameLimit = 4 * 1024;

  // For bindings that must not block while holding a lock (Python's GIL): `fill(dst)`
  // writes a payload of `size` <= kSmallFrameLimit bytes straight into the send buffer
  // (dst is 8-byte aligned), and the frame is offered to the fd without waiting.
  // False when it could not go out whole at once: the rest is kept, and finish_send()
  // (which blocks) must be called before anything else is sent.
  template <typename Fill>
  bool try_send_in_place(size_t size, Fill&& fill) {
    fill(small_frame(size));
    if (ring_) return ring_try_send_buffered(size);
    return write_small_frame(size, false);
  }
  void finish_send();

  // Sends a message of `size` bytes that `fill(dst)` writes (dst 8-byte aligned): straight
  // into the send buffer when small, else through one temporary. Blocks like send_bytes.
  template <typename Fill>
  void send_in_place(size_t size, Fill&& fill) {
    finish_send();
    if (ring_) {
      ring_send(size, &call_with<Fill, std::byte*>, &fill);
      return;
    }
    if (size <= kSmallFrameLimit) {
      fill(small_frame(size));
      write_small_frame(size, true);
      return;
    }
    std::vector<std::byte> payload(size);
    fill(payload.data());
    const std::span<const std::byte> part(payload);
    send_parts({&part, 1});
  }

  // The receiving twin, for the same bindings: when a whole frame is already buffered, or
  // arrives with one read that does not wait (sockets), `consume(bytes)` sees it in place
  // and it is consumed (even if consume throws); true then. False, with nothing consumed,
  // when recv_bytes would have to wait, or has an error or EOF to report.
  template <typename Consume>
  bool try_recv_in_place(Consume&& consume) {
    if (ring_) return ring_try_recv(&call_with<Consume, std::span<const std::byte>>, &consume);
    auto frame = take_buffered_frame();
    if (!frame) return false;
    consume(*frame);
    return true;
  }

  // Blocks like recv_bytes for the next message and lets `consume(bytes)` read it in place
  // (valid only during the call; on a shared-memory end, other readers of that end wait
  // meanwhile). The message is consumed even if consume throws (the exception is passed
  // on). Saves the copy recv_bytes makes.
  template <typename Consume>
  void recv_in_place(Consume&& consume) {
    if (ring_) {
      ring_recv(&call_with<Consume, std::span<const std::byte>>, &consume, options_.max_message_bytes);
      return;
    }
    const std::vector<std::byte> message = recv_bytes();
    consume(std::span<const std::byte>(message));
  }

  // Blocks for the next whole message. EOFError when the peer closed (even mid-message);
  // OSError("bad message length") and the connection closed when it is longer than
  // `maxlength` or the configured maximum.
  std::vector<std::byte> recv_bytes(std::optional<size_t> maxlength = {});
  // Reads the next message into buffer[offset...]; returns its size. BufferTooShort
  // (carrying the message) when it does not fit.
  size_t recv_bytes_into(std::span<std::byte> buffer, size_t offset = 0);

  // Whether a message (or EOF) is ready to read, waiting up to `timeout` (0: just look;
  // nullopt: forever). Monotonic clock.
  bool poll(Timeout timeout = std::chrono::seconds(0));

  void close() noexcept;
  bool closed() const noexcept { return fd_ < 0; }
  // True for the shared-memory ends of a Pipe().
  bool shared_memory() const noexcept { return ring_ != nullptr; }
  bool readable() const noexcept { return readable_; }
  bool writable() const noexcept { return writable_; }
  // The fd, for select/poll; OSError when closed. For a shared-memory end, an epoll
  // descriptor that is readable while a message waits or the other end is gone; the first
  // call makes every later receive on this end pay two system calls to keep it so.
  int fileno() const;

  // The descriptors behind a shared-memory end, for a binding that hands the end to a
  // process it spawns (each is duplicated there, as multiprocessing does with a socket's
  // one descriptor). Owned by this end. ValueError unless shared_memory().
  struct SharedMemoryHandles {
    int socket = -1;
    int rings[2] = {-1, -1};  // the memfds of the two rings
    int control = -1;         // the memfd of the control block
    int wake[2] = {-1, -1};   // the eventfds
    int side = 0;             // which end this is (0 or 1)
    bool readable = true;     // false for the sending end of a one-way pipe
    bool writable = true;     // false for its receiving end
  };
  SharedMemoryHandles shared_memory_handles() const;
  // Rebuilds an end from duplicates of another process's handles, taking ownership of
  // every descriptor (closed on failure too). ValueError when they are not a pipe's.
  static ByteConnection adopt_shared_memory(const SharedMemoryHandles& handles, ConnectionOptions options = {});

  // For a binding's own wait(): a descriptor that becomes readable when a message arrives
  // after poll() found none, or when the other end goes (it may also show readable for a
  // message another reader took: poll(0) again). Unlike fileno(), it costs later receives
  // nothing. The socket's own descriptor for an end that is not shared-memory.
  int wait_fileno() const;

  // For wait(): the descriptors whose readiness wakes a sleeping reader, after checking
  // that nothing is ready already (true then, and `fds` is left alone).
  bool ready_or_wait_fds(std::vector<int>& fds);

 private:
  friend std::pair<ByteConnection, ByteConnection> byte_pipe(bool duplex, ConnectionOptions options);
  ByteConnection(int fd, std::unique_ptr<detail::RingEnd> ring, bool readable, bool writable,
                 ConnectionOptions options);

  template <typename F, typename Arg>
  static void call_with(void* f, Arg arg) {
    (*static_cast<std::remove_reference_t<F>*>(f))(arg);
  }
  // The shared-memory transport (byte_connection_ring.cpp).
  void ring_send(size_t size, void (*fill)(void*, std::byte*), void* ctx);
  bool ring_try_send_buffered(size_t size);
  // `whole`, when given, receives a large payload itself instead of `consume` seeing it.
  void ring_recv(void (*consume)(void*, std::span<const std::byte>), void* ctx, size_t limit,
                 std::vector<std::byte>* whole = nullptr);
  void ring_send_large(std::span<const std::span<const std::byte>> parts, size_t size);
  bool ring_try_recv(void (*consume)(void*, std::span<const std::byte>), void* ctx);
  // One attempt to take a message (blocking as ByteQueue::get_in_place does).
  bool ring_take(void (*consume)(void*, std::span<const std::byte>), void* ctx, size_t limit, bool block,
                 Timeout timeout, std::vector<std::byte>* whole = nullptr);
  bool ring_poll(Timeout timeout);
  enum class LargeRead { kWhole, kOverLimit, kLost };
  // The chunks of the large message `marker` announces, from the socket.
  LargeRead read_large(const detail::PipeRecord& marker, size_t limit, std::vector<std::byte>& payload);
  enum class RingWake { kMaybeReady, kTimedOut, kPeerGone };
  // Sleeps until a sender's token, the peer's hang-up or the deadline.
  RingWake ring_sleep(const ByteQueue::Deadline& deadline);
  void ring_wake_receiver();
  void ring_check_peer() const;
  // Open, writable, and the other end not known to be gone (BrokenPipeError).
  void ring_ready_to_send() const;
  // Puts a payload of `size` (at most inline_limit) into the ring as one record; without
  // `wait`, false when the ring has no room now.
  bool ring_put_inline(size_t size, void (*fill)(void*, std::byte*), void* ctx, bool wait);
  void ring_after_receive() const;
  int ring_fileno() const;
  int ring_epoll_fd() const;  // made on first use; does not set `watched`

  // Bounds of the adaptive spin before a read waits in the kernel.
  static constexpr int64_t kInitialSpinNs = 20'000;
  static constexpr int64_t kMinSpinNs = 1'000;
  static constexpr int64_t kMaxSpinNs = 50'000;

  void require_open() const;
  void writev_all(::iovec* iov, int count);
  // One write or read that never waits: MSG_DONTWAIT on a socket, a plain call on a
  // non-blocking fd. -1 with EAGAIN when it would have to wait, and always for a blocking
  // pipe, so the caller falls back to a waiting call.
  ssize_t write_now(const std::byte* data, size_t n);
  ssize_t read_now(std::byte* out, size_t n);
  // For a non-blocking fd in a blocking call: waits in poll() for `events`.
  void wait_until_ready(short events) const;
  // The payload area of the send buffer for a small frame of `size` bytes, its header
  // written in front of it.
  std::byte* small_frame(size_t size);
  // Sends the small frame prepared in the buffer; without `block`, keeps what the fd did
  // not take at once (returning false) instead of waiting.
  bool write_small_frame(size_t size, bool block);
  // Reads exactly n bytes (from the buffer first); false on EOF before any byte when
  // `eof_ok`, EOFError on EOF mid-way.
  bool read_exact(std::byte* out, size_t n, bool eof_ok);
  // One read into the buffer that first retries without waiting for up to the adaptive
  // spin budget, then waits: a peer that is sending right now is read without a sleep and
  // a wake-up (a wake-up costs the sender microseconds, the receiver tens of them on a VM).
  ssize_t read_into_buffer();
  size_t read_frame_length(size_t limit);
  // A whole frame from the buffer (topped up by one non-waiting read), removed from it;
  // the span stays valid until the next read. nullopt when there is none yet, or the frame
  // is one recv_bytes must report on (too long, a 64-bit length).
  std::optional<std::span<const std::byte>> take_buffered_frame();

  int fd_ = -1;
  bool readable_ = true;
  bool writable_ = true;
  bool is_socket_ = true;
  bool nonblocking_ = false;  // O_NONBLOCK was set on the fd (as byte_pipe does for pipes)
  ConnectionOptions options_;
  std::vector<std::byte> buffer_;  // bytes read from the fd but not yet handed out
  size_t buffer_begin_ = 0;
  size_t buffer_end_ = 0;
  int64_t spin_ns_ = kInitialSpinNs;  // grows when spinning found data, shrinks when not
  // A small frame: 4 spare bytes, the 4-byte header, the payload (8-byte aligned).
  std::vector<std::byte> send_buffer_;
  size_t unsent_begin_ = 0;  // [begin, end) of send_buffer_: a frame try_send_in_place left
  size_t unsent_end_ = 0;
  std::unique_ptr<detail::RingEnd> ring_;  // set for the shared-memory ends of a Pipe()
};

std::pair<ByteConnection, ByteConnection> byte_pipe(bool duplex, ConnectionOptions options);

}  // namespace xproc
