// Implementation of stream_transport_internal.h: CPython's framing over a buffered fd.
#include "xproc/stream_transport_internal.h"

#include <arpa/inet.h>
#include <endian.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "xproc/errors.h"
#include "xproc/poll_internal.h"
#include "xproc/syscall_internal.h"

namespace xproc::detail {

bool sigpipe_ignored() {
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
  explicit SigpipeGuard(bool is_socket) : active_(!is_socket && !sigpipe_ignored()) {
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
      const timespec zero{};
      retry_on_eintr([&] { return sigtimedwait(&pipe_, nullptr, &zero); });
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

StreamTransport::StreamTransport(Fd fd, bool readable, bool writable, const ConnectionOptions& options)
    : ByteTransport(std::move(fd), readable, writable, options) {
  struct stat st {};
  is_socket_ = fstat(fd_.get(), &st) == 0 && S_ISSOCK(st.st_mode);
  const int flags = fcntl(fd_.get(), F_GETFL);
  nonblocking_ = flags >= 0 && (flags & O_NONBLOCK) != 0;
}

void StreamTransport::close() noexcept {
  fd_.reset();
  buffer_begin_ = buffer_end_ = 0;
  small_.clear();
}

ssize_t StreamTransport::write_now(const std::byte* data, size_t n) {
  if (!is_socket_ && !nonblocking_) {  // a blocking pipe: only a waiting write exists
    errno = EAGAIN;
    return -1;
  }
  return retry_on_eintr([&] {
    return is_socket_ ? ::send(fd_.get(), data, n, MSG_NOSIGNAL | MSG_DONTWAIT) : ::write(fd_.get(), data, n);
  });
}

ssize_t StreamTransport::read_now(std::byte* out, size_t n) {
  if (!is_socket_ && !nonblocking_) {
    errno = EAGAIN;
    return -1;
  }
  return retry_on_eintr(
      [&] { return is_socket_ ? ::recv(fd_.get(), out, n, MSG_DONTWAIT) : ::read(fd_.get(), out, n); });
}

void StreamTransport::wait_until_ready(short events) const {
  pollfd ready{fd_.get(), events, 0};
  retry_syscall("poll", [&] { return ::poll(&ready, 1, -1); });
}

void StreamTransport::writev_all(iovec* iov, int count) {
  SigpipeGuard guard(is_socket_);
  const int fd = fd_.get();
  while (count > 0) {
    const ssize_t n = retry_on_eintr([&]() -> ssize_t {
      if (!is_socket_) return count == 1 ? ::write(fd, iov->iov_base, iov->iov_len) : ::writev(fd, iov, count);
      // send() skips sendmsg's iovec import: a quarter faster for small frames.
      if (count == 1) return ::send(fd, iov->iov_base, iov->iov_len, MSG_NOSIGNAL);
      msghdr message{};
      message.msg_iov = iov;
      message.msg_iovlen = static_cast<size_t>(count);
      return ::sendmsg(fd, &message, MSG_NOSIGNAL);
    });
    if (n < 0) {
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

void StreamTransport::send_parts(std::span<const std::span<const std::byte>> parts, size_t total) {
  finish_send();  // frames go out whole and in order
  if (total <= ByteConnection::kSmallFrameLimit) {
    std::byte* at = small_.prepare(total);
    for (auto part : parts) {
      if (!part.empty()) std::memcpy(at, part.data(), part.size());
      at += part.size();
    }
    write_small_frame(total, true);
    return;
  }
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

void StreamTransport::send_in_place(size_t size, FillFn fill, void* ctx) {
  finish_send();
  if (size <= ByteConnection::kSmallFrameLimit) {
    fill(ctx, small_.prepare(size));
    write_small_frame(size, true);
    return;
  }
  std::vector<std::byte> payload(size);
  fill(ctx, payload.data());
  const std::span<const std::byte> part(payload);
  send_parts({&part, 1}, size);
}

bool StreamTransport::try_send_in_place(size_t size, FillFn fill, void* ctx) {
  fill(ctx, small_.prepare(size));
  return write_small_frame(size, false);
}

bool StreamTransport::write_small_frame(size_t size, bool block) {
  // One plain send() of a contiguous frame is markedly cheaper for the kernel than a
  // gathered sendmsg().
  const std::span<const std::byte> frame = small_.frame(size);
  if (block) {
    iovec whole{const_cast<std::byte*>(frame.data()), frame.size()};
    writev_all(&whole, 1);
    return true;
  }
  const size_t sent = write_some_now(frame);
  if (sent == frame.size()) return true;
  small_.keep(frame.subspan(sent));  // the fd cannot take all of it now
  return false;
}

size_t StreamTransport::write_some_now(std::span<const std::byte> bytes) {
  SigpipeGuard guard(is_socket_);
  const ssize_t n = write_now(bytes.data(), bytes.size());
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    guard.failed(errno);
    throw_write_error(errno);
  }
  return n > 0 ? static_cast<size_t>(n) : 0;
}

ByteConnection::SendAttempt StreamTransport::send_if_room(size_t size, FillFn fill, void* ctx) {
  if (!try_finish_send()) return ByteConnection::SendAttempt::kNoRoom;
  if (size > ByteConnection::kSmallFrameLimit || (!is_socket_ && !nonblocking_)) {
    send_in_place(size, fill, ctx);
    return ByteConnection::SendAttempt::kSent;
  }
  fill(ctx, small_.prepare(size));
  const std::span<const std::byte> frame = small_.frame(size);
  const size_t sent = write_some_now(frame);
  if (sent == frame.size()) return ByteConnection::SendAttempt::kSent;
  if (sent == 0) return ByteConnection::SendAttempt::kNoRoom;  // nothing kept: prepare() keeps nothing
  small_.keep(frame.subspan(sent));
  return ByteConnection::SendAttempt::kBegun;
}

bool StreamTransport::try_finish_send() {
  if (!small_.kept()) return true;
  if (!is_socket_ && !nonblocking_) {  // a blocking pipe has no write that does not wait
    finish_send();
    return true;
  }
  const std::span<const std::byte> rest = small_.take_kept();
  const size_t sent = write_some_now(rest);
  if (sent == rest.size()) return true;
  small_.keep(rest.subspan(sent));
  return false;
}

void StreamTransport::finish_send() {
  if (!small_.kept()) return;
  const std::span<const std::byte> rest = small_.take_kept();
  iovec whole{const_cast<std::byte*>(rest.data()), rest.size()};
  writev_all(&whole, 1);
}

bool StreamTransport::read_exact(std::byte* out, size_t n, bool eof_ok) {
  size_t got = 0;
  while (got < n) {
    if (buffered()) {
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
    const ssize_t r =
        retry_on_eintr([&] { return direct ? ::read(fd_.get(), out + got, n - got) : read_into_buffer(); });
    if (r < 0) {
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

ssize_t StreamTransport::read_into_buffer() {
  // poll() rather than a non-waiting recv(): a socket's send() takes the same lock as
  // recv(), poll() looks at the queue without it.
  const auto spin_end = std::chrono::steady_clock::now() + std::chrono::nanoseconds(read_spin_.next(kMaxSpinNs));
  bool ready;
  do {
    pollfd wanted{fd_.get(), POLLIN, 0};
    ready = ::poll(&wanted, 1, 0) > 0;
  } while (!ready && std::chrono::steady_clock::now() < spin_end);
  read_spin_.record(ready, kMaxSpinNs);
  if (nonblocking_ && !ready) wait_until_ready(POLLIN);  // a blocking fd waits in read()
  return ::read(fd_.get(), buffer_.data(), buffer_.size());
}

size_t StreamTransport::read_frame_length(size_t limit) {
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

std::optional<std::span<const std::byte>> StreamTransport::take_buffered_frame() {
  auto complete_frame = [&]() -> std::optional<size_t> {  // its payload size, if all buffered
    const size_t have = buffer_end_ - buffer_begin_;
    if (have < 4) return std::nullopt;
    uint32_t length;
    std::memcpy(&length, buffer_.data() + buffer_begin_, 4);
    const int32_t size = static_cast<int32_t>(ntohl(length));
    if (size < 0 || static_cast<size_t>(size) > options().max_message_bytes) return std::nullopt;
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

std::vector<std::byte> StreamTransport::recv_bytes(size_t limit) {
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

void StreamTransport::recv_in_place(ConsumeFn consume, void* ctx) {
  const std::vector<std::byte> message = recv_bytes(options().max_message_bytes);
  consume(ctx, message);
}

bool StreamTransport::try_recv_in_place(ConsumeFn consume, void* ctx) {
  const auto frame = take_buffered_frame();
  if (!frame) return false;
  consume(ctx, *frame);
  return true;
}

bool StreamTransport::poll(Timeout timeout) {
  if (buffered()) return true;
  const auto deadline = ByteQueue::deadline(true, timeout);
  pollfd ready{fd_.get(), POLLIN, 0};
  // (Readable: data, or EOF or an error that recv will report.)
  return retry_syscall("poll", [&] { return ::poll(&ready, 1, poll_milliseconds(deadline)); }) > 0;
}

bool StreamTransport::ready_or_wait_fds(std::vector<int>& fds) {
  if (buffered()) return true;
  fds.push_back(fd_.get());
  return false;
}

}  // namespace xproc::detail
