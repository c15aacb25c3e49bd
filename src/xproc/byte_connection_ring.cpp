// The shared-memory transport of ByteConnection (the ends of a Pipe()): messages in
// a ByteQueue ring per direction, hang-ups and large payloads on the socket pair, wake-ups
// through an eventfd. See ring_pipe_internal.h for the shared layout.
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <optional>
#include <utility>

#include "xproc/byte_connection.h"
#include "xproc/errors.h"
#include "xproc/poll_internal.h"
#include "xproc/ring_pipe_internal.h"
#include "xproc/shm/mutex.h"
#include "xproc/sync_internal.h"

namespace xproc {

using detail::LargeChunk;
using detail::PipeDirection;
using detail::PipeRecord;
using detail::RingEnd;
using detail::RingPipe;

namespace {

// Payloads above this (or a quarter of the ring, when smaller) go over the socket: a
// ring holds several of the largest inline messages, so a sender rarely waits for room.
constexpr size_t kLargestInline = 64 * 1024;
// How long a receive spins on the ring (inside ByteQueue's adaptive budget) before it
// sleeps in poll(): long enough for a message already on its way.
constexpr auto kReceiveSpin = std::chrono::microseconds(100);
// A blocked sender looks at the socket this often, to notice a receiver that is gone.
constexpr auto kSendSlice = std::chrono::milliseconds(100);
// The most a large payload's buffer is reserved ahead of its bytes arriving.
constexpr size_t kLargestReservation = 16u << 20;
// How long a reader waits for the next chunk of a large payload before it asks whether
// its sender is still alive.
constexpr auto kLargeChunkWait = std::chrono::milliseconds(100);
// A sender looks at the socket for a hang-up at most this often (and whenever a ring end
// of this process was closed since): a message sent within it to a peer that has just
// died is lost as one in flight would be, and a stream pays one poll() per this instead
// of one per message (a third of a small send).
constexpr auto kPeerCheckEvery = std::chrono::microseconds(50);

std::atomic<uint64_t> g_ring_end_closes{0};

// The ring of the direction a one-way pipe does not use: the smallest a queue can be.
constexpr size_t kUnusedRingBytes = 64;

QueueOptions ring_options(size_t ring_bytes) {
  QueueOptions options;
  options.capacity_bytes = ring_bytes;
  return options;
}

int make_eventfd() {
  const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) throw_os_error("eventfd", errno);
  return fd;
}

void write_token(int fd) noexcept {
  // Cannot fail short of a counter at 2^64 - 2; a token already there is as good.
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(fd, &one, sizeof(one));
}

void drain_tokens(int fd) noexcept {
  uint64_t count;
  [[maybe_unused]] const ssize_t n = ::read(fd, &count, sizeof(count));
}

// Puts one record of `size` bytes into `ring`, waiting for room in slices so that a
// receiver gone meanwhile is noticed (`check_peer` throws BrokenPipeError then).
template <typename Fill, typename CheckPeer>
void put_record(ByteQueue& ring, size_t size, Fill&& fill, CheckPeer&& check_peer) {
  if (ring.put_in_place(size, fill, false)) return;
  for (;;) {
    check_peer();
    if (ring.put_in_place(size, fill, true, kSendSlice)) return;
  }
}

}  // namespace

namespace detail {

RingPipe::RingPipe(size_t ring_bytes, bool duplex)
    : ring{ByteQueue(ring_options(ring_bytes)), ByteQueue(ring_options(duplex ? ring_bytes : kUnusedRingBytes))},
      control_segment(shm::Segment::anonymous(sizeof(PipeControl))),
      control(new (control_segment.data()) PipeControl{}),
      inline_limit(std::min(kLargestInline, ring_bytes / 4)) {
  control->version = kPipeControlVersion;
  control->magic.store(kPipeControlMagic, std::memory_order_release);
  try {
    wake_fd[0] = make_eventfd();
    wake_fd[1] = make_eventfd();
  } catch (...) {
    if (wake_fd[0] >= 0) ::close(wake_fd[0]);
    throw;
  }
}

RingPipe::RingPipe(ByteQueue ring0, ByteQueue ring1, shm::Segment control_memory, int wake0, int wake1)
    : ring{std::move(ring0), std::move(ring1)},
      control_segment(std::move(control_memory)),
      control(reinterpret_cast<PipeControl*>(control_segment.data())),
      wake_fd{wake0, wake1},
      inline_limit(std::min(kLargestInline, ring[0].info().capacity_bytes / 4)) {
  if (control_segment.size() < sizeof(PipeControl) ||
      control->magic.load(std::memory_order_acquire) != kPipeControlMagic || control->version != kPipeControlVersion) {
    for (int fd : wake_fd) ::close(fd);
    throw ValueError("not the control block of an xproc pipe (layout version " + std::to_string(kPipeControlVersion) +
                     ")");
  }
}

RingPipe::~RingPipe() {
  for (int fd : wake_fd) {
    if (fd >= 0) ::close(fd);
  }
}

RingEnd::~RingEnd() {
  if (watch_fd >= 0) ::close(watch_fd);
  g_ring_end_closes.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace detail

ByteConnection::ByteConnection(int fd, std::unique_ptr<RingEnd> ring, bool readable, bool writable,
                               ConnectionOptions options)
    : ByteConnection(fd, readable, writable, options) {
  ring_ = std::move(ring);
}

ByteConnection::SharedMemoryHandles ByteConnection::shared_memory_handles() const {
  require_open();
  if (!ring_) throw ValueError("not a shared-memory pipe end");
  SharedMemoryHandles handles;
  handles.socket = fd_;
  for (int d = 0; d < 2; ++d) {
    handles.rings[d] = ring_->pipe->ring[d].anonymous_fd();
    handles.wake[d] = ring_->pipe->wake_fd[d];
  }
  handles.control = ring_->pipe->control_segment.fd();
  handles.side = ring_->side;
  handles.readable = readable_;
  handles.writable = writable_;
  return handles;
}

ByteConnection ByteConnection::adopt_shared_memory(const SharedMemoryHandles& handles, ConnectionOptions options) {
  // Each descriptor is owned from here on: whatever fails, none is left open.
  int socket = handles.socket, control = handles.control;
  int rings[2] = {handles.rings[0], handles.rings[1]};
  int wake[2] = {handles.wake[0], handles.wake[1]};
  auto close_all = [&] {
    for (int* fd : {&socket, &control, &rings[0], &rings[1], &wake[0], &wake[1]}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  };
  try {
    if (handles.side != 0 && handles.side != 1) throw ValueError("a pipe end's side is 0 or 1");
    std::optional<ByteQueue> ring0, ring1;
    ring0.emplace(ByteQueue::adopt_anonymous(std::exchange(rings[0], -1)));
    ring1.emplace(ByteQueue::adopt_anonymous(std::exchange(rings[1], -1)));
    auto control_memory = shm::Segment::adopt(std::exchange(control, -1));
    auto pipe = std::make_shared<RingPipe>(std::move(*ring0), std::move(*ring1), std::move(control_memory),
                                           std::exchange(wake[0], -1), std::exchange(wake[1], -1));
    return ByteConnection(std::exchange(socket, -1), std::make_unique<RingEnd>(std::move(pipe), handles.side),
                          handles.readable, handles.writable, options);
  } catch (...) {
    close_all();
    throw;
  }
}

void ByteConnection::ring_check_peer() const {
  // The socket pair hangs up once every process has closed the other end: the one check
  // that also sees a peer killed while it was reading (it never disarmed anything).
  const auto now = std::chrono::steady_clock::now();
  const uint64_t closes = g_ring_end_closes.load(std::memory_order_relaxed);
  if (now - ring_->peer_seen_alive < kPeerCheckEvery && closes == ring_->closes_seen) return;
  pollfd hangup{fd_, 0, 0};
  if (::poll(&hangup, 1, 0) > 0 && (hangup.revents & (POLLHUP | POLLERR)) != 0) {
    throw BrokenPipeError("the other end of the connection is closed");
  }
  ring_->peer_seen_alive = now;
  ring_->closes_seen = closes;
}

void ByteConnection::ring_wake_receiver() {
  PipeDirection& direction = ring_->tx_control();
  // After the publish (a seq_cst exchange inside the ring): see PipeDirection::armed.
  if (direction.armed.load(std::memory_order_seq_cst) != 0 && direction.armed.exchange(0) != 0) {
    write_token(ring_->tx_wake_fd());
  }
}

void ByteConnection::ring_ready_to_send() const {
  require_open();
  if (!writable_) throw OSError("connection is read-only", EBADF);
  ring_check_peer();
}

bool ByteConnection::ring_put_inline(size_t size, void (*fill)(void*, std::byte*), void* ctx, bool wait) {
  auto record = [&](std::byte* out) {
    const uint32_t head[2] = {PipeRecord::kInline, 0};
    std::memcpy(out, head, sizeof(head));
    fill(ctx, out + PipeRecord::kInlineHeader);
  };
  ByteQueue& ring = ring_->tx();
  if (wait) {
    put_record(ring, PipeRecord::kInlineHeader + size, record, [this] { ring_check_peer(); });
  } else if (!ring.put_in_place(PipeRecord::kInlineHeader + size, record, false)) {
    return false;
  }
  ring_wake_receiver();
  return true;
}

void ByteConnection::ring_send(size_t size, void (*fill)(void*, std::byte*), void* ctx) {
  ring_ready_to_send();
  if (size <= ring_->pipe->inline_limit) {
    ring_put_inline(size, fill, ctx, true);
    return;
  }
  std::vector<std::byte> payload(size);
  fill(ctx, payload.data());
  const std::span<const std::byte> whole(payload);
  ring_send_large({&whole, 1}, size);
}

void ByteConnection::ring_send_large(std::span<const std::span<const std::byte>> parts, size_t size) {
  // Too large for the ring: a marker goes into it and the payload onto the socket in
  // chunks, under the direction's lock so that every sender's markers and payloads keep
  // one order. The receiver is woken before the chunks go: it reads while we write.
  PipeDirection& direction = ring_->tx_control();
  // (A dead holder's message: see read_large.)
  shm::MutexLock lock(direction.large_send, ring_->pipe->control_segment.holder(), std::nullopt);
  const uint64_t seq = direction.large_seq.load(std::memory_order_relaxed) + 1;
  direction.large_seq.store(seq, std::memory_order_relaxed);
  put_record(
      ring_->tx(), sizeof(PipeRecord),
      [&](std::byte* out) {
        const PipeRecord marker{PipeRecord::kLarge, 0, size, seq};
        std::memcpy(out, &marker, sizeof(marker));
      },
      [this] { ring_check_peer(); });
  ring_wake_receiver();
  size_t part = 0, within = 0;  // where the next chunk's bytes start in `parts`
  std::vector<iovec> chunk;
  for (size_t offset = 0; offset < size; offset += LargeChunk::kLargeChunk) {
    LargeChunk header{seq, offset};
    chunk.assign(1, iovec{&header, sizeof(header)});
    for (size_t want = std::min(LargeChunk::kLargeChunk, size - offset); want > 0;) {
      while (within == parts[part].size()) ++part, within = 0;  // (skips empty parts)
      const size_t take = std::min(want, parts[part].size() - within);
      chunk.push_back({const_cast<std::byte*>(parts[part].data() + within), take});
      within += take;
      want -= take;
    }
    msghdr message{};
    message.msg_iov = chunk.data();
    message.msg_iovlen = chunk.size();
    while (::sendmsg(fd_, &message, MSG_NOSIGNAL) < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) throw BrokenPipeError("the other end of the connection is closed");
      throw_os_error("sendmsg", errno);
    }
  }
}

bool ByteConnection::ring_try_send_buffered(size_t size) {
  // The payload is in send_buffer_ (small_frame); finish_send() sends it when this cannot:
  // when the ring is full, or the payload is more than a small ring carries inline.
  ring_check_peer();
  const std::byte* payload = send_buffer_.data() + 8;
  auto copy = [&](std::byte* out) {
    if (size > 0) std::memcpy(out, payload, size);
  };
  if (size <= ring_->pipe->inline_limit &&
      ring_put_inline(size, &call_with<decltype(copy), std::byte*>, &copy, false)) {
    return true;
  }
  // Kept as the frame the socket transport keeps (its length in front): never empty, so
  // that finish_send() also sends an empty payload.
  unsent_begin_ = 4;
  unsent_end_ = 8 + size;
  return false;
}

bool ByteConnection::ring_take(void (*consume)(void*, std::span<const std::byte>), void* ctx, size_t limit, bool block,
                               Timeout timeout, std::vector<std::byte>* whole) {
  size_t over_limit = 0;  // the size of a message longer than `limit`, which closes us
  bool lost = false;      // a large message whose payload will not come
  const bool taken = ring_->rx().get_in_place(
      [&](std::span<const std::byte> record) {
        PipeRecord head{};
        if (record.size() < PipeRecord::kInlineHeader) throw DecodeError("corrupt pipe record in shared memory");
        std::memcpy(&head, record.data(), std::min(record.size(), sizeof(head)));
        if (head.kind == PipeRecord::kInline) {
          const auto payload = record.subspan(PipeRecord::kInlineHeader);
          if (payload.size() > limit) {
            over_limit = payload.size();
            return;
          }
          consume(ctx, payload);
          return;
        }
        if (head.kind != PipeRecord::kLarge || record.size() != sizeof(PipeRecord) || head.large_size == 0) {
          throw DecodeError("corrupt pipe record in shared memory");
        }
        // The payload follows on the socket; read it whole while no other reader of this
        // end can take the next marker (we hold the ring's consumer lock).
        std::vector<std::byte> payload;
        switch (read_large(head, limit, payload)) {
          case LargeRead::kWhole: break;
          case LargeRead::kOverLimit: over_limit = head.large_size; return;
          case LargeRead::kLost:
            lost = true;  // its sender or an earlier reader died with it: the next one
            return;
        }
        if (whole != nullptr) {  // recv_bytes: the payload read is the copy it returns
          *whole = std::move(payload);
          return;
        }
        consume(ctx, payload);
      },
      block, timeout);
  if (over_limit != 0) {
    close();  // as CPython does for a frame over maxlength
    throw OSError("bad message length " + std::to_string(over_limit) + " (limit " + std::to_string(limit) + ")",
                  EMSGSIZE);
  }
  return taken && !lost;
}

ByteConnection::LargeRead ByteConnection::read_large(const PipeRecord& marker, size_t limit,
                                                     std::vector<std::byte>& payload) {
  const bool keep = marker.large_size <= limit;  // over it: the chunks are read and dropped
  uint64_t got = 0;
  bool skipping = false;  // an earlier reader died after taking some of this payload
  // Room made ahead is bounded: what the marker claims grows the payload only as it arrives.
  if (keep) payload.reserve(std::min<uint64_t>(marker.large_size, kLargestReservation));
  while (got < marker.large_size) {
    // The next chunk's header, if it is here (usually: the sender writes while we read).
    LargeChunk header{};
    const ssize_t peeked = ::recv(fd_, &header, sizeof(header), MSG_PEEK | MSG_DONTWAIT);
    if (peeked < 0 && errno == EINTR) continue;
    if (peeked < 0 && errno != EAGAIN && errno != EWOULDBLOCK) throw_os_error("recv", errno);
    if (peeked < 0) {
      // None yet: wait for one, and while none comes ask the senders' lock whether one will.
      pollfd ready{fd_, POLLIN, 0};
      const int r = ::poll(&ready, 1, static_cast<int>(kLargeChunkWait.count()));
      if (r < 0 && errno != EINTR) throw_os_error("poll", errno);
      if ((ready.revents & POLLIN) != 0 || r < 0) continue;
      if ((ready.revents & (POLLHUP | POLLERR)) != 0) {
        throw EOFError("the other end closed the connection in the middle of a message");
      }
      // A live sender still holds the mutex and is writing; a dead one's or a free mutex
      // means that every chunk that will come has come, and this reader had them not.
      if (shm::held_by_live_owner(ring_->rx_control().large_send, ring_->pipe->control_segment.holder())) continue;
      pollfd again{fd_, POLLIN, 0};
      if (::poll(&again, 1, 0) > 0 && (again.revents & POLLIN) != 0) continue;
      return LargeRead::kLost;
    }
    if (peeked == 0) throw EOFError("the other end closed the connection in the middle of a message");
    if (static_cast<size_t>(peeked) < sizeof(header) || header.seq < marker.large_seq) {
      ::recv(fd_, &header, sizeof(header), 0);  // a chunk of a message given up before: drop it
      continue;
    }
    if (header.seq > marker.large_seq) return LargeRead::kLost;  // ours will not come
    if (header.offset >= marker.large_size) {
      ::recv(fd_, &header, sizeof(header), 0);  // take it, or the next reader trips on it too
      throw DecodeError("malformed chunk of a large message");
    }
    const size_t expected = std::min<uint64_t>(LargeChunk::kLargeChunk, marker.large_size - header.offset);
    if (header.offset != got) skipping = true;
    if (keep && !skipping) payload.resize(got + expected);
    std::vector<std::byte> scratch(keep && !skipping ? 0 : expected);
    iovec parts[2] = {{&header, sizeof(header)}, {keep && !skipping ? payload.data() + got : scratch.data(), expected}};
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = 2;
    const ssize_t n = ::recvmsg(fd_, &message, 0);
    if (n < 0 && errno == EINTR) continue;  // (nothing taken)
    if (n < 0) throw_os_error("recvmsg", errno);
    if (static_cast<size_t>(n) != sizeof(header) + expected) throw DecodeError("malformed chunk of a large message");
    got = header.offset + expected;
  }
  if (skipping) return LargeRead::kLost;
  return keep ? LargeRead::kWhole : LargeRead::kOverLimit;
}

ByteConnection::RingWake ByteConnection::ring_sleep(const ByteQueue::Deadline& deadline) {
  PipeDirection& direction = ring_->rx_control();
  direction.armed.exchange(1, std::memory_order_seq_cst);  // see PipeDirection::armed
  if (ring_->rx().qsize() > 0) return RingWake::kMaybeReady;
  // Bounded: a sender killed between its publish and its token leaves us a message and no
  // wake-up; we look again after at most this long.
  const auto cap = std::chrono::steady_clock::now() + detail::kLongestSleep;
  const ByteQueue::Deadline until = deadline && *deadline < cap ? deadline : ByteQueue::Deadline(cap);
  // The socket only for its hang-up: chunks on it are for a reader that took their marker.
  pollfd fds[2] = {{ring_->rx_wake_fd(), POLLIN, 0}, {fd_, 0, 0}};
  const int r = ::poll(fds, 2, detail::poll_milliseconds(until));
  if (r < 0) {
    if (errno == EINTR) return RingWake::kMaybeReady;
    throw_os_error("poll", errno);
  }
  if ((fds[0].revents & POLLIN) != 0) drain_tokens(ring_->rx_wake_fd());
  if ((fds[1].revents & (POLLHUP | POLLERR)) != 0) {
    // Gone: but what it sent before closing is in the ring, and is delivered first.
    return ring_->rx().qsize() > 0 ? RingWake::kMaybeReady : RingWake::kPeerGone;
  }
  if (r == 0 && deadline && std::chrono::steady_clock::now() >= *deadline) return RingWake::kTimedOut;
  return RingWake::kMaybeReady;
}

void ByteConnection::ring_after_receive() const {
  PipeDirection& direction = ring_->rx_control();
  if (direction.watched.load(std::memory_order_relaxed) == 0) return;
  // Someone selects on fileno(): leave its eventfd readable exactly while messages wait.
  direction.armed.exchange(1, std::memory_order_seq_cst);
  drain_tokens(ring_->rx_wake_fd());
  if (ring_->rx().qsize() > 0) write_token(ring_->rx_wake_fd());
}

void ByteConnection::ring_recv(void (*consume)(void*, std::span<const std::byte>), void* ctx, size_t limit,
                               std::vector<std::byte>* whole) {
  require_open();
  if (!readable_) throw OSError("connection is write-only", EBADF);
  for (;;) {
    if (ring_take(consume, ctx, limit, false, {}, whole)) break;
    if (ring_take(consume, ctx, limit, true, kReceiveSpin, whole)) break;
    if (ring_sleep(std::nullopt) == RingWake::kPeerGone) throw EOFError("the other end closed the connection");
  }
  ring_after_receive();
}

bool ByteConnection::ring_try_recv(void (*consume)(void*, std::span<const std::byte>), void* ctx) {
  if (fd_ < 0 || !readable_) return false;  // recv_bytes raises the error
  const bool taken = ring_take(consume, ctx, options_.max_message_bytes, false, {});
  if (taken) ring_after_receive();
  return taken;
}

bool ByteConnection::ring_poll(Timeout timeout) {
  if (ring_->rx().qsize() > 0) return true;
  const auto deadline = ByteQueue::deadline(true, timeout);
  for (;;) {
    switch (ring_sleep(deadline)) {
      case RingWake::kPeerGone: return true;  // recv reports EOFError at once
      case RingWake::kTimedOut: return ring_->rx().qsize() > 0;
      case RingWake::kMaybeReady:
        if (ring_->rx().qsize() > 0) return true;
        if (deadline && std::chrono::steady_clock::now() >= *deadline) return false;
        break;
    }
  }
}

int ByteConnection::ring_epoll_fd() const {
  if (ring_->watch_fd < 0) {
    const int epoll = epoll_create1(EPOLL_CLOEXEC);
    if (epoll < 0) throw_os_error("epoll_create1", errno);
    epoll_event wake{};
    wake.events = EPOLLIN;
    epoll_event hangup{};
    hangup.events = EPOLLRDHUP;  // (and EPOLLHUP, always): not the chunks of large payloads
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, ring_->rx_wake_fd(), &wake) != 0 ||
        epoll_ctl(epoll, EPOLL_CTL_ADD, fd_, &hangup) != 0) {
      const int error = errno;
      ::close(epoll);
      throw_os_error("epoll_ctl", error);
    }
    ring_->watch_fd = epoll;
  }
  return ring_->watch_fd;
}

int ByteConnection::ring_fileno() const {
  const int epoll = ring_epoll_fd();
  PipeDirection& direction = ring_->rx_control();
  if (direction.watched.load(std::memory_order_relaxed) == 0) {
    direction.watched.store(1, std::memory_order_seq_cst);
    ring_after_receive();  // messages already waiting make it readable now
  }
  return epoll;
}

}  // namespace xproc
