#include "xproc/shm/doorbells.h"

#include <dirent.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>

#include "xproc/errors.h"
#include "xproc/shm/holders.h"
#include "xproc/syscall_internal.h"

namespace xproc::shm {
namespace {

constexpr char kDoorbellDirectory[] = "/dev/shm";
constexpr char kDoorbellFilePrefix[] = "xproc-doorbell.";
constexpr char kDoorbellPrefix[] = "/dev/shm/xproc-doorbell.";

struct SocketAddress {
  sockaddr_un address{};
  socklen_t length = 0;
};

SocketAddress address_of(uint64_t name) {
  SocketAddress a;
  a.address.sun_family = AF_UNIX;
  const int n = std::snprintf(a.address.sun_path, sizeof(a.address.sun_path), "%s%016llx", kDoorbellPrefix,
                              static_cast<unsigned long long>(name));
  a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n + 1);
  return a;
}

uint64_t random_name() {
  uint64_t name = 0;
  while (name == 0) {
    if (detail::retry_on_eintr([&] { return ::getrandom(&name, sizeof(name), 0); }) != sizeof(name)) {
      throw_os_error("getrandom", errno);
    }
  }
  return name;
}

// The socket this process rings from: unbound, made once, kept (a forked child shares it,
// which sending allows). -1 when it could not be made: rings are then skipped, and waiters
// find the change at their next re-check.
int ringer_socket() noexcept {
  static const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  return fd;
}

// Rings the doorbell `name` names: false when nobody listens there any more.
bool ring(const SocketAddress& a) noexcept {
  const int ringer = ringer_socket();
  if (ringer < 0) return true;
  const char bell = 0;
  // Never waits: a full socket already holds rings its waiter has not read.
  const ssize_t sent = detail::retry_on_eintr([&] {
    return ::sendto(ringer, &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&a.address),
                    a.length);
  });
  return sent != -1 || (errno != ECONNREFUSED && errno != ENOENT);
}

// Removes the socket file of a dead registrant, if nobody listens there: the name was read
// from the segment, and could be a live waiter's of another queue.
void remove_if_stale(uint64_t name) noexcept {
  const SocketAddress a = address_of(name);
  if (!ring(a)) ::unlink(a.address.sun_path);
}

// The name in a doorbell's file name, 0 when it is not one.
uint64_t name_in(const std::string& file_name) {
  const size_t prefix = sizeof(kDoorbellFilePrefix) - 1;
  if (file_name.size() != prefix + 16 || file_name.compare(0, prefix, kDoorbellFilePrefix) != 0) return 0;
  uint64_t name = 0;
  for (size_t i = prefix; i < file_name.size(); ++i) {
    const char c = file_name[i];
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return 0;
    name = name << 4 | static_cast<uint64_t>(digit);
  }
  return name;
}

}  // namespace

std::vector<std::string> stale_doorbells() {
  std::vector<std::string> stale;
  DIR* directory = ::opendir(kDoorbellDirectory);
  if (directory == nullptr) return stale;
  while (const dirent* entry = ::readdir(directory)) {
    const std::string file_name = entry->d_name;
    const uint64_t name = name_in(file_name);
    if (name == 0) continue;
    struct stat st {};
    if (::lstat(doorbell_path(name).c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    if (!ring(address_of(name))) stale.push_back(file_name);
  }
  ::closedir(directory);
  std::sort(stale.begin(), stale.end());
  return stale;
}

bool remove_stale_doorbell(const std::string& file_name) noexcept {
  const uint64_t name = name_in(file_name);
  if (name == 0) return false;
  const SocketAddress a = address_of(name);
  struct stat st {};
  if (::lstat(a.address.sun_path, &st) != 0 || !S_ISSOCK(st.st_mode) || ring(a)) return false;
  return ::unlink(a.address.sun_path) == 0;
}

std::string doorbell_path(uint64_t name) { return address_of(name).address.sun_path; }

Doorbell::Doorbell(DoorbellTable& table, const Holder& holder, WaitFor wait_for, const Sharing& access)
    : table_(table), wait_for_(wait_for), creator_(::getpid()) {
  socket_ = Fd(
      detail::retry_syscall("socket", [] { return ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0); }));
  for (;;) {
    name_ = random_name();
    const SocketAddress a = address_of(name_);
    if (::bind(socket_.get(), reinterpret_cast<const sockaddr*>(&a.address), a.length) == 0) break;
    if (errno != EADDRINUSE) throw_os_error("bind " + std::string(a.address.sun_path), errno);
  }
  const std::string path = doorbell_path(name_);
  // Whoever may use the queue may ring; bind made the file with the umask's bits and this
  // process's group first, which can only let others ring too early (a spurious ring costs
  // a look at the queue). Nothing can replace the file meanwhile: /dev/shm is sticky.
  const auto refuse = [&](const char* call) {
    const int error = errno;
    ::unlink(path.c_str());
    throw_os_error(std::string(call) + " " + path, error);
  };
  if (access.group && ::lchown(path.c_str(), static_cast<uid_t>(-1), *access.group) != 0) refuse("lchown");
  if (::chmod(path.c_str(), access.mode & 0666) != 0) refuse("chmod");
  const uint32_t token = holder.token();
  for (DoorbellSlot& slot : table_.slots) {
    uint32_t owner = slot.token.load(std::memory_order_acquire);
    if (owner != 0 && holder.alive(owner)) continue;
    const uint64_t dead_name = slot.name.load(std::memory_order_relaxed);
    if (!slot.token.compare_exchange_strong(owner, token, std::memory_order_acq_rel)) continue;
    // A dead registrant's socket file is left to whoever takes its slot.
    if (owner != 0 && dead_name != 0) remove_if_stale(dead_name);
    if (slot.armed.exchange(0, std::memory_order_acq_rel) != 0) {
      table_.armed[static_cast<uint32_t>(slot.wait_for.load(std::memory_order_relaxed)) % kWaitForKinds].fetch_sub(
          1, std::memory_order_relaxed);
    }
    slot.wait_for.store(static_cast<uint32_t>(wait_for), std::memory_order_relaxed);
    slot.name.store(name_, std::memory_order_release);
    slot_ = &slot;
    return;
  }
  ::unlink(path.c_str());
  throw RuntimeError("every one of the queue's " + std::to_string(kDoorbellSlots) +
                     " doorbell slots belongs to a live waiter");
}

Doorbell::~Doorbell() {
  // A forked child holds a copy of its parent's doorbell; the slot and the file stay the
  // parent's.
  if (::getpid() != creator_) return;
  disarm();
  uint32_t token = slot_->token.load(std::memory_order_relaxed);
  if (slot_->name.load(std::memory_order_relaxed) == name_) {
    slot_->token.compare_exchange_strong(token, 0, std::memory_order_acq_rel);
  }
  ::unlink(doorbell_path(name_).c_str());
}

void Doorbell::arm() noexcept {
  if (slot_->armed.exchange(1, std::memory_order_seq_cst) == 0) {
    table_.armed[static_cast<uint32_t>(wait_for_)].fetch_add(1, std::memory_order_seq_cst);
  }
}

void Doorbell::disarm() noexcept {
  if (slot_->armed.exchange(0, std::memory_order_seq_cst) != 0) {
    table_.armed[static_cast<uint32_t>(wait_for_)].fetch_sub(1, std::memory_order_relaxed);
  }
}

bool Doorbell::clear() noexcept {
  // A bounded number: whoever may ring could send without end, and the loop must go on.
  // Rings left keep the socket readable, so the waiter only looks again the sooner. (A
  // waiter is rung once per arming: more than one or two waiting is a flood.)
  constexpr int kMostRings = 8;
  bool rung = false;
  char bell;
  for (int i = 0; i < kMostRings; ++i) {
    if (detail::retry_on_eintr([&] { return ::recv(socket_.get(), &bell, 1, MSG_DONTWAIT); }) < 0) break;
    rung = true;
  }
  return rung;
}

void ring_doorbells(DoorbellTable& table, const Holder& holder, WaitFor wait_for) noexcept {
  const auto kind = static_cast<uint32_t>(wait_for);
  if (table.armed[kind].load(std::memory_order_seq_cst) == 0) return;
  for (DoorbellSlot& slot : table.slots) {
    if (slot.wait_for.load(std::memory_order_relaxed) != kind || slot.armed.load(std::memory_order_relaxed) == 0) {
      continue;
    }
    if (slot.armed.exchange(0, std::memory_order_acq_rel) == 0) continue;  // another ringer's
    table.armed[kind].fetch_sub(1, std::memory_order_relaxed);
    const uint64_t name = slot.name.load(std::memory_order_acquire);
    if (ring(address_of(name))) continue;
    // Nobody listens there: free the slot if its registrant is dead (a live one may be
    // between taking the slot and naming its socket).
    uint32_t owner = slot.token.load(std::memory_order_acquire);
    if (owner != 0 && !holder.alive(owner) && slot.token.compare_exchange_strong(owner, 0, std::memory_order_acq_rel)) {
      ::unlink(doorbell_path(name).c_str());
    }
  }
}

}  // namespace xproc::shm
