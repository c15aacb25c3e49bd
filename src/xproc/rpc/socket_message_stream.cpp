// See socket_message_stream.h.
#include "xproc/rpc/socket_message_stream.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include <capnp/serialize.h>
#include <kj/io.h>

#include "xproc/errors.h"
#include "xproc/rpc/framing.h"

namespace xproc::rpc {
namespace {

constexpr size_t kReadBufferBytes = 64 * 1024;
// Gathered bytes past which a writer waits for the socket to take them (a peer that
// does not read must not make the sender buffer without bound).
constexpr size_t kBacklogBytes = 4 * 1024 * 1024;

kj::Exception socket_error(const char* call, int error_number) {
  // The peer going away ends the connection the way kj's own streams report it.
  bool gone = error_number == ECONNRESET || error_number == EPIPE || error_number == ENOTCONN;
  return kj::Exception(gone ? kj::Exception::Type::DISCONNECTED : kj::Exception::Type::FAILED, __FILE__, __LINE__,
                       kj::str(call, ": ", strerror(error_number)));
}

class IgnoreFlushErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&&) override {}  // recorded in failure_ by the flush itself
};

class SocketMessageStream final : public capnp::MessageStream {
 public:
  SocketMessageStream(kj::UnixEventPort& port, int fd)
      : port_(port),
        fd_(fd),
        readable_(port, fd, kj::UnixEventPort::FdObserver::OBSERVE_READ),
        buffer_(kj::heapArray<capnp::word>(kReadBufferBytes / sizeof(capnp::word))),
        flushes_(ignore_flush_errors_) {}

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
      if (begin_ > 0) {  // room at the end; messages are whole words, so this stays aligned
        std::memmove(bytes, bytes + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (drained_) {
        return when_readable().then([this, options] { return tryReadMessage(nullptr, options, nullptr); });
      }
      ssize_t n = ::read(fd_.get(), bytes + end_, capacity - end_);
      if (n > 0) {
        note_read(static_cast<size_t>(n), capacity - end_);
        end_ += static_cast<size_t>(n);
      } else if (n == 0) {
        if (end_ == begin_) return kj::Maybe<capnp::MessageReaderAndFds>(nullptr);  // a clean end
        return KJ_EXCEPTION(DISCONNECTED, "the peer closed the connection in the middle of a message");
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return when_readable().then([this, options] { return tryReadMessage(nullptr, options, nullptr); });
      } else if (errno != EINTR) {
        return socket_error("read", errno);
      }
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

  kj::Maybe<int> getSendBufferSize() override {
    int size = 0;
    socklen_t length = sizeof(size);
    if (::getsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUF, &size, &length) < 0) return nullptr;
    return size;
  }

  kj::Promise<void> end() override {
    return drained(0).then([this] { ::shutdown(fd_.get(), SHUT_WR); });
  }

 private:
  kj::byte* buffer_bytes() { return reinterpret_cast<kj::byte*>(buffer_.begin()); }

  // A read that returned less than it asked for emptied the socket (a stream socket hands
  // out all it holds, and nothing here asks for credentials, which would split reads).
  // The next read would only fail with EAGAIN: instead, start watching for readability
  // now. Nothing polls the event loop between that read and this registration, so no
  // arrival can slip by unseen; one that came meanwhile is reported at the next poll.
  // Not when the last event already said the peer shut down: that edge is spent, and
  // only another read tells the end.
  void note_read(size_t got, size_t asked) {
    bool peer_done = false;
    KJ_IF_MAYBE(at_end, readable_.atEndHint()) { peer_done = *at_end; }
    if (got < asked && !drained_ && !peer_done) {
      drained_ = true;
      readable_latch_ = readable_.whenBecomesReadable();
    }
  }

  // Resolves when the socket may have bytes again.
  kj::Promise<void> when_readable() {
    if (drained_) {
      drained_ = false;
      return kj::mv(readable_latch_);
    }
    return readable_.whenBecomesReadable();
  }

  // The message of `size` bytes at the front of the buffer, or (when it is larger than
  // what the buffer holds) its start, with the rest read straight into its own words.
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
      if (drained_) {
        return when_readable().then([this, words = kj::mv(words), have, options]() mutable {
          return read_rest(kj::mv(words), have, options);
        });
      }
      ssize_t n = ::read(fd_.get(), out + have, size - have);
      if (n > 0) {
        note_read(static_cast<size_t>(n), size - have);
        have += static_cast<size_t>(n);
      } else if (n == 0) {
        return KJ_EXCEPTION(DISCONNECTED, "the peer closed the connection in the middle of a message");
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return when_readable().then([this, words = kj::mv(words), have, options]() mutable {
          return read_rest(kj::mv(words), have, options);
        });
      } else if (errno != EINTR) {
        return socket_error("read", errno);
      }
    }
    return reader_owning(kj::mv(words), options);
  }

  // Sends what was gathered at the end of this turn of the event loop (or when the socket
  // has room again); a writer that has gathered too much waits for the socket.
  kj::Promise<void> after_append() {
    if (!flush_scheduled_ && !waiting_for_room_) {
      flush_scheduled_ = true;
      flushes_.add(kj::evalLast([this] {
        flush_scheduled_ = false;
        return flush();
      }));
    }
    if (gathered_.size() - sent_ > kBacklogBytes) return drained(kBacklogBytes);
    return kj::READY_NOW;
  }

  kj::Promise<void> flush() {
    while (sent_ < gathered_.size()) {
      ssize_t n = ::send(fd_.get(), gathered_.data() + sent_, gathered_.size() - sent_, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) {
        sent_ += static_cast<size_t>(n);
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        waiting_for_room_ = true;
        wake_drained_waiters();
        return when_writable().then([this] {
          waiting_for_room_ = false;
          return flush();
        });
      } else if (errno != EINTR) {
        fail(socket_error("send", errno));
        return kj::READY_NOW;
      }
    }
    gathered_.clear();
    sent_ = 0;
    wake_drained_waiters();
    return kj::READY_NOW;
  }

  // Resolves once no more than `limit` gathered bytes wait for the socket.
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
    failure_ = kj::cp(error);
    for (auto& waiter : drained_waiters_) waiter.fulfiller->reject(kj::cp(error));
    drained_waiters_.clear();
  }

  // Resolves when the socket has room, watching a duplicate of it for writes only (the
  // descriptor itself is registered for reads).
  kj::Promise<void> when_writable() {
    struct WriteWatch {
      WriteWatch(kj::UnixEventPort& port, int fd)
          : copy(fd), observer(port, fd, kj::UnixEventPort::FdObserver::OBSERVE_WRITE) {}
      kj::AutoCloseFd copy;                    // closed after
      kj::UnixEventPort::FdObserver observer;  // the observer unregisters it
    };
    int copy = retry_syscall("dup", [&] { return ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0); });
    auto watch = kj::heap<WriteWatch>(port_, copy);
    auto writable = watch->observer.whenBecomesWritable();
    return writable.attach(kj::mv(watch));
  }

  struct DrainedWaiter {
    size_t limit;
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };

  kj::UnixEventPort& port_;
  kj::AutoCloseFd fd_;  // declared before its observer: closed after it unregisters
  kj::UnixEventPort::FdObserver readable_;

  bool drained_ = false;                        // the last read emptied the socket
  kj::Promise<void> readable_latch_ = nullptr;  // armed then: new bytes since
  kj::Array<capnp::word> buffer_;               // bytes read, messages not yet handed out
  size_t begin_ = 0;               // in bytes
  size_t end_ = 0;

  std::vector<kj::byte> gathered_;  // messages written, not yet all taken by the socket
  size_t sent_ = 0;                 // how much of gathered_ the socket took
  bool flush_scheduled_ = false;
  bool waiting_for_room_ = false;
  kj::Maybe<kj::Exception> failure_;
  std::vector<DrainedWaiter> drained_waiters_;
  IgnoreFlushErrors ignore_flush_errors_;
  kj::TaskSet flushes_;  // last: cancelled before anything it uses goes
};

}  // namespace

int take_socket(kj::Own<kj::AsyncIoStream> stream) {
  int fd = -1;
  KJ_IF_MAYBE(inner, stream->getFd()) { fd = *inner; }
  if (fd < 0) kj::throwFatalException(KJ_EXCEPTION(FAILED, "the stream has no socket to take"));
  int copy = retry_syscall("dup", [&] { return ::fcntl(fd, F_DUPFD_CLOEXEC, 0); });
  stream = nullptr;  // closes the original and takes it out of the event loop
  return copy;
}

kj::Own<capnp::MessageStream> socket_message_stream(kj::UnixEventPort& port, int fd) {
  int flags = retry_syscall("fcntl", [&] { return ::fcntl(fd, F_GETFL); });
  retry_syscall("fcntl", [&] { return ::fcntl(fd, F_SETFL, flags | O_NONBLOCK); });
  retry_syscall("fcntl", [&] { return ::fcntl(fd, F_SETFD, FD_CLOEXEC); });
  return kj::heap<SocketMessageStream>(port, fd);
}

}  // namespace xproc::rpc
