// Implementation of ring_transport_internal.h: one end of a shared-memory Pipe().
#include "xproc/ring_transport_internal.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "xproc/doorbell_internal.h"
#include "xproc/errors.h"
#include "xproc/poll_internal.h"
#include "xproc/shm/mutex.h"
#include "xproc/sync_internal.h"
#include "xproc/syscall_internal.h"

namespace xproc::detail {

namespace {

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

// While a reader of this end is inside the ring (reading a large payload's chunks from the
// socket), a sleeping receiver leaves the socket to it and looks at the ring this often.
constexpr auto kReaderAheadSlice = std::chrono::milliseconds(1);
// The most packets one look at the socket takes: a peer that sends tokens as fast as they
// are taken holds a receiver no longer.
constexpr int kPacketsPerLook = 64;

// Ring ends closed in this process: a sender whose count is behind looks at the socket.
std::atomic<uint64_t> g_ring_end_closes{0};

bool hung_up(int socket) noexcept {
  pollfd hangup{socket, 0, 0};
  return ::poll(&hangup, 1, 0) > 0 && (hangup.revents & (POLLHUP | POLLERR)) != 0;
}

// The private eventfd behind fileno() (see RingTransport::after_receive).
void signal_eventfd(int fd) noexcept {
  const uint64_t one = 1;  // cannot fail short of a counter at 2^64 - 2
  [[maybe_unused]] const ssize_t n = ::write(fd, &one, sizeof(one));
}

void drain_eventfd(int fd) noexcept {
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

RingTransport::RingTransport(Fd socket, std::shared_ptr<RingPipe> pipe, int side, bool readable, bool writable,
                             const ConnectionOptions& options)
    : ByteTransport(std::move(socket), readable, writable, options), pipe_(std::move(pipe)), side_(side) {}

std::unique_ptr<RingTransport> RingTransport::adopt(const ByteConnection::SharedMemoryHandles& handles,
                                                    const ConnectionOptions& options) {
  // Each descriptor is owned from here on: whatever fails, none is left open.
  Fd socket(handles.socket), memory(handles.memory);
  if (handles.side != 0 && handles.side != 1) throw ValueError("a pipe end's side is 0 or 1");
  auto pipe = std::make_shared<RingPipe>(shm::Segment::adopt(memory.release()));
  return std::make_unique<RingTransport>(std::move(socket), std::move(pipe), handles.side, handles.readable,
                                         handles.writable, options);
}

RingTransport::~RingTransport() { close(); }

void RingTransport::close() noexcept {
  if (!pipe_) return;
  fd_.reset();
  watch_.reset();
  ready_.reset();
  pipe_.reset();
  small_.clear();
  // Counted once the socket is closed: a sender of this process that sees the new count
  // then sees the hang-up too, rather than the peer alive for kPeerCheckEvery more.
  g_ring_end_closes.fetch_add(1, std::memory_order_release);
}

ByteConnection::SharedMemoryHandles RingTransport::shared_memory_handles() const {
  ByteConnection::SharedMemoryHandles handles;
  handles.socket = fd_.get();
  handles.memory = pipe_->memory->fd();
  handles.side = side_;
  handles.readable = readable();
  handles.writable = writable();
  return handles;
}

void RingTransport::check_peer() {
  // The socket pair hangs up once every process has closed the other end: the one check
  // that also sees a peer killed while it was reading (it never disarmed anything).
  const auto now = std::chrono::steady_clock::now();
  const uint64_t closes = g_ring_end_closes.load(std::memory_order_acquire);
  if (now - peer_seen_alive_ < kPeerCheckEvery && closes == closes_seen_) return;
  if (hung_up(fd_.get())) throw BrokenPipeError("the other end of the connection is closed");
  peer_seen_alive_ = now;
  closes_seen_ = closes;
}

void RingTransport::wake_receiver() {
  PipeDirection& direction = tx_control();
  // After the publish (a seq_cst exchange inside the ring): see PipeDirection::armed.
  if (direction.armed.load(std::memory_order_seq_cst) != 0 && direction.armed.exchange(0) != 0) {
    ring_doorbell(fd_.get());  // a receiver gone is for the next check_peer to report
  }
}

bool RingTransport::put_inline(size_t size, FillFn fill, void* ctx, bool wait) {
  auto record = [&](std::byte* out) {
    const uint32_t head[2] = {PipeRecord::kInline, 0};
    std::memcpy(out, head, sizeof(head));
    fill(ctx, out + PipeRecord::kInlineHeader);
  };
  ByteQueue& ring = tx();
  if (wait) {
    put_record(ring, PipeRecord::kInlineHeader + size, record, [this] { check_peer(); });
  } else if (!ring.put_in_place(PipeRecord::kInlineHeader + size, record, false)) {
    return false;
  }
  wake_receiver();
  return true;
}

void RingTransport::send_parts(std::span<const std::span<const std::byte>> parts, size_t total) {
  finish_send();  // messages go out whole and in order
  check_peer();
  if (total > pipe_->inline_limit) {
    send_large(parts, total);
    return;
  }
  auto copy = [&](std::byte* at) {
    for (auto part : parts) {
      if (!part.empty()) std::memcpy(at, part.data(), part.size());
      at += part.size();
    }
  };
  put_inline(total, &call_with<decltype(copy), std::byte*>, &copy, true);
}

void RingTransport::send_in_place(size_t size, FillFn fill, void* ctx) {
  finish_send();
  check_peer();
  if (size <= pipe_->inline_limit) {
    put_inline(size, fill, ctx, true);
    return;
  }
  std::vector<std::byte> payload(size);
  fill(ctx, payload.data());
  const std::span<const std::byte> whole(payload);
  send_large({&whole, 1}, size);
}

bool RingTransport::try_send_in_place(size_t size, FillFn fill, void* ctx) {
  std::byte* payload = small_.prepare(size);
  fill(ctx, payload);
  check_peer();
  auto copy = [&](std::byte* out) {
    if (size > 0) std::memcpy(out, payload, size);
  };
  if (size <= pipe_->inline_limit && put_inline(size, &call_with<decltype(copy), std::byte*>, &copy, false)) {
    return true;
  }
  small_.keep(small_.payload(size));  // for finish_send(), an empty payload too
  return false;
}

void RingTransport::finish_send() {
  if (!small_.kept()) return;
  const std::span<const std::byte> payload = small_.take_kept();
  auto copy = [&](std::byte* out) {
    if (!payload.empty()) std::memcpy(out, payload.data(), payload.size());
  };
  send_in_place(payload.size(), &call_with<decltype(copy), std::byte*>, &copy);
}

ByteConnection::SendAttempt RingTransport::send_if_room(size_t size, FillFn fill, void* ctx) {
  if (!try_finish_send()) return ByteConnection::SendAttempt::kNoRoom;
  check_peer();
  if (size > pipe_->inline_limit) {
    send_in_place(size, fill, ctx);
    return ByteConnection::SendAttempt::kSent;
  }
  return put_inline(size, fill, ctx, false) ? ByteConnection::SendAttempt::kSent : ByteConnection::SendAttempt::kNoRoom;
}

bool RingTransport::try_finish_send() {
  if (!small_.kept()) return true;
  const std::span<const std::byte> payload = small_.take_kept();
  auto copy = [&](std::byte* out) {
    if (!payload.empty()) std::memcpy(out, payload.data(), payload.size());
  };
  if (send_if_room(payload.size(), &call_with<decltype(copy), std::byte*>, &copy) ==
      ByteConnection::SendAttempt::kSent) {
    return true;
  }
  small_.keep(payload);  // still first in line
  return false;
}

void RingTransport::send_large(std::span<const std::span<const std::byte>> parts, size_t size) {
  // Too large for the ring: a marker goes into it and the payload onto the socket in
  // chunks, under the direction's lock so that every sender's markers and payloads keep
  // one order. The receiver is woken before the chunks go: it reads while we write.
  PipeDirection& direction = tx_control();
  // (A dead holder's message: see read_large.)
  shm::MutexLock lock(direction.large_send, pipe_->memory->holder(), std::nullopt);
  const uint64_t seq = direction.large_seq.load(std::memory_order_relaxed) + 1;
  direction.large_seq.store(seq, std::memory_order_relaxed);
  put_record(
      tx(), sizeof(PipeRecord),
      [&](std::byte* out) {
        const PipeRecord marker{PipeRecord::kLarge, 0, size, seq};
        std::memcpy(out, &marker, sizeof(marker));
      },
      [this] { check_peer(); });
  wake_receiver();
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
    // One packet of a SOCK_SEQPACKET socket: sent whole or not at all. The socket may have
    // been made non-blocking under us (libuv does so to a descriptor an event loop watches,
    // as uvloop's add_reader on wait_fileno()): then wait for room here.
    while (retry_on_eintr([&] { return ::sendmsg(fd_.get(), &message, MSG_NOSIGNAL); }) < 0) {
      if (errno == EPIPE || errno == ECONNRESET) throw BrokenPipeError("the other end of the connection is closed");
      if (errno != EAGAIN && errno != EWOULDBLOCK) throw_os_error("sendmsg", errno);
      pollfd room{fd_.get(), POLLOUT, 0};
      retry_syscall("poll", [&] { return ::poll(&room, 1, -1); });
    }
  }
}

bool RingTransport::take(ConsumeFn consume, void* ctx, size_t limit, bool block, Timeout timeout,
                         std::vector<std::byte>* whole) {
  size_t over_limit = 0;  // the size of a message longer than `limit`, which closes us
  bool lost = false;      // a large message whose payload will not come
  const bool taken = rx().get_in_place(
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

RingTransport::LargeRead RingTransport::read_large(const PipeRecord& marker, size_t limit,
                                                   std::vector<std::byte>& payload) {
  const int socket = fd_.get();
  const bool keep = marker.large_size <= limit;  // over it: the chunks are read and dropped
  uint64_t got = 0;
  bool skipping = false;  // an earlier reader died after taking some of this payload
  // Room made ahead is bounded: what the marker claims grows the payload only as it arrives.
  if (keep) payload.reserve(std::min<uint64_t>(marker.large_size, kLargestReservation));
  while (got < marker.large_size) {
    // The next chunk's header, if it is here (usually: the sender writes while we read).
    LargeChunk header{};
    const ssize_t peeked =
        retry_on_eintr([&] { return ::recv(socket, &header, sizeof(header), MSG_PEEK | MSG_DONTWAIT); });
    if (peeked < 0 && errno != EAGAIN && errno != EWOULDBLOCK) throw_os_error("recv", errno);
    if (peeked < 0) {
      // None yet: wait for one, and while none comes ask the senders' lock whether one will.
      pollfd ready{socket, POLLIN, 0};
      retry_syscall("poll", [&] { return ::poll(&ready, 1, static_cast<int>(kLargeChunkWait.count())); });
      if ((ready.revents & POLLIN) != 0) continue;
      if ((ready.revents & (POLLHUP | POLLERR)) != 0) {
        throw EOFError("the other end closed the connection in the middle of a message");
      }
      // A live sender still holds the mutex and is writing; a dead one's or a free mutex
      // means that every chunk that will come has come, and this reader had them not.
      if (shm::held_by_live_owner(rx_control().large_send, pipe_->memory->holder())) continue;
      pollfd again{socket, POLLIN, 0};
      if (::poll(&again, 1, 0) > 0 && (again.revents & POLLIN) != 0) continue;
      return LargeRead::kLost;
    }
    if (peeked == 0 && hung_up(socket)) {
      throw EOFError("the other end closed the connection in the middle of a message");
    }
    if (static_cast<size_t>(peeked) < sizeof(header) || header.seq < marker.large_seq) {
      // A wake-up token (for a receiver that will look at the ring again by itself), or a
      // chunk of a message given up before: drop it.
      ::recv(socket, &header, sizeof(header), 0);
      continue;
    }
    if (header.seq > marker.large_seq) return LargeRead::kLost;  // ours will not come
    if (header.offset >= marker.large_size) {
      ::recv(socket, &header, sizeof(header), 0);  // take it, or the next reader trips on it too
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
    const ssize_t n = retry_syscall("recvmsg", [&] { return ::recvmsg(socket, &message, 0); });
    if (static_cast<size_t>(n) != sizeof(header) + expected) throw DecodeError("malformed chunk of a large message");
    got = header.offset + expected;
  }
  if (skipping) return LargeRead::kLost;
  return keep ? LargeRead::kWhole : LargeRead::kOverLimit;
}

RingTransport::Wake RingTransport::sleep(const ByteQueue::Deadline& deadline) {
  PipeDirection& direction = rx_control();
  direction.armed.exchange(1, std::memory_order_seq_cst);  // see PipeDirection::armed
  if (rx().qsize() > 0) return Wake::kMaybeReady;
  // Bounded: a sender killed between its publish and its token leaves us a message and no
  // wake-up; we look again after at most this long. Sooner when the ring holds memory that
  // settles meanwhile: we wake then, and the next look gives it back. (Memory settled
  // already is given back now; if that cannot be, as while another reader holds the ring,
  // the sleep is not cut short for it, or it would spin.)
  const auto now = std::chrono::steady_clock::now();
  auto cap = now + kLongestSleep;
  if (const auto returns = rx().memory_returns_at(); returns && *returns <= now) {
    rx().return_memory();
  } else if (returns && *returns < cap) {
    cap = *returns;
  }
  const ByteQueue::Deadline until = deadline && *deadline < cap ? deadline : ByteQueue::Deadline(cap);
  // Readable for a token, the other end's hang-up, or a large payload's chunk.
  const int socket = fd_.get();
  pollfd fds{socket, POLLIN, 0};
  int r = ::poll(&fds, 1, poll_milliseconds(until));
  if (r > 0 && (fds.revents & POLLIN) != 0 && !take_tokens()) {
    if (rx().qsize() > 0) return Wake::kMaybeReady;  // a marker, its chunks behind
    // A reader of this end is inside the ring, reading chunks: the socket is its until it is
    // done, so look at the ring again shortly, meanwhile only for a hang-up.
    const auto slice = std::chrono::steady_clock::now() + kReaderAheadSlice;
    fds = {socket, 0, 0};
    r = ::poll(&fds, 1, poll_milliseconds(*until < slice ? *until : slice));
  }
  if (r < 0) {
    if (errno == EINTR) return Wake::kMaybeReady;  // the caller looks again, and sleeps again
    throw_os_error("poll", errno);
  }
  if ((fds.revents & (POLLHUP | POLLERR)) != 0) {
    // Gone: but what it sent before closing is in the ring, and is delivered first.
    return rx().qsize() > 0 ? Wake::kMaybeReady : Wake::kPeerGone;
  }
  if (r == 0 && deadline && std::chrono::steady_clock::now() >= *deadline) return Wake::kTimedOut;
  return Wake::kMaybeReady;
}

bool RingTransport::take_tokens() {
  // Only with no reader inside the ring: a reader reads chunks from the socket, and a
  // packet taken here between its peek and its read would be one of them.
  bool clear = false;
  const bool alone = rx().run_as_sole_consumer([&] {
    const int socket = fd_.get();
    for (int i = 0; i < kPacketsPerLook; ++i) {
      LargeChunk header{};
      iovec part{&header, sizeof(header)};
      msghdr peek{};
      peek.msg_iov = &part;
      peek.msg_iovlen = 1;
      const ssize_t n = retry_on_eintr([&] { return ::recvmsg(socket, &peek, MSG_PEEK | MSG_DONTWAIT); });
      if (n < 0 || (n == 0 && hung_up(socket))) break;  // nothing there, or a hang-up the caller sees
      // Descriptors sent beside the messages (xproc.reduction.send_handle) are for the
      // receive that asks for them.
      if ((peek.msg_flags & MSG_CTRUNC) != 0) return;
      // A chunk is its marker's reader's. The marker went into the ring before the chunk onto
      // the socket, and no reader can take it now: with the ring empty, that reader died
      // or gave the message up, and the chunk is dropped here as it would drop it.
      if (static_cast<size_t>(n) > kTokenBytes && rx().qsize() > 0) return;
      ::recv(socket, &header, sizeof(header), MSG_DONTWAIT);  // (an empty packet too: no sender makes one)
    }
    clear = true;
  });
  return alone && clear;
}

void RingTransport::after_receive() {
  if (!ready_) return;
  // Someone selects on fileno(): leave it readable exactly while messages wait. Senders
  // wake the socket only when armed, and no process can make its own socket readable, so
  // messages that came before arming are told by the eventfd.
  rx_control().armed.exchange(1, std::memory_order_seq_cst);  // see PipeDirection::armed
  take_tokens();
  drain_eventfd(ready_.get());
  if (rx().qsize() > 0) signal_eventfd(ready_.get());
}

void RingTransport::recv(ConsumeFn consume, void* ctx, size_t limit, std::vector<std::byte>* whole) {
  for (;;) {
    if (take(consume, ctx, limit, false, {}, whole)) break;
    if (take(consume, ctx, limit, true, kReceiveSpin, whole)) break;
    if (sleep(std::nullopt) == Wake::kPeerGone) throw EOFError("the other end closed the connection");
  }
  after_receive();
}

std::vector<std::byte> RingTransport::recv_bytes(size_t limit) {
  std::vector<std::byte> out;
  auto keep = [&](std::span<const std::byte> payload) { out.assign(payload.begin(), payload.end()); };
  recv(&call_with<decltype(keep), std::span<const std::byte>>, &keep, limit, &out);
  return out;
}

void RingTransport::recv_in_place(ConsumeFn consume, void* ctx) { recv(consume, ctx, options().max_message_bytes); }

bool RingTransport::try_recv_in_place(ConsumeFn consume, void* ctx) {
  const bool taken = take(consume, ctx, options().max_message_bytes, false, {});
  if (taken) after_receive();
  return taken;
}

bool RingTransport::poll(Timeout timeout) {
  if (rx().qsize() > 0) return true;
  const auto deadline = ByteQueue::deadline(true, timeout);
  for (;;) {
    switch (sleep(deadline)) {
      case Wake::kPeerGone: return true;  // recv reports EOFError at once
      case Wake::kTimedOut: return rx().qsize() > 0;
      case Wake::kMaybeReady:
        if (rx().qsize() > 0) return true;
        if (deadline && std::chrono::steady_clock::now() >= *deadline) return false;
        break;
    }
  }
}

bool RingTransport::ready_or_wait_fds(std::vector<int>& fds) {
  require_readable();
  if (poll(std::chrono::seconds(0))) return true;  // and armed: a send from now on wakes us
  fds.push_back(fd_.get());                        // a token, or the other end's hang-up
  return false;
}

int RingTransport::fileno() {
  if (!watch_) {
    Fd ready(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!ready) throw_os_error("eventfd", errno);
    Fd epoll(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll) throw_os_error("epoll_create1", errno);
    epoll_event readable{};
    readable.events = EPOLLIN;  // (and EPOLLHUP, always)
    if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, ready.get(), &readable) != 0 ||
        epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd_.get(), &readable) != 0) {
      throw_os_error("epoll_ctl", errno);
    }
    ready_ = std::move(ready);
    watch_ = std::move(epoll);
    after_receive();  // messages already waiting make it readable now
  }
  return watch_.get();
}

}  // namespace xproc::detail
