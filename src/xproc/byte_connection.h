// ByteConnection: multiprocessing.connection.Connection over a socket or pipe fd, moving
// byte messages with CPython's framing (4-byte big-endian signed length, or -1 and an
// 8-byte length for payloads of 2 GiB and more). Connection<T> (connection.h) builds
// typed Cap'n Proto messages on it.
//
// A peer that closes or dies gives EOFError on recv and BrokenPipeError on send — never a
// SIGPIPE, never a hang, never half a message (on a shared-memory end, a message sent
// within 50 µs of the peer's death may be lost, as one in flight would be). Move-only; one
// thread at a time per direction.
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
#include <type_traits>
#include <utility>
#include <vector>

#include "xproc/byte_queue.h"  // Timeout

namespace xproc {

// How a connection or Pipe() is made; the defaults suit most.
struct ConnectionOptions {
  // Largest message recv accepts; a longer frame closes the connection with OSError
  // ("bad message length"), without allocating its claimed size.
  size_t max_message_bytes = size_t{1} << 30;
  // Pipe() only: the most bytes the shared-memory ring of each direction holds (messages
  // up to 64 KiB, or a quarter of this when smaller, travel through it; larger ones over
  // the socket pair). 0 = what CPython's Pipe makes: a socket pair, or an OS pipe one way.
  // Otherwise 64 bytes to 4 GiB (ValueError outside). Short of memory, or when the process
  // already holds a quarter of the descriptors RLIMIT_NOFILE allows, Pipe() falls back on 0.
  size_t pipe_ring_bytes = size_t{512} << 10;
  // Pipe() only: ring bytes of each direction reserved when the pipe is made and kept; the
  // rest is reserved as messages wait and given back when the ring drains. 0 = by use (an
  // idle pipe holds under 128 KiB); pipe_ring_bytes preallocates the whole ring.
  size_t pipe_reserved_bytes = 0;
};

namespace detail {
class ByteTransport;  // byte_transport_internal.h: the socket or pipe, or the shared-memory rings

// Calls the callable `f` points to: a template's callable as a function and its context.
template <typename F, typename Arg>
void call_with(void* f, Arg arg) {
  (*static_cast<std::remove_reference_t<F>*>(f))(arg);
}
}  // namespace detail

class ByteConnection {
 public:
  // Takes ownership of `fd`.
  ByteConnection(int fd, bool readable, bool writable, ConnectionOptions options = {});
  ByteConnection(ByteConnection&& other) noexcept;
  ByteConnection& operator=(ByteConnection&& other) noexcept;
  ByteConnection(const ByteConnection&) = delete;
  ByteConnection& operator=(const ByteConnection&) = delete;
  // Closes this end (close()).
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

  // The largest payload try_send_in_place takes. On a socket or pipe, payloads up to this
  // size go out through the connection's own buffer: one copy and one plain send(), as
  // CPython does for small messages.
  static constexpr size_t kSmallFrameLimit = 4 * 1024;

  // For bindings that must not block while holding a lock (Python's GIL): `fill(dst)`
  // writes a payload of `size` <= kSmallFrameLimit bytes straight into the send buffer
  // (dst is 8-byte aligned), and the message is offered to the fd (or the shared-memory
  // ring) without waiting. False when it could not go out whole at once: the rest is kept
  // for finish_send() (which blocks); until then try_send_in_place raises ValueError, and
  // the other sends call finish_send() first.
  template <typename Fill>
  bool try_send_in_place(size_t size, Fill&& fill) {
    return try_send_erased(size, &detail::call_with<Fill, std::byte*>, &fill);
  }
  void finish_send();

  // Sends a message of `size` bytes that `fill(dst)` writes (dst 8-byte aligned): straight
  // into the send buffer (or the shared-memory ring) when small, else through one
  // temporary. Blocks like send_bytes.
  template <typename Fill>
  void send_in_place(size_t size, Fill&& fill) {
    send_erased(size, &detail::call_with<Fill, std::byte*>, &fill);
  }

  // For a binding's event loop, which must never block: sends a message of `size` bytes
  // that `fill(dst)` writes (dst 8-byte aligned) only if it can go without waiting.
  //   kSent: it went whole.
  //   kNoRoom: nothing of it went and nothing is kept (fill may have run); wait for room
  //     (send_ring() or fileno() writable) and call again. Also while the rest of an
  //     earlier message is kept: try_finish_send() first.
  //   kBegun: a socket took part of it; the rest is kept for try_finish_send() (or the
  //     next send), and must go before anything else is sent.
  // A message the transport cannot put whole into its buffer — over the ring's inline
  // limit on a shared-memory end, over kSmallFrameLimit on a socket or pipe — and any
  // message on a blocking pipe, is sent blocking, as send_bytes does (kSent): it needs its
  // receiver to read while it goes. Raises what send_bytes raises.
  enum class SendAttempt { kSent, kNoRoom, kBegun };
  template <typename Fill>
  SendAttempt send_if_room(size_t size, Fill&& fill) {
    return send_if_room_erased(size, &detail::call_with<Fill, std::byte*>, &fill);
  }
  // Sends what try_send_in_place or send_if_room kept, without waiting: true when nothing
  // is kept any more. BrokenPipeError when the peer is gone; OSError when closed.
  bool try_finish_send();
  // The shared-memory ring this end sends into: a QueueWaiter for room on it (queue_waiter.h)
  // wakes a sender that send_if_room turned away. Null for a socket or pipe (wait for
  // fileno() to be writable), a read-only end, or a closed one.
  const ByteQueue* send_ring() const noexcept;

  // The receiving twin, for the same bindings: when a whole message is already here (in
  // the buffer, after one read that does not wait, or in the shared-memory ring),
  // `consume(bytes)` sees it in place and it is consumed (even if consume throws); true
  // then. False, with nothing consumed, when recv_bytes would have to wait, or has EOF or
  // an error to report. On a shared-memory end, a message over the length limit or a
  // corrupt record raises as recv_bytes does, and a message too large for the ring, once
  // taken, is waited for.
  template <typename Consume>
  bool try_recv_in_place(Consume&& consume) {
    return try_recv_erased(&detail::call_with<Consume, std::span<const std::byte>>, &consume);
  }

  // Blocks like recv_bytes for the next message and lets `consume(bytes)` read it in place
  // (valid only during the call; on a shared-memory end, other readers of that end wait
  // meanwhile). The message is consumed even if consume throws (the exception is passed
  // on). Saves the copy recv_bytes makes.
  template <typename Consume>
  void recv_in_place(Consume&& consume) {
    recv_erased(&detail::call_with<Consume, std::span<const std::byte>>, &consume);
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

  // Releases this end's descriptors (and its share of a Pipe()'s shared memory): the peer
  // sees EOF once no process holds this end any more, and every later call on this handle
  // but the queries below raises OSError("handle is closed"). A second close does nothing.
  void close() noexcept;
  bool closed() const noexcept;
  // True for the shared-memory ends of a Pipe() (false once closed).
  bool shared_memory() const noexcept;
  // Whether this end receives and sends (a one-way pipe's ends do one each).
  bool readable() const noexcept;
  bool writable() const noexcept;
  // The fd, for select/poll; OSError when closed. For a shared-memory end, an epoll
  // descriptor that is readable while a message waits or the other end is gone; the first
  // call adds it and an eventfd to the end, and makes every later receive on this end pay
  // two or three system calls to keep it so.
  int fileno() const;

  // The descriptors behind a shared-memory end, for a binding that hands the end to a
  // process it spawns (each is duplicated there, as multiprocessing does with a socket's
  // one descriptor). Owned by this end. ValueError unless shared_memory().
  struct SharedMemoryHandles {
    int socket = -1;
    int memory = -1;       // the memfd of the control block and both rings
    int side = 0;          // which end this is (0 or 1)
    bool readable = true;  // false for the sending end of a one-way pipe
    bool writable = true;  // false for its receiving end
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
  // that nothing is ready already (true then, and `fds` is left alone). A closed
  // connection is never ready and adds nothing.
  bool ready_or_wait_fds(std::vector<int>& fds);

 private:
  friend std::pair<ByteConnection, ByteConnection> byte_pipe(bool duplex, ConnectionOptions options);
  explicit ByteConnection(std::unique_ptr<detail::ByteTransport> transport) noexcept;

  // The templates above, with `fill` or `consume` as a function and its context.
  bool try_send_erased(size_t size, void (*fill)(void*, std::byte*), void* ctx);
  void send_erased(size_t size, void (*fill)(void*, std::byte*), void* ctx);
  SendAttempt send_if_room_erased(size_t size, void (*fill)(void*, std::byte*), void* ctx);
  bool try_recv_erased(void (*consume)(void*, std::span<const std::byte>), void* ctx);
  void recv_erased(void (*consume)(void*, std::span<const std::byte>), void* ctx);

  // Null only once moved from.
  std::unique_ptr<detail::ByteTransport> transport_;
};

// Two connected ends; connection.h declares it with its defaults and says what it makes.
std::pair<ByteConnection, ByteConnection> byte_pipe(bool duplex, ConnectionOptions options);

}  // namespace xproc
