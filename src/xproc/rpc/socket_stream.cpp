// See socket_stream.h.
#include "xproc/rpc/socket_stream.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <climits>
#include <cerrno>
#include <vector>

#include "xproc/errors.h"

namespace xproc::rpc {
namespace {

// Closes the descriptor last: declared first in SocketStream, so its observer (which
// unregisters the descriptor) is gone before it closes.
struct OwnedFd {
  explicit OwnedFd(int fd_) : fd(fd_) {}
  ~OwnedFd() { ::close(fd); }
  KJ_DISALLOW_COPY(OwnedFd);
  int fd;
};

[[noreturn]] void throw_socket_error(const char* call, int error_number) {
  // The peer going away ends the connection the way kj's own streams report it.
  bool gone = error_number == ECONNRESET || error_number == EPIPE || error_number == ENOTCONN;
  kj::throwFatalException(kj::Exception(gone ? kj::Exception::Type::DISCONNECTED : kj::Exception::Type::FAILED,
                                        __FILE__, __LINE__, kj::str(call, ": ", strerror(error_number))));
}

class SocketStream final : public kj::AsyncIoStream {
 public:
  SocketStream(kj::UnixEventPort& port, int fd)
      : port_(port), fd_(fd), readable_(port, fd, kj::UnixEventPort::FdObserver::OBSERVE_READ) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    return read_from(static_cast<kj::byte*>(buffer), min_bytes, max_bytes, 0);
  }

  kj::Promise<void> write(const void* buffer, size_t size) override {
    kj::ArrayPtr<const kj::byte> piece(static_cast<const kj::byte*>(buffer), size);
    return write(kj::arrayPtr(&piece, 1));
  }

  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    std::vector<iovec> rest;
    rest.reserve(pieces.size());
    for (auto piece : pieces) {
      if (piece.size() > 0) rest.push_back(iovec{const_cast<kj::byte*>(piece.begin()), piece.size()});
    }
    return write_rest(kj::mv(rest), 0);
  }

  kj::Promise<void> whenWriteDisconnected() override { return readable_.whenWriteDisconnected(); }
  void shutdownWrite() override { ::shutdown(fd_.fd, SHUT_WR); }
  void abortRead() override { ::shutdown(fd_.fd, SHUT_RD); }
  kj::Maybe<int> getFd() const override { return fd_.fd; }

  void getsockopt(int level, int option, void* value, kj::uint* length) override {
    socklen_t size = *length;
    if (::getsockopt(fd_.fd, level, option, value, &size) < 0) throw_socket_error("getsockopt", errno);
    *length = size;
  }
  void setsockopt(int level, int option, const void* value, kj::uint length) override {
    if (::setsockopt(fd_.fd, level, option, value, length) < 0) throw_socket_error("setsockopt", errno);
  }
  void getsockname(struct sockaddr* address, kj::uint* length) override {
    socklen_t size = *length;
    if (::getsockname(fd_.fd, address, &size) < 0) throw_socket_error("getsockname", errno);
    *length = size;
  }
  void getpeername(struct sockaddr* address, kj::uint* length) override {
    socklen_t size = *length;
    if (::getpeername(fd_.fd, address, &size) < 0) throw_socket_error("getpeername", errno);
    *length = size;
  }

 private:
  // Reads until `min_bytes` are in (or the peer closed), waiting for the socket between.
  kj::Promise<size_t> read_from(kj::byte* buffer, size_t min_bytes, size_t max_bytes, size_t got) {
    while (got < min_bytes) {
      ssize_t n = ::read(fd_.fd, buffer + got, max_bytes - got);
      if (n > 0) {
        got += static_cast<size_t>(n);
      } else if (n == 0) {
        return got;  // end of stream
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return readable_.whenBecomesReadable().then(
            [this, buffer, min_bytes, max_bytes, got] { return read_from(buffer, min_bytes, max_bytes, got); });
      } else if (errno != EINTR) {
        throw_socket_error("read", errno);
      }
    }
    return got;
  }

  // Sends what `rest` holds from `first` on; waits for room only when the socket is full.
  kj::Promise<void> write_rest(std::vector<iovec> rest, size_t first) {
    while (first < rest.size()) {
      msghdr message{};
      message.msg_iov = rest.data() + first;
      message.msg_iovlen = std::min<size_t>(rest.size() - first, IOV_MAX);
      // MSG_NOSIGNAL: a peer that went away is an error here, never a SIGPIPE.
      ssize_t n = ::sendmsg(fd_.fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) {
        auto sent = static_cast<size_t>(n);
        while (first < rest.size() && sent >= rest[first].iov_len) sent -= rest[first++].iov_len;
        if (sent > 0) {
          rest[first].iov_base = static_cast<kj::byte*>(rest[first].iov_base) + sent;
          rest[first].iov_len -= sent;
        }
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return when_writable().then(
            [this, rest = kj::mv(rest), first]() mutable { return write_rest(kj::mv(rest), first); });
      } else if (errno != EINTR) {
        throw_socket_error("sendmsg", errno);
      }
    }
    return kj::READY_NOW;
  }

  // Resolves when the socket has room, watching a duplicate of it for writes only (the
  // descriptor itself is registered for reads).
  kj::Promise<void> when_writable() {
    struct WriteWatch {
      WriteWatch(kj::UnixEventPort& port, int fd)
          : copy(fd), observer(port, fd, kj::UnixEventPort::FdObserver::OBSERVE_WRITE) {}
      OwnedFd copy;                                // closed after
      kj::UnixEventPort::FdObserver observer;      // the observer unregisters it
    };
    int copy = retry_syscall("dup", [&] { return ::fcntl(fd_.fd, F_DUPFD_CLOEXEC, 0); });
    auto watch = kj::heap<WriteWatch>(port_, copy);
    auto writable = watch->observer.whenBecomesWritable();
    return writable.attach(kj::mv(watch));
  }

  kj::UnixEventPort& port_;
  OwnedFd fd_;
  kj::UnixEventPort::FdObserver readable_;
};

}  // namespace

kj::Own<kj::AsyncIoStream> wrap_socket(kj::UnixEventPort& port, int fd) {
  int flags = retry_syscall("fcntl", [&] { return ::fcntl(fd, F_GETFL); });
  retry_syscall("fcntl", [&] { return ::fcntl(fd, F_SETFL, flags | O_NONBLOCK); });
  retry_syscall("fcntl", [&] { return ::fcntl(fd, F_SETFD, FD_CLOEXEC); });
  return kj::heap<SocketStream>(port, fd);
}

kj::Own<kj::AsyncIoStream> rewrap_socket(kj::UnixEventPort& port, kj::Own<kj::AsyncIoStream> stream) {
  int fd = -1;
  KJ_IF_MAYBE(inner, stream->getFd()) { fd = *inner; }
  if (fd < 0) return stream;  // not a socket kj made: keep it as it is
  int copy = retry_syscall("dup", [&] { return ::fcntl(fd, F_DUPFD_CLOEXEC, 0); });
  stream = nullptr;  // closes the original and takes it out of the event loop
  return wrap_socket(port, copy);
}

}  // namespace xproc::rpc
