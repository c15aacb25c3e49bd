// Fd: an owned file descriptor, closed when the Fd goes. Move-only, like the descriptor
// itself: exactly one owner closes it. Every descriptor xproc opens lives in one from the
// moment it exists, so no error path leaks one.
#pragma once

#include <unistd.h>

#include <utility>

namespace xproc {

class Fd {
 public:
  Fd() noexcept = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

  // Hands the descriptor over to a new owner (a binding, another process's table).
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

  // Closes the descriptor held (if any) and holds `fd` instead. close() is not retried on
  // EINTR: on Linux the descriptor is released whatever close() returns, and a retry could
  // close a descriptor another thread was just given.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace xproc
