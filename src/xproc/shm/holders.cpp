// See holders.h. The fork handler runs in the child of a possibly multi-threaded parent,
// before fork() returns: everything it calls is a plain system call.
#include "xproc/shm/holders.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "xproc/errors.h"
#include "xproc/syscall_internal.h"

namespace xproc::shm {
namespace {

// A lock request over the tokens [first, first + count).
flock token_range(short type, uint64_t first, uint64_t count) {
  flock request{};
  request.l_type = type;
  request.l_whence = SEEK_SET;
  request.l_start = kHolderLockBase + static_cast<off_t>(first);
  request.l_len = static_cast<off_t>(count);
  return request;
}

int lock_call(int fd, int command, flock& request) noexcept {
  return detail::retry_on_eintr([&] { return ::fcntl(fd, command, &request); });
}

uint32_t random_token() noexcept {
  uint32_t bits = 0;
  if (::getrandom(&bits, sizeof(bits), GRND_NONBLOCK) != static_cast<ssize_t>(sizeof(bits))) {
    // No entropy pool yet (early boot): a collision costs a retry, nothing more.
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    bits = static_cast<uint32_t>(now.tv_nsec) * 2654435761u ^ static_cast<uint32_t>(::getpid()) << 16;
  }
  return bits % (kTokenLimit - 1) + 1;
}

// Locks a random free token on `fd`: the token, or 0 with `error` set.
uint32_t take_token(int fd, int& error) noexcept {
  // Another holder has a given token with odds of one in 2^31 per holder; sixteen misses
  // in a row mean a lock over all of them: `xproc cleanup` removing the segment.
  for (int attempt = 0; attempt < 16; ++attempt) {
    const uint32_t token = random_token();
    flock request = token_range(F_WRLCK, token, 1);
    if (lock_call(fd, F_OFD_SETLK, request) == 0) return token;
    if (errno != EAGAIN && errno != EACCES) {
      error = errno;
      return 0;
    }
  }
  error = EAGAIN;
  return 0;
}

// A descriptor of a new open file description of the file `fd` refers to (through /proc,
// which works for memfds and unlinked files alike); none when there is none to be had.
Fd reopen(int fd) noexcept {
  char path[32] = "/proc/self/fd/";
  char digits[12];
  int n = 0;
  for (unsigned value = static_cast<unsigned>(fd); n == 0 || value != 0; value /= 10)
    digits[n++] = static_cast<char>('0' + value % 10);
  size_t at = 14;
  while (n > 0) path[at++] = digits[--n];
  path[at] = '\0';
  return Fd(detail::retry_on_eintr([&] { return ::open(path, O_RDWR | O_CLOEXEC); }));
}

// The holders of this process, for the fork handler. The mutex is held across fork() so
// that the child's list is complete and not being changed.
pthread_mutex_t g_registry = PTHREAD_MUTEX_INITIALIZER;
Holder* g_holders = nullptr;
pthread_once_t g_fork_handler_once = PTHREAD_ONCE_INIT;

void lock_registry() noexcept { pthread_mutex_lock(&g_registry); }
void unlock_registry() noexcept { pthread_mutex_unlock(&g_registry); }

}  // namespace

void renew_holders_after_fork() noexcept {
  for (Holder* holder = g_holders; holder != nullptr; holder = holder->next_) holder->renew_after_fork();
  unlock_registry();
}

namespace {
void install_fork_handler() noexcept { pthread_atfork(lock_registry, unlock_registry, renew_holders_after_fork); }
}  // namespace

Holder::Holder(Fd fd, bool own_description, const char* what) : fd_(std::move(fd)) {
  if (own_description) {
    Fd own = reopen(fd_.get());
    if (own) fd_ = std::move(own);  // closes the descriptor that came from elsewhere
  }
  int error = 0;
  const uint32_t token = take_token(fd_.get(), error);
  if (token == 0) {
    flock whole = token_range(F_WRLCK, 0, kTokenLimit);
    const bool locked_out = error == EAGAIN && lock_call(fd_.get(), F_OFD_GETLK, whole) == 0 &&
                            whole.l_type != F_UNLCK && whole.l_start == kHolderLockBase &&
                            whole.l_len == static_cast<off_t>(kTokenLimit);
    if (locked_out) throw ValueError(std::string(what) + " is being removed (xproc cleanup)");
    throw_os_error("fcntl(F_OFD_SETLK) for a holder token", error);
  }
  token_.store(token, std::memory_order_relaxed);
  pthread_once(&g_fork_handler_once, install_fork_handler);
  lock_registry();
  next_ = g_holders;
  if (next_ != nullptr) next_->prev_ = this;
  g_holders = this;
  unlock_registry();
}

Holder::~Holder() {
  lock_registry();
  if (prev_ != nullptr)
    prev_->next_ = next_;
  else
    g_holders = next_;
  if (next_ != nullptr) next_->prev_ = prev_;
  unlock_registry();
  if (data_ != nullptr) ::munmap(data_, size_);
  // fd_ goes last, which drops the token's lock.
}

std::byte* Holder::map(size_t size) {
  void* data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
  if (data == MAP_FAILED) throw_os_error("mmap", errno);
  lock_registry();  // the fork handler reads the mapping
  data_ = static_cast<std::byte*>(data);
  size_ = size;
  unlock_registry();
  return data_;
}

void Holder::renew_after_fork() noexcept {
  // Without /proc (or a spare descriptor, or memory), the child goes on sharing its parent's
  // description and token: a death of either goes unseen while the other lives.
  Fd own = reopen(fd_.get());
  if (!own) return;
  int error = 0;
  const uint32_t token = take_token(own.get(), error);
  void* mapped = MAP_FAILED;
  if (token != 0 && data_ != nullptr) {
    // The same memory through the new description, moved over the inherited mapping in one
    // step: every pointer into the segment stays valid.
    mapped = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, own.get(), 0);
    if (mapped != MAP_FAILED && ::mremap(mapped, size_, size_, MREMAP_MAYMOVE | MREMAP_FIXED, data_) == MAP_FAILED) {
      ::munmap(mapped, size_);
      mapped = MAP_FAILED;
    }
  }
  const bool remapped = data_ == nullptr || mapped != MAP_FAILED;
  if (token == 0 || !remapped) return;
  // (dup2 would drop close-on-exec)
  if (detail::retry_on_eintr([&] { return ::dup3(own.get(), fd_.get(), O_CLOEXEC); }) < 0) return;
  own.reset();  // fd_ is the new description now, with the token's lock on it
  token_.store(token, std::memory_order_relaxed);
}

bool Holder::alive(uint32_t token) const noexcept {
  if (token == this->token()) return true;
  flock request = token_range(F_WRLCK, token, 1);
  if (lock_call(fd_.get(), F_OFD_GETLK, request) != 0) return true;
  return request.l_type != F_UNLCK;
}

size_t count_holders(int fd) {
  // The kernel names one conflicting lock of a range, not the first: split the range
  // around each one it names until no part holds another.
  size_t holders = 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges{{0, kTokenLimit}};  // [first, end) of tokens
  while (!ranges.empty()) {
    const auto [first, end] = ranges.back();
    ranges.pop_back();
    if (first >= end) continue;
    flock request = token_range(F_WRLCK, first, end - first);
    if (lock_call(fd, F_OFD_GETLK, request) != 0) throw_os_error("fcntl(F_OFD_GETLK)", errno);
    if (request.l_type == F_UNLCK) continue;
    ++holders;
    const uint64_t lock_first = static_cast<uint64_t>(request.l_start - kHolderLockBase);
    const uint64_t lock_end = request.l_len == 0 ? end : lock_first + static_cast<uint64_t>(request.l_len);
    ranges.emplace_back(first, std::max(first, lock_first));
    ranges.emplace_back(std::min(end, lock_end), end);
  }
  return holders;
}

bool lock_out_holders(int fd) {
  flock request = token_range(F_WRLCK, 0, kTokenLimit);
  if (lock_call(fd, F_OFD_SETLK, request) == 0) return true;
  if (errno == EAGAIN || errno == EACCES) return false;
  throw_os_error("fcntl(F_OFD_SETLK)", errno);
}

}  // namespace xproc::shm
