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

#include "xproc/auth.h"
#include "xproc/doorbell_internal.h"
#include "xproc/errors.h"
#include "xproc/rpc/buffered_message_stream.h"
#include "xproc/rpc/lane.h"
#include "xproc/rpc/socket_message_stream.h"
#include "xproc/syscall_internal.h"

namespace xproc::rpc {
namespace {

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

class IgnoreWatchErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&&) override {}  // the watch ends with the connection
};

// The RPC stream through a lane; the socket only brings doorbells and the hang-up.
class LaneMessageStream final : public BufferedMessageStream {
 public:
  LaneMessageStream(kj::UnixEventPort& port, Fd fd, Lane lane, MessageGuard* guard)
      : BufferedMessageStream(guard),
        fd_(std::move(fd)),
        socket_(port, fd_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ),
        lane_(std::move(lane)),
        watch_(ignore_errors_) {
    lane_set().streams.push_back(this);
    watch_.add(watch_socket());
  }

  ~LaneMessageStream() {
    cancel_flushes();
    auto& streams = lane_set().streams;
    streams.erase(std::remove(streams.begin(), streams.end(), this), streams.end());
  }

  kj::Maybe<int> getSendBufferSize() override { return static_cast<int>(lane_.ring_bytes()); }

  // ---- for the serve loop (lane_stream.h) ----

  // Wakes a wait that is over; true if one was.
  bool wake_if_ready() {
    bool woke = false;
    try {
      if (input_.waiter && lane_.has_input()) woke |= wake(input_);
      if (room_.waiter && lane_.has_room()) woke |= wake(room_);
    } catch (const LaneError& e) {
      woke = true;
      break_lane(e);
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

  Read read_some(kj::byte* out, size_t size) override {
    try {
      const size_t n = lane_.read(out, size);
      if (n > 0) {
        if (lane_.take_room_doorbell()) detail::ring_doorbell(fd_.get());
        return {Read::kBytes, n};
      }
    } catch (const LaneError& e) {
      break_lane(e);
      kj::throwFatalException(lane_broken(e.what()));
    }
    return {peer_closed_ ? Read::kEnd : Read::kNone};
  }

  kj::Promise<void> readable() override { return wait_for(input_); }

  size_t write_some(const kj::byte* data, size_t size) override {
    size_t n = 0;
    try {
      n = lane_.write(data, size);
      if (n > 0 && lane_.take_input_doorbell()) detail::ring_doorbell(fd_.get());
    } catch (const LaneError& e) {
      kj::throwFatalException(lane_broken(e.what()));
    }
    if (n == 0 && peer_closed_) kj::throwFatalException(lane_broken("the client closed the connection"));
    return n;
  }

  kj::Promise<void> writable() override { return wait_for(room_); }

  void shutdown_write() override { ::shutdown(fd_.get(), SHUT_WR); }

  // The peer broke the lane's protocol: every write fails, and what waits wakes to see it.
  void break_lane(const LaneError& error) {
    fail(lane_broken(error.what()));
    wake(input_);
    wake(room_);
  }

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
      break_lane(e);
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

  // Reads doorbells (and the hang-up) forever, waking whatever waits.
  kj::Promise<void> watch_socket() {
    return socket_.whenBecomesReadable().then([this]() -> kj::Promise<void> {
      if (!drain_doorbells(fd_.get())) peer_closed_ = true;
      wake(input_);
      wake(room_);
      if (peer_closed_) return kj::READY_NOW;
      return watch_socket();
    });
  }

  Fd fd_;  // declared before its observer: closed after it unregisters
  kj::UnixEventPort::FdObserver socket_;
  Lane lane_;
  bool peer_closed_ = false;
  Wait input_;
  Wait room_;
  IgnoreWatchErrors ignore_errors_;
  kj::TaskSet watch_;  // last: cancelled before anything it uses goes
};

// Waits for the client's first bytes and answers a lane request, after checking that the
// client knows the authkey (lane.h).
class Handshake {
 public:
  Handshake(kj::UnixEventPort& port, Fd fd, const std::optional<std::string>& authkey, MessageGuard* guard)
      : port_(port), fd_(std::move(fd)), authkey_(authkey), guard_(guard) {
    observer_ = kj::heap<kj::UnixEventPort::FdObserver>(port, fd_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
  }
  ~Handshake() {
    observer_ = nullptr;  // unregistered before fd_ (if still ours) closes
  }
  KJ_DISALLOW_COPY(Handshake);

  kj::Promise<kj::Own<capnp::MessageStream>> run() {
    unsigned char head[kLaneRequest.size()];
    const ssize_t n =
        detail::retry_on_eintr([&] { return ::recv(fd_.get(), head, sizeof(head), MSG_PEEK | MSG_DONTWAIT); });
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return wait([this] { return run(); });
    // An end or an error: the socket stream reports it as its first read.
    if (n <= 0 || std::memcmp(head, kLaneRequest.data(), static_cast<size_t>(n)) != 0) return socket_stream();
    if (static_cast<size_t>(n) < sizeof(head)) return wait([this] { return run(); });  // a prefix so far
    // The request, peeked whole.
    (void)detail::retry_on_eintr([&] { return ::recv(fd_.get(), head, sizeof(head), MSG_DONTWAIT); });
    if (!is_unix_socket(fd_.get()) || lane_set().streams.size() >= kMaxLanes) return answer(LaneReply::kRefused);
    if (!authkey_) return grant();
    // Memory only for a client that knows the key.
    nonce_ = random_bytes(kLaneNonceBytes);
    LaneReply challenge;
    challenge.status = LaneReply::kChallenge;
    std::string bytes(reinterpret_cast<const char*>(&challenge), sizeof(challenge));
    bytes += nonce_;
    if (!send_with_descriptor(fd_.get(), std::as_bytes(std::span(bytes)), -1)) {
      return KJ_EXCEPTION(DISCONNECTED, "could not answer the client's lane request");
    }
    return read_digest();
  }

 private:
  template <typename Next>
  kj::Promise<kj::Own<capnp::MessageStream>> wait(Next next) {
    return observer_->whenBecomesReadable().then(kj::mv(next));
  }

  kj::Promise<kj::Own<capnp::MessageStream>> read_digest() {
    char chunk[kLaneDigestBytes];
    const ssize_t n = detail::retry_on_eintr(
        [&] { return ::recv(fd_.get(), chunk, kLaneDigestBytes - digest_.size(), MSG_DONTWAIT); });
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return wait([this] { return read_digest(); });
    if (n <= 0) return KJ_EXCEPTION(DISCONNECTED, "the client left during the lane handshake");
    digest_.append(chunk, static_cast<size_t>(n));
    if (digest_.size() < kLaneDigestBytes) return read_digest();
    if (!equal_constant_time(digest_, hmac_sha256(*authkey_, nonce_))) {
      answer_only(LaneReply::kWrongKey);
      return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                           kj::heapString("login failed: wrong authkey in a lane request; connection closed"));
    }
    return grant();
  }

  kj::Promise<kj::Own<capnp::MessageStream>> socket_stream() {
    observer_ = nullptr;  // the stream registers the descriptor itself, and owns it
    return socket_message_stream(port_, fd_.release(), guard_);
  }

  // Sends `status` with no lane; the socket carries what follows (after kWrongKey, nothing).
  bool answer_only(LaneReply::Status status) {
    LaneReply reply;
    reply.status = status;
    return send_with_descriptor(fd_.get(), std::as_bytes(std::span(&reply, 1)), -1);
  }

  kj::Promise<kj::Own<capnp::MessageStream>> answer(LaneReply::Status status) {
    if (!answer_only(status)) return KJ_EXCEPTION(DISCONNECTED, "could not answer the client's lane request");
    return socket_stream();
  }

  kj::Promise<kj::Own<capnp::MessageStream>> grant() {
    std::optional<Lane> lane;
    try {
      lane = Lane::create();
    } catch (const OSError&) {
      return answer(LaneReply::kRefused);  // memory short: this connection stays on the socket
    }
    LaneReply reply;
    reply.status = LaneReply::kGranted;
    reply.ring_bytes = static_cast<uint32_t>(lane->ring_bytes());
    // The socket has room for 16 bytes (the client has read all we sent): one send does.
    if (!send_with_descriptor(fd_.get(), std::as_bytes(std::span(&reply, 1)), lane->memfd())) {
      return KJ_EXCEPTION(DISCONNECTED, "could not answer the client's lane request");
    }
    lane->close_memfd();  // the mapping stays; the client has its own descriptor
    observer_ = nullptr;
    kj::Own<capnp::MessageStream> stream = kj::heap<LaneMessageStream>(port_, std::move(fd_), std::move(*lane), guard_);
    return kj::mv(stream);
  }

  kj::UnixEventPort& port_;
  Fd fd_;
  const std::optional<std::string>& authkey_;
  MessageGuard* guard_;
  std::string nonce_;
  std::string digest_;
  kj::Own<kj::UnixEventPort::FdObserver> observer_;
};

}  // namespace

kj::Promise<kj::Own<capnp::MessageStream>> accept_message_stream(kj::UnixEventPort& port, Fd fd,
                                                                 const std::optional<std::string>& authkey,
                                                                 MessageGuard& guard) {
  int flags = detail::retry_syscall("fcntl", [&] { return ::fcntl(fd.get(), F_GETFL); });
  detail::retry_syscall("fcntl", [&] { return ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK); });
  detail::retry_syscall("fcntl", [&] { return ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC); });
  auto handshake = kj::heap<Handshake>(port, std::move(fd), authkey, &guard);
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
