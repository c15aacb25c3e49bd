// See lane_stream.h.
#include "xproc/rpc/lane_stream.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include <kj/debug.h>

#include "xproc/errors.h"
#include "xproc/rpc/framing.h"
#include "xproc/rpc/lane.h"
#include "xproc/rpc/socket_message_stream.h"

namespace xproc::rpc {
namespace {

constexpr size_t kReadBufferBytes = 64 * 1024;
// Gathered bytes past which a writer waits for the client to take them (as on a socket).
constexpr size_t kBacklogBytes = 4 * 1024 * 1024;
// Lanes one server hands out at most (about 130 KiB of memory each); later connections
// stay on their sockets.
constexpr size_t kMaxLanes = 1024;

class LaneMessageStream;

// The lane streams of this thread and whether its serve loop sleeps.
struct LaneSet {
  std::vector<LaneMessageStream*> streams;
  bool sleeping = false;
};

LaneSet& lane_set() {
  thread_local LaneSet set;
  return set;
}

kj::Exception lane_broken(const char* why) {
  return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__, kj::heapString(why));
}

class IgnoreErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&&) override {}  // a broken lane ends its connection through the reads
};

class LaneMessageStream final : public capnp::MessageStream {
 public:
  LaneMessageStream(kj::UnixEventPort& port, int fd, Lane lane)
      : fd_(fd),
        socket_(port, fd, kj::UnixEventPort::FdObserver::OBSERVE_READ),
        lane_(std::move(lane)),
        buffer_(kj::heapArray<capnp::word>(kReadBufferBytes / sizeof(capnp::word))),
        tasks_(ignore_errors_) {
    lane_set().streams.push_back(this);
    tasks_.add(watch_socket());
  }

  ~LaneMessageStream() {
    auto& streams = lane_set().streams;
    streams.erase(std::remove(streams.begin(), streams.end(), this), streams.end());
  }

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(kj::ArrayPtr<kj::AutoCloseFd>,
                                                                    capnp::ReaderOptions options,
                                                                    kj::ArrayPtr<capnp::word>) override {
    auto* bytes = buffer_bytes();
    const size_t capacity = buffer_.size() * sizeof(capnp::word);
    for (;;) {
      std::optional<size_t> size;
      try {
        size = framed_message_bytes(bytes + begin_, end_ - begin_, options.traversalLimitInWords);
      } catch (kj::Exception& e) {
        return kj::mv(e);
      }
      if (size) return take_message(*size, options);
      if (begin_ > 0) {  // messages are whole words, so the buffer stays aligned
        std::memmove(bytes, bytes + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      const size_t n = read_lane(bytes + end_, capacity - end_);
      KJ_IF_MAYBE(failure, failure_) { return kj::cp(*failure); }
      if (n > 0) {
        end_ += n;
        continue;
      }
      if (peer_closed_) {
        if (end_ == begin_) return kj::Maybe<capnp::MessageReaderAndFds>(nullptr);  // a clean end
        return lane_broken("the client closed the connection in the middle of a message");
      }
      return wait_for(input_).then([this, options] { return tryReadMessage(nullptr, options, nullptr); });
    }
  }

  kj::Promise<void> writeMessage(kj::ArrayPtr<const int>, kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override {
    KJ_IF_MAYBE(failure, failure_) { return kj::cp(*failure); }
    append_framed(gathered_, segments);
    return after_append();
  }

  kj::Promise<void> writeMessages(kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override {
    KJ_IF_MAYBE(failure, failure_) { return kj::cp(*failure); }
    for (auto segments : messages) append_framed(gathered_, segments);
    return after_append();
  }

  kj::Maybe<int> getSendBufferSize() override { return static_cast<int>(lane_.ring_bytes()); }

  kj::Promise<void> end() override {
    return drained(0).then([this] { ::shutdown(fd_.get(), SHUT_WR); });
  }

  // ---- for the serve loop (lane_stream.h) ----

  // Wakes a wait that is over; true if one was.
  bool wake_if_ready() {
    bool woke = false;
    try {
      if (input_.waiter && lane_.has_input()) woke |= wake(input_);
      if (room_.waiter && lane_.has_room()) woke |= wake(room_);
    } catch (const LaneError& e) {
      woke = true;
      fail(lane_broken(e.what()));
    }
    return woke;
  }

  // Raises the flag of each wait; false if one is over already (that one is woken).
  bool arm() { return arm_wait(input_) && arm_wait(room_); }

  void disarm() noexcept { lane_.awake(); }

 private:
  struct Wait {
    kj::Own<kj::PromiseFulfiller<void>> waiter;
  };

  kj::byte* buffer_bytes() { return reinterpret_cast<kj::byte*>(buffer_.begin()); }

  kj::Promise<void> wait_for(Wait& wait) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    wait.waiter = kj::mv(paf.fulfiller);
    // The loop sleeps already: nobody looks at this lane until the client's doorbell.
    if (lane_set().sleeping) arm_wait(wait);
    return kj::mv(paf.promise);
  }

  // Raises the flag of `wait` if it waits; false (it is woken, its flag down) when what it
  // waits for is there already.
  bool arm_wait(Wait& wait) {
    if (!wait.waiter) return true;
    try {
      const bool asleep = &wait == &input_ ? lane_.sleep_for_input() : lane_.sleep_for_room();
      if (asleep) return true;
    } catch (const LaneError& e) {
      fail(lane_broken(e.what()));
      return false;
    }
    wake(wait);
    return false;
  }

  static bool wake(Wait& wait) {
    if (!wait.waiter) return false;
    auto waiter = kj::mv(wait.waiter);
    waiter->fulfill();
    return true;
  }

  // Bytes from the lane; 0 when there are none or the lane broke (failure_ says which).
  size_t read_lane(kj::byte* out, size_t size) {
    try {
      const size_t n = lane_.read(out, size);
      if (n > 0 && lane_.take_room_doorbell()) ring_doorbell();
      return n;
    } catch (const LaneError& e) {
      fail(lane_broken(e.what()));
      return 0;
    }
  }

  // The message of `size` bytes at the front of the buffer, or (when the buffer holds
  // only its start) its start, with the rest read straight into its own words.
  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> take_message(size_t size, capnp::ReaderOptions options) {
    auto words = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
    const size_t have = std::min(size, end_ - begin_);
    std::memcpy(words.begin(), buffer_bytes() + begin_, have);
    begin_ += have;
    if (begin_ == end_) begin_ = end_ = 0;
    if (have == size) return reader_owning(kj::mv(words), options);
    return read_rest(kj::mv(words), have, options);
  }

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> read_rest(kj::Array<capnp::word> words, size_t have,
                                                                capnp::ReaderOptions options) {
    auto* out = reinterpret_cast<kj::byte*>(words.begin());
    const size_t size = words.size() * sizeof(capnp::word);
    while (have < size) {
      const size_t n = read_lane(out + have, size - have);
      KJ_IF_MAYBE(failure, failure_) { return kj::cp(*failure); }
      if (n > 0) {
        have += n;
        continue;
      }
      if (peer_closed_) return lane_broken("the client closed the connection in the middle of a message");
      return wait_for(input_).then([this, words = kj::mv(words), have, options]() mutable {
        return read_rest(kj::mv(words), have, options);
      });
    }
    return reader_owning(kj::mv(words), options);
  }

  // Sends what was gathered at the end of this turn of the event loop; a writer that has
  // gathered too much waits for the client to take it.
  kj::Promise<void> after_append() {
    if (!flush_scheduled_ && !room_.waiter) {
      flush_scheduled_ = true;
      tasks_.add(kj::evalLast([this] {
        flush_scheduled_ = false;
        return flush();
      }));
    }
    if (gathered_.size() - sent_ > kBacklogBytes) return drained(kBacklogBytes);
    return kj::READY_NOW;
  }

  kj::Promise<void> flush() {
    if (failure_ != nullptr) return kj::READY_NOW;
    bool wrote = false;
    try {
      while (sent_ < gathered_.size()) {
        const size_t n = lane_.write(gathered_.data() + sent_, gathered_.size() - sent_);
        if (n == 0) break;
        sent_ += n;
        wrote = true;
      }
      if (wrote && lane_.take_input_doorbell()) ring_doorbell();
    } catch (const LaneError& e) {
      fail(lane_broken(e.what()));
      return kj::READY_NOW;
    }
    wake_drained_waiters();
    if (sent_ < gathered_.size()) {
      if (peer_closed_) {
        fail(lane_broken("the client closed the connection"));
        return kj::READY_NOW;
      }
      return wait_for(room_).then([this] { return flush(); });
    }
    gathered_.clear();
    sent_ = 0;
    return kj::READY_NOW;
  }

  // Resolves once no more than `limit` gathered bytes wait for the lane.
  kj::Promise<void> drained(size_t limit) {
    KJ_IF_MAYBE(failure, failure_) { return kj::cp(*failure); }
    if (gathered_.size() - sent_ <= limit) return kj::READY_NOW;
    auto waiter = kj::newPromiseAndFulfiller<void>();
    drained_waiters_.push_back({limit, kj::mv(waiter.fulfiller)});
    return kj::mv(waiter.promise);
  }

  void wake_drained_waiters() {
    const size_t pending = gathered_.size() - sent_;
    for (auto it = drained_waiters_.begin(); it != drained_waiters_.end();) {
      if (pending <= it->limit) {
        it->fulfiller->fulfill();
        it = drained_waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void fail(kj::Exception&& error) {
    if (failure_ == nullptr) failure_ = kj::cp(error);
    for (auto& waiter : drained_waiters_) waiter.fulfiller->reject(kj::cp(error));
    drained_waiters_.clear();
    wake(input_);
    wake(room_);
  }

  // One byte on the socket for a client asleep on it. A full socket already holds
  // doorbells the client has not read, and a gone client is seen by the watch.
  void ring_doorbell() {
    const char bell = 1;
    (void)::send(fd_.get(), &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
  }

  // Reads doorbells (and the hang-up) forever, waking whatever waits.
  kj::Promise<void> watch_socket() {
    return socket_.whenBecomesReadable().then([this]() -> kj::Promise<void> {
      char bells[64];
      for (;;) {
        ssize_t n = ::recv(fd_.get(), bells, sizeof(bells), MSG_DONTWAIT);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        peer_closed_ = true;  // the end, or an error that ends it
        break;
      }
      wake(input_);
      wake(room_);
      if (peer_closed_) return kj::READY_NOW;
      return watch_socket();
    });
  }

  struct DrainedWaiter {
    size_t limit;
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };

  kj::AutoCloseFd fd_;  // declared before its observer: closed after it unregisters
  kj::UnixEventPort::FdObserver socket_;
  Lane lane_;
  bool peer_closed_ = false;
  kj::Maybe<kj::Exception> failure_;

  Wait input_;
  Wait room_;

  kj::Array<capnp::word> buffer_;  // bytes read, messages not yet handed out
  size_t begin_ = 0;               // in bytes
  size_t end_ = 0;

  std::vector<kj::byte> gathered_;  // messages written, not yet all in the lane
  size_t sent_ = 0;
  bool flush_scheduled_ = false;
  std::vector<DrainedWaiter> drained_waiters_;
  IgnoreErrors ignore_errors_;
  kj::TaskSet tasks_;  // last: cancelled before anything it uses goes
};

// Sends the 16-byte reply, with the segment when granted. A fresh socket has room for it.
bool send_reply(int fd, const LaneReply& reply, int memfd) {
  iovec part{const_cast<LaneReply*>(&reply), sizeof(reply)};
  msghdr message{};
  message.msg_iov = &part;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (memfd >= 0) {
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &memfd, sizeof(int));
  }
  ssize_t n;
  do n = ::sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(sizeof(reply));
}

bool is_unix_socket(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  return ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0 && address.ss_family == AF_UNIX;
}

// Waits for the client's first bytes and answers a lane request.
class Handshake {
 public:
  Handshake(kj::UnixEventPort& port, int fd) : port_(port), fd_(fd) {
    observer_ = kj::heap<kj::UnixEventPort::FdObserver>(port, fd, kj::UnixEventPort::FdObserver::OBSERVE_READ);
  }
  ~Handshake() {
    observer_ = nullptr;
    if (fd_ >= 0) ::close(fd_);
  }
  KJ_DISALLOW_COPY(Handshake);

  kj::Promise<kj::Own<capnp::MessageStream>> run() {
    unsigned char head[kLaneRequest.size()];
    ssize_t n = ::recv(fd_, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) return run();
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return wait();
    // An end or an error: the socket stream reports it as its first read.
    if (n <= 0 || std::memcmp(head, kLaneRequest.data(), static_cast<size_t>(n)) != 0) return socket_stream();
    if (static_cast<size_t>(n) < sizeof(head)) return wait();  // a prefix so far
    (void)::recv(fd_, head, sizeof(head), MSG_DONTWAIT);        // the request, peeked whole
    return grant();
  }

 private:
  kj::Promise<kj::Own<capnp::MessageStream>> wait() {
    return observer_->whenBecomesReadable().then([this] { return run(); });
  }

  kj::Promise<kj::Own<capnp::MessageStream>> socket_stream() {
    observer_ = nullptr;  // the stream registers the descriptor itself
    return socket_message_stream(port_, std::exchange(fd_, -1));
  }

  kj::Promise<kj::Own<capnp::MessageStream>> grant() {
    std::optional<Lane> lane;
    if (is_unix_socket(fd_) && lane_set().streams.size() < kMaxLanes) {
      try {
        lane = Lane::create();
      } catch (const OSError&) {
        // Memory short: this connection stays on the socket.
      }
    }
    LaneReply reply;
    if (lane) {
      reply.status = LaneReply::kGranted;
      reply.ring_bytes = static_cast<uint32_t>(lane->ring_bytes());
    }
    if (!send_reply(fd_, reply, lane ? lane->memfd() : -1)) {
      return KJ_EXCEPTION(DISCONNECTED, "could not answer the client's lane request");
    }
    if (!lane) return socket_stream();
    lane->close_memfd();  // the mapping stays; the client has its own descriptor
    observer_ = nullptr;
    kj::Own<capnp::MessageStream> stream = kj::heap<LaneMessageStream>(port_, std::exchange(fd_, -1), std::move(*lane));
    return kj::mv(stream);
  }

  kj::UnixEventPort& port_;
  int fd_;
  kj::Own<kj::UnixEventPort::FdObserver> observer_;
};

}  // namespace

kj::Promise<kj::Own<capnp::MessageStream>> accept_message_stream(kj::UnixEventPort& port, int fd) {
  int flags = retry_syscall("fcntl", [&] { return ::fcntl(fd, F_GETFL); });
  retry_syscall("fcntl", [&] { return ::fcntl(fd, F_SETFL, flags | O_NONBLOCK); });
  retry_syscall("fcntl", [&] { return ::fcntl(fd, F_SETFD, FD_CLOEXEC); });
  auto handshake = kj::heap<Handshake>(port, fd);
  auto& ref = *handshake;
  return ref.run().attach(kj::mv(handshake));
}

bool poll_lanes() {
  bool woke = false;
  // A woken stream runs only later, in the event loop, so the list does not change here.
  for (auto* stream : lane_set().streams) woke |= stream->wake_if_ready();
  return woke;
}

bool lanes_may_sleep() {
  auto& set = lane_set();
  for (auto* stream : set.streams) {
    if (!stream->arm()) {
      for (auto* other : set.streams) other->disarm();
      return false;
    }
  }
  set.sleeping = true;
  return true;
}

void lanes_awake() {
  auto& set = lane_set();
  set.sleeping = false;
  for (auto* stream : set.streams) stream->disarm();
}

}  // namespace xproc::rpc
