// A shared-memory lane under a Manager connection on a unix socket: the RPC byte stream
// in both directions moves through two single-producer single-consumer byte rings in a
// memfd the server makes and hands to the client when it connects.
//
// Why: a sequential call over the socket costs the server a read() and a send() (and the
// client the same), about 40% of the server's time per call, and the server is what four
// clients wait for. While both sides are awake (the server spins between calls, a client
// spins for its reply) the rings move the bytes without a system call.
//
// The socket stays. After the handshake it carries only doorbell bytes and the hang-up: a
// side about to sleep sets its flag in the ring it waits on, looks once more, then sleeps
// in poll()/epoll on the socket; a side that writes bytes (or frees room) after the flag
// went up takes the flag down and sends one byte. The flag and the counters are stored
// and loaded seq_cst, so either the sleeper sees the new bytes or the writer sees the
// flag (the queue's and the Pipe's argument, docs/protocol.md). A peer that dies closes the socket, which wakes the
// other.
//
// Neither side trusts the other's counter: a count that is behind its own or more than a
// ring ahead is a broken lane (LaneError), and bytes are copied out before anyone parses
// them, so a peer scribbling on the memory can only hurt its own connection.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "xproc/errors.h"
#include "xproc/fd.h"

namespace xproc::rpc {

// Bytes of each ring.
inline constexpr size_t kLaneRingBytes = 64 * 1024;

// The 8 bytes a client sends before anything else to ask for a lane. No Cap'n Proto frame
// begins so: it would announce 2^32 segments, which framed_message_bytes refuses.
inline constexpr std::array<unsigned char, 8> kLaneRequest = {0xff, 0xff, 0xff, 0xff, 'X', 'L', 'N', '2'};

// A lane is memory the server commits for a client, so it goes only to a client that knows
// the authkey: the server answers the request with kChallenge and kLaneNonceBytes random
// bytes, the client sends HMAC-SHA256(authkey, nonce), and the server answers again. A
// server without an authkey answers at once.
inline constexpr size_t kLaneNonceBytes = 32;
inline constexpr size_t kLaneDigestBytes = 32;

// The server's answer, 16 bytes on the socket; with kGranted the memfd rides along as
// SCM_RIGHTS. Nothing else is on the socket before it, and after the last one the RPC
// stream is on the lane (granted) or on the socket (refused). After kWrongKey the server
// closes the connection.
struct LaneReply {
  enum Status : uint32_t { kGranted = 0, kRefused = 1, kChallenge = 2, kWrongKey = 3 };
  std::array<unsigned char, 8> magic = kLaneRequest;
  uint32_t status = kRefused;
  uint32_t ring_bytes = 0;
};
static_assert(sizeof(LaneReply) == 16);

// The peer broke the lane's protocol (impossible counters, a bad segment): the connection
// is over, as when it drops.
class LaneError : public ConnectionError {
 public:
  using ConnectionError::ConnectionError;
};

class Lane;

// The client's side of the handshake on a connected socket, before any RPC byte: the lane
// the server grants, or nothing (it refused, or `fd` is not a unix socket and nothing was
// asked: the RPC stays on the socket). AuthenticationError when the server refuses
// `authkey`; ConnectionError when it closes the socket, answers something else, or does
// not answer within `timeout`.
std::optional<Lane> request_lane(int fd, const std::optional<std::string>& authkey,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Whether `fd` is a unix-domain socket (the only kind a lane can be passed over).
bool is_unix_socket(int fd);

// Sends all of `bytes` on the socket `fd`, waiting for room when it is non-blocking and
// full; 0, or the errno that ended it. (No SIGPIPE: a gone peer is EPIPE.)
int send_all(int fd, std::span<const std::byte> bytes) noexcept;

// One non-blocking send of `bytes` with `descriptor` attached (SCM_RIGHTS) when it is
// >= 0: how a lane's segment travels. True when every byte went.
bool send_with_descriptor(int fd, std::span<const std::byte> bytes, int descriptor) noexcept;

// The socket under a lane: one byte wakes a peer asleep on it (detail::ring_doorbell in
// doorbell_internal.h rings it). Reads every doorbell waiting on the non-blocking socket
// `fd`; false when the peer hung up (or the socket failed), which ends the connection.
bool drain_doorbells(int fd) noexcept;

class Lane {
 public:
  // The server's side: a fresh segment with its pages reserved. Throws OSError when
  // memory is short.
  static Lane create(size_t ring_bytes = kLaneRingBytes);
  // The client's side of the segment in `memfd` (closed here, whatever happens). Throws
  // LaneError when it is not a lane of `ring_bytes`.
  static Lane attach(int memfd, size_t ring_bytes);

  Lane(Lane&& other) noexcept;
  Lane& operator=(Lane&& other) noexcept;
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;
  ~Lane();

  // The segment's descriptor, to send to the client (the server's side only; -1 after
  // close_memfd()).
  int memfd() const noexcept { return memfd_.get(); }
  void close_memfd() noexcept;
  size_t ring_bytes() const noexcept { return ring_bytes_; }

  // Moves up to `size` bytes in or out without waiting; how many moved. LaneError when
  // the peer's counter is impossible.
  size_t write(const void* data, size_t size);
  size_t read(void* out, size_t size);
  bool has_input() const;
  bool has_room() const;

  // About to sleep for input (or for room to write): raises this side's flag and looks
  // again. True: nothing came, sleep until a doorbell. False: it came; the flag is down.
  bool sleep_for_input();
  bool sleep_for_room();
  // Awake again: takes this side's flags down (a doorbell would wake nobody).
  void awake() noexcept;

  // After a write: whether the peer sleeps for input and needs a doorbell (its flag is
  // taken down, so one doorbell serves any number of writes). After a read, the same for
  // a peer that sleeps for room.
  bool take_input_doorbell() noexcept;
  bool take_room_doorbell() noexcept;

  struct Ring;  // one ring's counters and flags in the segment (lane.cpp)

 private:
  Lane(Fd memfd, void* memory, size_t mapped, size_t ring_bytes, bool server);

  uint64_t peer_written() const;  // checked
  uint64_t peer_taken() const;    // checked

  Fd memfd_;
  void* memory_ = nullptr;
  size_t mapped_ = 0;
  size_t ring_bytes_ = 0;
  Ring* in_ = nullptr;   // the ring this side reads
  Ring* out_ = nullptr;  // the ring this side writes
  unsigned char* in_bytes_ = nullptr;
  unsigned char* out_bytes_ = nullptr;
  uint64_t written_ = 0;  // this side's own counts: the authoritative copies
  uint64_t taken_ = 0;
};

}  // namespace xproc::rpc
