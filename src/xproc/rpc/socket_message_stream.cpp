// See socket_message_stream.h.
#include "xproc/rpc/socket_message_stream.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "xproc/errors.h"
#include "xproc/rpc/buffered_message_stream.h"
#include "xproc/syscall_internal.h"

namespace xproc::rpc {
namespace {

kj::Exception socket_error(const char* call, int error_number) {
  // The peer going away ends the connection the way kj's own streams report it.
  bool gone = error_number == ECONNRESET || error_number == EPIPE || error_number == ENOTCONN;
  return kj::Exception(gone ? kj::Exception::Type::DISCONNECTED : kj::Exception::Type::FAILED, __FILE__, __LINE__,
                       kj::str(call, ": ", strerror(error_number)));
}

class SocketMessageStream final : public BufferedMessageStream {
 public:
  SocketMessageStream(kj::UnixEventPort& port, Fd fd, MessageGuard* guard)
      : BufferedMessageStream(guard),
        port_(port),
        fd_(std::move(fd)),
        readable_(port, fd_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ) {}
  ~SocketMessageStream() { cancel_flushes(); }

  kj::Maybe<int> getSendBufferSize() override {
    int size = 0;
    socklen_t length = sizeof(size);
    if (::getsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUF, &size, &length) < 0) return nullptr;
    return size;
  }

 private:
  Read read_some(kj::byte* out, size_t size) override {
    if (drained_) return {Read::kNone};
    const ssize_t n = detail::retry_on_eintr([&] { return ::read(fd_.get(), out, size); });
    if (n > 0) {
      note_read(static_cast<size_t>(n), size);
      return {Read::kBytes, static_cast<size_t>(n)};
    }
    if (n == 0) return {Read::kEnd};
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {Read::kNone};
    kj::throwFatalException(socket_error("read", errno));
  }

  // A read that returned less than it asked for emptied the socket (a stream socket hands
  // out all it holds, and nothing here asks for credentials, which would split reads).
  // The next read would only fail with EAGAIN: instead, start watching for readability
  // now. Nothing polls the event loop between that read and this registration, so no
  // arrival can slip by unseen; one that came meanwhile is reported at the next poll.
  // Not when the last event already said the peer shut down: that edge is spent, and
  // only another read tells the end.
  void note_read(size_t got, size_t asked) {
    bool peer_done = false;
    KJ_IF_MAYBE (at_end, readable_.atEndHint()) {
      peer_done = *at_end;
    }
    if (got < asked && !drained_ && !peer_done) {
      drained_ = true;
      readable_latch_ = readable_.whenBecomesReadable();
    }
  }

  kj::Promise<void> readable() override {
    if (drained_) {
      drained_ = false;
      return kj::mv(readable_latch_);
    }
    return readable_.whenBecomesReadable();
  }

  size_t write_some(const kj::byte* data, size_t size) override {
    const ssize_t n =
        detail::retry_on_eintr([&] { return ::send(fd_.get(), data, size, MSG_NOSIGNAL | MSG_DONTWAIT); });
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    kj::throwFatalException(socket_error("send", errno));
  }

  // Resolves when the socket has room, watching a duplicate of it for writes only (the
  // descriptor itself is registered for reads).
  kj::Promise<void> writable() override {
    struct WriteWatch {
      WriteWatch(kj::UnixEventPort& port, Fd fd)
          : copy(std::move(fd)), observer(port, copy.get(), kj::UnixEventPort::FdObserver::OBSERVE_WRITE) {}
      Fd copy;                                 // closed after
      kj::UnixEventPort::FdObserver observer;  // the observer unregisters it
    };
    Fd copy(detail::retry_syscall("dup", [&] { return ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0); }));
    auto watch = kj::heap<WriteWatch>(port_, std::move(copy));
    auto writable = watch->observer.whenBecomesWritable();
    return writable.attach(kj::mv(watch));
  }

  void shutdown_write() override { ::shutdown(fd_.get(), SHUT_WR); }

  kj::UnixEventPort& port_;
  Fd fd_;  // declared before its observer: closed after it unregisters
  kj::UnixEventPort::FdObserver readable_;
  bool drained_ = false;                        // the last read emptied the socket
  kj::Promise<void> readable_latch_ = nullptr;  // armed then: new bytes since
};

}  // namespace

Fd take_socket(kj::Own<kj::AsyncIoStream> stream) {
  int fd = -1;
  KJ_IF_MAYBE (inner, stream->getFd()) {
    fd = *inner;
  }
  if (fd < 0) kj::throwFatalException(KJ_EXCEPTION(FAILED, "the stream has no socket to take"));
  Fd copy(detail::retry_syscall("dup", [&] { return ::fcntl(fd, F_DUPFD_CLOEXEC, 0); }));
  stream = nullptr;  // closes the original and takes it out of the event loop
  return copy;
}

kj::Own<capnp::MessageStream> socket_message_stream(kj::UnixEventPort& port, int fd, MessageGuard* guard) {
  Fd owned(fd);
  int flags = detail::retry_syscall("fcntl", [&] { return ::fcntl(owned.get(), F_GETFL); });
  detail::retry_syscall("fcntl", [&] { return ::fcntl(owned.get(), F_SETFL, flags | O_NONBLOCK); });
  detail::retry_syscall("fcntl", [&] { return ::fcntl(owned.get(), F_SETFD, FD_CLOEXEC); });
  return kj::heap<SocketMessageStream>(port, std::move(owned), guard);
}

}  // namespace xproc::rpc
