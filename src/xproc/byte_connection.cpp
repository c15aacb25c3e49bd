// Implementation of byte_connection.h: CPython's framing over a buffered fd.
#include "xproc/byte_connection.h"

#include <arpa/inet.h>
#include <endian.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <utility>

#include "xproc/errors.h"
#include "xproc/poll_internal.h"
#include "xproc/ring_pipe_internal.h"

namespace xproc {

bool detail::sigpipe_ignored() {
  struct sigaction action {};
  return sigaction(SIGPIPE, nullptr, &action) == 0 && action.sa_handler == SIG_IGN;
}

namespace {

constexpr size_t kBufferSize = 64 * 1024;
constexpr size_t kGrowStep = 16u << 20;  // large messages grow by this as bytes arrive

[[noreturn]] void throw_write_error(int error_number) {
  if (error_number == EPIPE || error_number == ECONNRESET) {
    throw BrokenPipeError("the other end of the connection is closed");
  }
  throw_os_error("write", error_number);
}

// Around a write to `fd`: when it is a pipe and SIGPIPE is not ignored, blocks SIGPIPE in
// this thread and swallows the one the write raised, so a closed reader surfaces as EPIPE
// instead of killing the process. Sockets need nothing (MSG_NOSIGNAL).
class SigpipeGuard {
 public:
  explicit SigpipeGuard(bool is_socket) : active_(!is_socket && !detail::sigpipe_ignored()) {
    if (!active_) return;
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeGuard() {
    if (!active_) return;
    if (raised_ && !was_pending_) {
      timespec zero{};
      while (sigtimedwait(&pipe_, nullptr, &zero) == -1 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;
  // Call with the write's errno when it failed.
  void failed(int error_number) { raised_ = error_number == EPIPE; }

 private:
  const bool active_;
  sigset_t pipe_{}, old_{};
  bool was_pending_ = false;
  bool raised_ = false;
};

}  // namespace

ByteConnection::ByteConnection(int fd, bool readable, bool writable, ConnectionOptions options)
    : fd_(fd), readable_(readable), writable_(writable), options_(options) {
  struct stat st {};
  is_socket_ = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
  const int flags = fcntl(fd, F_GETFL);
  nonblocking_ = flags >= 0 && (flags & O_NONBLOCK) != 0;
}

ByteConnection::ByteConnection(ByteConnection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      readable_(other.readable_),
      writable_(other.writable_),
      is_socket_(other.is_socket_),
      nonblocking_(other.nonblocking_),
      options_(other.options_),
      buffer_(std::move(other.buffer_)),
      buffer_begin_(std::exchange(other.buffer_begin_, 0)),
      buffer_end_(std::exchange(other.buffer_end_, 0)),
      send_buffer_(std::move(other.send_buffer_)),
      unsent_begin_(std::exchange(other.unsent_begin_, 0)),
      unsent_end_(std::exchange(other.unsent_end_, 0)),
      ring_(std::move(other.ring_)) {}

ByteConnection& ByteConnection::operator=(ByteConnection&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    readable_ = other.readable_;
    writable_ = other.writable_;
    is_socket_ = other.is_socket_;
    nonblocking_ = other.nonblocking_;
    options_ = other.options_;
    buffer_ = std::move(other.buffer_);
    buffer_begin_ = std::exchange(other.buffer_begin_, 0);
    buffer_end_ = std::exchange(other.buffer_end_, 0);
    send_buffer_ = std::move(other.send_buffer_);
    unsent_begin_ = std::exchange(other.unsent_begin_, 0);
    unsent_end_ = std::exchange(other.unsent_end_, 0);
    ring_ = std::move(other.ring_);
  }
  return *this;
}

ByteConnection::~ByteConnection() { close(); }

void ByteConnection::close() noexcept {
  ring_.reset();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffer_begin_ = buffer_end_ = 0;
  unsent_begin_ = unsent_end_ = 0;
}

int ByteConnection::fileno() const {
  require_open();
  if (ring_) return ring_fileno();
  return fd_;
}

int ByteConnection::wait_fileno() const {
  require_open();
  return ring_ ? ring_epoll_fd() : fd_;
}

void ByteConnection::require_open() const {
  if (fd_ < 0) throw OSError("handle is closed", EBADF);
}

ssize_t ByteConnection::write_now(const std::byte* data, size_t n) {
  if (!is_socket_ && !nonblocking_) {  // a blocking pipe: only a waiting write exists
    errno = EAGAIN;
    return -1;
  }
  ssize_t r;
  do {
    r = is_socket_ ? ::send(fd_, data, n, MSG_NOSIGNAL | MSG_DONTWAIT) : ::write(fd_, data, n);
  } while (r < 0 && errno == EINTR);
  return r;
}

ssize_t ByteConnection::read_now(std::byte* out, size_t n) {
  if (!is_socket_ && !nonblocking_) {
    errno = EAGAIN;
    return -1;
  }
  ssize_t r;
  do {
    r = is_socket_ ? ::recv(fd_, out, n, MSG_DONTWAIT) : ::read(fd_, out, n);
  } while (r < 0 && errno == EINTR);
  return r;
}

void ByteConnection::wait_until_ready(short events) const {
  pollfd ready{fd_, events, 0};
  while (::poll(&ready, 1, -1) < 0) {
    if (errno != EINTR) throw_os_error("poll", errno);
  }
}

void ByteConnection::writev_all(iovec* iov, int count) {
  SigpipeGuard guard(is_socket_);
  while (count > 0) {
    ssize_t n;
    if (is_socket_) {
      if (count == 1) {  // send() skips sendmsg's iovec import: a quarter faster for small frames
        n = ::send(fd_, iov->iov_base, iov->iov_len, MSG_NOSIGNAL);
      } else {
        msghdr message{};
        message.msg_iov = iov;
        message.msg_iovlen = static_cast<size_t>(count);
        n = sendmsg(fd_, &message, MSG_NOSIGNAL);
      }
    } else {
      n = count == 1 ? ::write(fd_, iov->iov_base, iov->iov_len) : writev(fd_, iov, count);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {  // a non-blocking fd that is full
        wait_until_ready(POLLOUT);
        continue;
      }
      guard.failed(errno);
      throw_write_error(errno);
    }
    auto written = static_cast<size_t>(n);
    while (count > 0 && written >= iov->iov_len) {
      written -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + written;
      iov->iov_len -= written;
    }
  }
}

std::span<const std::byte> ByteConnection::message_slice(std::span<const std::byte> buf, size_t offset,
                                                         std::optional<size_t> size) {
  if (offset > buf.size()) throw ValueError("offset is negative or larger than the buffer");
  const size_t n = size.value_or(buf.size() - offset);
  if (n > buf.size() - offset) throw ValueError("buffer length < offset + size");
  return buf.subspan(offset, n);
}

void ByteConnection::send_bytes(std::span<const std::byte> buf, size_t offset, std::optional<size_t> size) {
  const std::span<const std::byte> part = message_slice(buf, offset, size);
  send_parts({&part, 1});
}

void ByteConnection::send_parts(std::span<const std::span<const std::byte>> parts) {
  finish_send();  // frames go out whole and in order
  size_t total = 0;
  for (auto part : parts) total += part.size();
  if (ring_ && total > ring_->pipe->inline_limit) {
    ring_ready_to_send();
    ring_send_large(parts, total);
    return;
  }
  if (ring_) {
    send_in_place(total, [&](std::byte* at) {
      for (auto part : parts) {
        if (!part.empty()) std::memcpy(at, part.data(), part.size());
        at += part.size();
      }
    });
    return;
  }
  if (total <= kSmallFrameLimit) {
    std::byte* at = small_frame(total);
    for (auto part : parts) {
      if (!part.empty()) std::memcpy(at, part.data(), part.size());
      at += part.size();
    }
    write_small_frame(total, true);
    return;
  }
  require_open();
  if (!writable_) throw OSError("connection is read-only", EBADF);
  unsigned char header[12];
  size_t header_size;
  if (total > 0x7fffffff) {
    const int32_t marker = htonl(static_cast<uint32_t>(-1));
    const uint64_t length = htobe64(total);
    std::memcpy(header, &marker, 4);
    std::memcpy(header + 4, &length, 8);
    header_size = 12;
  } else {
    const uint32_t length = htonl(static_cast<uint32_t>(total));
    std::memcpy(header, &length, 4);
    header_size = 4;
  }
  std::vector<iovec> iov;
  iov.reserve(parts.size() + 1);
  iov.push_back({header, header_size});
  for (auto part : parts) {
    if (!part.empty()) iov.push_back({const_cast<std::byte*>(part.data()), part.size()});
  }
  writev_all(iov.data(), static_cast<int>(iov.size()));
}

std::byte* ByteConnection::small_frame(size_t size) {
  require_open();
  if (!writable_) throw OSError("connection is read-only", EBADF);
  if (unsent_begin_ < unsent_end_) throw ValueError("finish_send() first: an earlier frame is still unsent");
  if (size > kSmallFrameLimit)
    throw ValueError("frame of " + std::to_string(size) + " bytes is over the small-frame limit");
  if (send_buffer_.empty()) send_buffer_.resize(8 + kSmallFrameLimit);
  const uint32_t length = htonl(static_cast<uint32_t>(size));
  std::memcpy(send_buffer_.data() + 4, &length, 4);
  return send_buffer_.data() + 8;
}

bool ByteConnection::write_small_frame(size_t size, bool block) {
  // One plain send() of a contiguous frame is markedly cheaper for the kernel than a
  // gathered sendmsg().
  const size_t begin = 4;
  const size_t end = 8 + size;
  if (block) {
    iovec whole{send_buffer_.data() + begin, end - begin};
    writev_all(&whole, 1);
    return true;
  }
  SigpipeGuard guard(is_socket_);
  const ssize_t n = write_now(send_buffer_.data() + begin, end - begin);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    guard.failed(errno);
    throw_write_error(errno);
  }
  const size_t sent = n > 0 ? static_cast<size_t>(n) : 0;
  if (begin + sent == end) return true;
  // The fd cannot take all of it now: the rest waits for finish_send().
  unsent_begin_ = begin + sent;
  unsent_end_ = end;
  return false;
}

void ByteConnection::finish_send() {
  if (unsent_begin_ == unsent_end_) return;
  require_open();
  if (ring_) {  // a frame try_send_in_place could not put into a full ring: its payload
    const size_t size = unsent_end_ - unsent_begin_ - 4;
    const std::byte* payload = send_buffer_.data() + unsent_begin_ + 4;
    unsent_begin_ = unsent_end_ = 0;
    auto copy = [&](std::byte* out) { std::memcpy(out, payload, size); };
    ring_send(size, &call_with<decltype(copy), std::byte*>, &copy);
    return;
  }
  iovec rest{send_buffer_.data() + unsent_begin_, unsent_end_ - unsent_begin_};
  unsent_begin_ = unsent_end_ = 0;  // a failed write leaves the stream broken either way
  writev_all(&rest, 1);
}

bool ByteConnection::read_exact(std::byte* out, size_t n, bool eof_ok) {
  size_t got = 0;
  while (got < n) {
    if (buffer_begin_ < buffer_end_) {
      const size_t take = std::min(n - got, buffer_end_ - buffer_begin_);
      std::memcpy(out + got, buffer_.data() + buffer_begin_, take);
      buffer_begin_ += take;
      got += take;
      continue;
    }
    // Large remainders go straight to the destination; small ones through the buffer so
    // that many small messages cost one read().
    const bool direct = n - got >= kBufferSize;
    if (!direct && buffer_.size() < kBufferSize) buffer_.resize(kBufferSize);
    const ssize_t r = direct ? ::read(fd_, out + got, n - got) : read_into_buffer();
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {  // a non-blocking fd with nothing yet
        wait_until_ready(POLLIN);
        continue;
      }
      if (errno == ECONNRESET) throw EOFError("connection reset by peer");
      throw_os_error("read", errno);
    }
    if (r == 0) {
      if (got == 0 && eof_ok) return false;
      throw EOFError(got == 0 ? "the other end closed the connection"
                              : "the other end closed the connection in the middle of a message");
    }
    if (direct) {
      got += static_cast<size_t>(r);
    } else {
      buffer_begin_ = 0;
      buffer_end_ = static_cast<size_t>(r);
    }
  }
  return true;
}

ssize_t ByteConnection::read_into_buffer() {
  // poll() rather than a non-waiting recv(): a socket's send() takes the same lock as
  // recv(), poll() looks at the queue without it.
  const auto spin_end = std::chrono::steady_clock::now() + std::chrono::nanoseconds(spin_ns_);
  bool ready;
  do {
    pollfd wanted{fd_, POLLIN, 0};
    ready = ::poll(&wanted, 1, 0) > 0;
  } while (!ready && std::chrono::steady_clock::now() < spin_end);
  spin_ns_ = ready ? std::min(kMaxSpinNs, spin_ns_ * 2) : std::max(kMinSpinNs, spin_ns_ / 2);
  if (nonblocking_ && !ready) wait_until_ready(POLLIN);  // a blocking fd waits in read()
  return ::read(fd_, buffer_.data(), buffer_.size());
}

size_t ByteConnection::read_frame_length(size_t limit) {
  require_open();
  if (!readable_) throw OSError("connection is write-only", EBADF);
  unsigned char header[4];
  if (!read_exact(reinterpret_cast<std::byte*>(header), 4, true)) {
    throw EOFError("the other end closed the connection");
  }
  int32_t length;
  std::memcpy(&length, header, 4);
  length = static_cast<int32_t>(ntohl(static_cast<uint32_t>(length)));
  uint64_t size = static_cast<uint64_t>(length);
  if (length == -1) {
    uint64_t big;
    read_exact(reinterpret_cast<std::byte*>(&big), 8, false);
    size = be64toh(big);
  } else if (length < 0) {
    close();
    throw OSError("bad message length " + std::to_string(length), EPROTO);
  }
  if (size > limit) {
    close();  // the stream cannot be resynchronised without reading the whole frame
    throw OSError("bad message length " + std::to_string(size) + " (limit " + std::to_string(limit) + ")", EMSGSIZE);
  }
  return static_cast<size_t>(size);
}

std::optional<std::span<const std::byte>> ByteConnection::take_buffered_frame() {
  if (fd_ < 0 || !readable_) return std::nullopt;         // recv_bytes raises the error
  auto complete_frame = [&]() -> std::optional<size_t> {  // its payload size, if all buffered
    const size_t have = buffer_end_ - buffer_begin_;
    if (have < 4) return std::nullopt;
    uint32_t length;
    std::memcpy(&length, buffer_.data() + buffer_begin_, 4);
    const int32_t size = static_cast<int32_t>(ntohl(length));
    if (size < 0 || static_cast<size_t>(size) > options_.max_message_bytes) return std::nullopt;
    if (have - 4 < static_cast<size_t>(size)) return std::nullopt;
    return static_cast<size_t>(size);
  };
  auto size = complete_frame();
  if (!size) {
    if (buffer_.size() < kBufferSize) buffer_.resize(kBufferSize);
    if (buffer_begin_ > 0) {  // keep the partial frame at the front, room behind it
      std::memmove(buffer_.data(), buffer_.data() + buffer_begin_, buffer_end_ - buffer_begin_);
      buffer_end_ -= buffer_begin_;
      buffer_begin_ = 0;
    }
    if (buffer_end_ < buffer_.size()) {
      const ssize_t r = read_now(buffer_.data() + buffer_end_, buffer_.size() - buffer_end_);
      if (r > 0) buffer_end_ += static_cast<size_t>(r);
      size = complete_frame();
    }
  }
  if (!size) return std::nullopt;
  const std::span<const std::byte> payload{buffer_.data() + buffer_begin_ + 4, *size};
  buffer_begin_ += 4 + *size;
  return payload;
}

std::vector<std::byte> ByteConnection::recv_bytes(std::optional<size_t> maxlength) {
  const size_t limit = std::min(maxlength.value_or(options_.max_message_bytes), options_.max_message_bytes);
  if (ring_) {
    std::vector<std::byte> out;
    auto keep = [&](std::span<const std::byte> payload) { out.assign(payload.begin(), payload.end()); };
    ring_recv(&call_with<decltype(keep), std::span<const std::byte>>, &keep, limit, &out);
    return out;
  }
  const size_t size = read_frame_length(limit);
  std::vector<std::byte> out;
  // Grow with the bytes that actually arrive: a peer claiming a huge length and then
  // closing costs us nothing.
  while (out.size() < size) {
    const size_t at = out.size();
    out.resize(std::min(size, at + kGrowStep));
    read_exact(out.data() + at, out.size() - at, false);
  }
  return out;
}

size_t ByteConnection::recv_bytes_into(std::span<std::byte> buffer, size_t offset) {
  if (offset > buffer.size()) throw ValueError("negative offset or offset beyond the buffer");
  auto message = recv_bytes();
  if (message.size() > buffer.size() - offset) {
    throw BufferTooShort(std::string(reinterpret_cast<const char*>(message.data()), message.size()));
  }
  if (!message.empty()) std::memcpy(buffer.data() + offset, message.data(), message.size());
  return message.size();
}

bool ByteConnection::poll(Timeout timeout) {
  require_open();
  if (!readable_) throw OSError("connection is write-only", EBADF);
  if (ring_) return ring_poll(timeout);
  if (buffer_begin_ < buffer_end_) return true;
  const auto deadline = ByteQueue::deadline(true, timeout);
  for (;;) {
    const int ms = detail::poll_milliseconds(deadline);
    pollfd fd{fd_, POLLIN, 0};
    const int r = ::poll(&fd, 1, ms);
    if (r > 0) return true;  // data, or EOF/error that recv will report
    if (r == 0) return false;
    if (errno != EINTR) throw_os_error("poll", errno);
  }
}

bool ByteConnection::ready_or_wait_fds(std::vector<int>& fds) {
  if (ring_) {
    if (poll(std::chrono::seconds(0))) return true;  // and armed: a send from now on wakes us
    fds.push_back(ring_->rx_wake_fd());
    fds.push_back(fd_);
    return false;
  }
  if (buffer_begin_ < buffer_end_) return true;
  fds.push_back(fd_);
  return false;
}

}  // namespace xproc
