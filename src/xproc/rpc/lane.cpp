// See lane.h.
//
// The segment: a header, the control block of each ring (its two counters and two flags on
// cache lines of their own: each is written by one side only), then the bytes of the
// client-to-server ring and of the server-to-client ring.
#include "xproc/rpc/lane.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "xproc/auth.h"
#include "xproc/errors.h"
#include "xproc/shm/segment.h"
#include "xproc/syscall_internal.h"

namespace xproc::rpc {
namespace {

constexpr uint64_t kLaneMagic = 0x314e4c2d434f5250;  // "PROC-LN1"
constexpr uint32_t kLaneVersion = 1;

struct Header {
  uint64_t magic;
  uint32_t version;
  uint32_t ring_bytes;
};

}  // namespace

bool is_unix_socket(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  return ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0 && address.ss_family == AF_UNIX;
}

bool drain_doorbells(int fd) noexcept {
  char bells[64];
  for (;;) {
    const ssize_t n = detail::retry_on_eintr([&] { return ::recv(fd, bells, sizeof(bells), MSG_DONTWAIT); });
    if (n > 0) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
}

int send_all(int fd, std::span<const std::byte> bytes) noexcept {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n =
        detail::retry_on_eintr([&] { return ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL); });
    if (n >= 0) {
      sent += static_cast<size_t>(n);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      pollfd room{fd, POLLOUT, 0};
      if (detail::retry_on_eintr([&] { return ::poll(&room, 1, -1); }) < 0) return errno;
    } else {
      return errno;
    }
  }
  return 0;
}

bool send_with_descriptor(int fd, std::span<const std::byte> bytes, int descriptor) noexcept {
  iovec part{const_cast<std::byte*>(bytes.data()), bytes.size()};
  msghdr message{};
  message.msg_iov = &part;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (descriptor >= 0) {
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &descriptor, sizeof(int));
  }
  const ssize_t n = detail::retry_on_eintr([&] { return ::sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL); });
  return n == static_cast<ssize_t>(bytes.size());
}

namespace {

// Reads exactly `size` bytes from the socket by `deadline`. A descriptor that comes along
// goes to `memfd` (the first one; any other is closed). ConnectionError when the server
// hangs up, fails, or is silent past the deadline.
void receive_exactly(int fd, void* out, size_t size, Fd& memfd, std::chrono::steady_clock::time_point deadline) {
  auto* bytes = static_cast<unsigned char*>(out);
  size_t got = 0;
  while (got < size) {
    iovec part{bytes + got, size - got};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr message{};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    const ssize_t n = detail::retry_on_eintr([&] { return ::recvmsg(fd, &message, MSG_CMSG_CLOEXEC | MSG_DONTWAIT); });
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw ConnectionError("the manager did not answer the lane request in time");
      // A wait with a deadline: after EINTR the loop comes round and waits for what is left.
      pollfd wanted{fd, POLLIN, 0};
      if (::poll(&wanted, 1, static_cast<int>(left.count()) + 1) < 0 && errno != EINTR) throw_os_error("poll", errno);
      continue;
    }
    if (n <= 0) {
      throw ConnectionError(n == 0 ? "the manager closed the connection"
                                   : std::string("reading from the manager: ") + std::strerror(errno));
    }
    for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
      if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int raw;
        std::memcpy(&raw, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
        Fd received(raw);  // closed here unless it is the first
        if (!memfd) memfd = std::move(received);
      }
    }
    got += static_cast<size_t>(n);
  }
}

}  // namespace

std::optional<Lane> request_lane(int fd, const std::optional<std::string>& authkey, std::chrono::milliseconds timeout) {
  if (!is_unix_socket(fd)) return std::nullopt;
  if (const int error = send_all(fd, std::as_bytes(std::span(kLaneRequest)))) {
    throw ConnectionError(std::string("asking the manager for a lane: ") + std::strerror(error));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Fd memfd;  // closed unless a lane takes it
  auto garbled = [] { return ConnectionError("the manager answered the lane request with something else"); };
  LaneReply reply;
  receive_exactly(fd, &reply, sizeof(reply), memfd, deadline);
  if (reply.magic != kLaneRequest) throw garbled();
  if (reply.status == LaneReply::kChallenge) {
    unsigned char nonce[kLaneNonceBytes];
    receive_exactly(fd, nonce, sizeof(nonce), memfd, deadline);
    const std::string digest =
        hmac_sha256(authkey.value_or(""), std::string_view(reinterpret_cast<char*>(nonce), sizeof(nonce)));
    if (const int error = send_all(fd, std::as_bytes(std::span(digest)))) {
      throw ConnectionError(std::string("answering the manager's lane challenge: ") + std::strerror(error));
    }
    receive_exactly(fd, &reply, sizeof(reply), memfd, deadline);
    if (reply.magic != kLaneRequest || reply.status == LaneReply::kChallenge) throw garbled();
  }
  switch (reply.status) {
    case LaneReply::kRefused: return std::nullopt;
    case LaneReply::kWrongKey: throw AuthenticationError("digest sent was rejected (the manager refused the authkey)");
    case LaneReply::kGranted:
      if (!memfd) throw garbled();
      return Lane::attach(memfd.release(), reply.ring_bytes);  // LaneError is a ConnectionError
    default: throw garbled();
  }
}

struct Lane::Ring {
  alignas(64) std::atomic<uint64_t> written;  // by the writer: bytes ever put in
  alignas(64) std::atomic<uint64_t> taken;    // by the reader: bytes ever taken out
  alignas(64) std::atomic<uint32_t> reader_sleeps;
  alignas(64) std::atomic<uint32_t> writer_sleeps;
};

namespace {

constexpr size_t kHeaderBytes = 64;
constexpr size_t kControlBytes = kHeaderBytes + 2 * sizeof(Lane::Ring);

size_t segment_bytes(size_t ring_bytes) { return kControlBytes + 2 * ring_bytes; }

// The layout docs/protocol.md fixes ("Manager lanes"), which a client in another language
// maps: the header, each ring's counters and flags, where the bytes start.
static_assert(offsetof(Header, magic) == 0 && offsetof(Header, version) == 8 && offsetof(Header, ring_bytes) == 12);
static_assert(sizeof(Header) <= kHeaderBytes);
static_assert(offsetof(Lane::Ring, written) == 0 && offsetof(Lane::Ring, taken) == 64);
static_assert(offsetof(Lane::Ring, reader_sleeps) == 128 && offsetof(Lane::Ring, writer_sleeps) == 192);
static_assert(sizeof(Lane::Ring) == 256);
static_assert(kControlBytes == 576);
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free);

}  // namespace

Lane::Lane(Fd memfd, void* memory, size_t mapped, size_t ring_bytes, bool server)
    : memfd_(std::move(memfd)), memory_(memory), mapped_(mapped), ring_bytes_(ring_bytes) {
  auto* base = static_cast<unsigned char*>(memory);
  auto* to_server = reinterpret_cast<Ring*>(base + kHeaderBytes);
  auto* to_client = to_server + 1;
  unsigned char* to_server_bytes = base + kControlBytes;
  unsigned char* to_client_bytes = to_server_bytes + ring_bytes;
  in_ = server ? to_server : to_client;
  out_ = server ? to_client : to_server;
  in_bytes_ = server ? to_server_bytes : to_client_bytes;
  out_bytes_ = server ? to_client_bytes : to_server_bytes;
}

Lane Lane::create(size_t ring_bytes) {
  const size_t size = segment_bytes(ring_bytes);
  // Reserved (memory short is an error at connect, never a SIGBUS later) and sealed: the
  // client cannot shrink it under the server.
  Fd fd(shm::create_sealed_memfd(size, "xproc-lane"));
  void* memory = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (memory == MAP_FAILED) throw_os_error("mmap", errno);
  ::madvise(memory, size, MADV_DONTFORK);  // a forked child must not write into a stream not its own
  new (memory) Header{kLaneMagic, kLaneVersion, static_cast<uint32_t>(ring_bytes)};
  auto* rings = reinterpret_cast<Ring*>(static_cast<unsigned char*>(memory) + kHeaderBytes);
  new (&rings[0]) Ring{};
  new (&rings[1]) Ring{};
  return Lane(std::move(fd), memory, size, ring_bytes, /*server=*/true);
}

Lane Lane::attach(int memfd, size_t ring_bytes) {
  Fd owned(memfd);  // closed here, whatever happens: the mapping is what stays
  if (ring_bytes < 4096 || ring_bytes > (size_t{1} << 26)) {
    throw LaneError("the manager announced a lane of an impossible size");
  }
  const size_t size = segment_bytes(ring_bytes);
  bool sized = false;
  try {
    sized = shm::sealed_size(owned.get(), "the manager's lane") == size;
  } catch (const ValueError& e) {
    throw LaneError(e.what());
  }
  void* memory = sized ? ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, owned.get(), 0) : MAP_FAILED;
  owned.reset();
  if (memory == MAP_FAILED) throw LaneError("the manager's lane is not a segment of the announced size");
  ::madvise(memory, size, MADV_DONTFORK);
  Header header;
  std::memcpy(&header, memory, sizeof(header));
  if (header.magic != kLaneMagic || header.version != kLaneVersion || header.ring_bytes != ring_bytes) {
    ::munmap(memory, size);
    throw LaneError("the manager's lane has another layout");
  }
  return Lane(Fd(), memory, size, ring_bytes, /*server=*/false);
}

Lane::Lane(Lane&& other) noexcept { *this = std::move(other); }

Lane& Lane::operator=(Lane&& other) noexcept {
  if (this != &other) {
    close_memfd();
    if (memory_ != nullptr) ::munmap(memory_, mapped_);
    memfd_ = std::move(other.memfd_);
    memory_ = std::exchange(other.memory_, nullptr);
    mapped_ = std::exchange(other.mapped_, 0);
    ring_bytes_ = other.ring_bytes_;
    in_ = other.in_;
    out_ = other.out_;
    in_bytes_ = other.in_bytes_;
    out_bytes_ = other.out_bytes_;
    written_ = other.written_;
    taken_ = other.taken_;
  }
  return *this;
}

Lane::~Lane() {
  close_memfd();
  if (memory_ != nullptr) ::munmap(memory_, mapped_);
  memory_ = nullptr;
}

void Lane::close_memfd() noexcept { memfd_.reset(); }

uint64_t Lane::peer_written() const {
  const uint64_t written = in_->written.load(std::memory_order_seq_cst);
  if (written - taken_ > ring_bytes_) throw LaneError("the peer's write count on the lane is impossible");
  return written;
}

uint64_t Lane::peer_taken() const {
  const uint64_t taken = out_->taken.load(std::memory_order_seq_cst);
  if (written_ - taken > ring_bytes_) throw LaneError("the peer's read count on the lane is impossible");
  return taken;
}

bool Lane::has_input() const { return peer_written() != taken_; }

bool Lane::has_room() const { return written_ - peer_taken() < ring_bytes_; }

size_t Lane::write(const void* data, size_t size) {
  const size_t room = ring_bytes_ - static_cast<size_t>(written_ - peer_taken());
  const size_t n = std::min(size, room);
  if (n == 0) return 0;
  const size_t at = static_cast<size_t>(written_ % ring_bytes_);
  const size_t first = std::min(n, ring_bytes_ - at);
  std::memcpy(out_bytes_ + at, data, first);
  std::memcpy(out_bytes_, static_cast<const unsigned char*>(data) + first, n - first);
  written_ += n;
  out_->written.store(written_, std::memory_order_seq_cst);
  return n;
}

size_t Lane::read(void* out, size_t size) {
  const size_t held = static_cast<size_t>(peer_written() - taken_);
  const size_t n = std::min(size, held);
  if (n == 0) return 0;
  const size_t at = static_cast<size_t>(taken_ % ring_bytes_);
  const size_t first = std::min(n, ring_bytes_ - at);
  std::memcpy(out, in_bytes_ + at, first);
  std::memcpy(static_cast<unsigned char*>(out) + first, in_bytes_, n - first);
  taken_ += n;
  in_->taken.store(taken_, std::memory_order_seq_cst);
  return n;
}

bool Lane::sleep_for_input() {
  in_->reader_sleeps.store(1, std::memory_order_seq_cst);  // the flag, then the look
  if (!has_input()) return true;
  in_->reader_sleeps.store(0, std::memory_order_relaxed);
  return false;
}

bool Lane::sleep_for_room() {
  out_->writer_sleeps.store(1, std::memory_order_seq_cst);
  if (!has_room()) return true;
  out_->writer_sleeps.store(0, std::memory_order_relaxed);
  return false;
}

void Lane::awake() noexcept {
  in_->reader_sleeps.store(0, std::memory_order_relaxed);
  out_->writer_sleeps.store(0, std::memory_order_relaxed);
}

bool Lane::take_input_doorbell() noexcept {
  // The count was stored seq_cst, then this look at the flag.
  if (out_->reader_sleeps.load(std::memory_order_seq_cst) == 0) return false;
  return out_->reader_sleeps.exchange(0, std::memory_order_relaxed) != 0;
}

bool Lane::take_room_doorbell() noexcept {
  if (in_->writer_sleeps.load(std::memory_order_seq_cst) == 0) return false;
  return in_->writer_sleeps.exchange(0, std::memory_order_relaxed) != 0;
}

}  // namespace xproc::rpc
