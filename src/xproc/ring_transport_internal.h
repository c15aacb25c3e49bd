// RingTransport: a ByteConnection over one end of a Pipe() in shared memory (the layout
// and what the two ends share: ring_pipe_internal.h). Messages go through the rings,
// and hang-ups, the payloads too large for a ring and the wake-ups of a sleeping receiver
// through the socket pair. docs/protocol.md ("Pipe over shared memory") has
// the protocol.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "xproc/byte_transport_internal.h"
#include "xproc/ring_pipe_internal.h"

namespace xproc::detail {

class RingTransport final : public ByteTransport {
 public:
  // End `side` of `pipe` (it sends into ring[side] and receives from ring[1 - side]);
  // `socket` is its side of the pipe's socket pair.
  RingTransport(Fd socket, std::shared_ptr<RingPipe> pipe, int side, bool readable, bool writable,
                const ConnectionOptions& options);
  // Attaches to duplicates of another process's handles, taking ownership of every
  // descriptor (closed on failure too). ValueError when they are not a pipe's.
  static std::unique_ptr<RingTransport> adopt(const ByteConnection::SharedMemoryHandles& handles,
                                              const ConnectionOptions& options);
  ~RingTransport() override;  // close()

  // Counts a close in this process, which makes its senders look for hang-ups at once.
  void close() noexcept override;

  // A payload of at most pipe.inline_limit goes into the ring as one record (waiting for
  // room); a larger one goes onto the socket in chunks behind a marker record.
  void send_parts(std::span<const std::span<const std::byte>> parts, size_t total) override;
  void send_in_place(size_t size, FillFn fill, void* ctx) override;
  // False, the payload kept, when the ring has no room now or the payload is more than a
  // small ring carries inline.
  bool try_send_in_place(size_t size, FillFn fill, void* ctx) override;
  void finish_send() override;
  // A payload up to pipe.inline_limit goes into the ring if it has room now (nothing is
  // ever kept: kNoRoom or kSent); a larger one is sent blocking.
  ByteConnection::SendAttempt send_if_room(size_t size, FillFn fill, void* ctx) override;
  bool try_finish_send() override;
  const ByteQueue* send_ring() const noexcept override { return pipe_ ? &tx() : nullptr; }

  std::vector<std::byte> recv_bytes(size_t limit) override;
  void recv_in_place(ConsumeFn consume, void* ctx) override;
  // Takes a record that is in the ring now; a marker's payload is then read from the
  // socket, waiting for its chunks. Raises what recv_bytes raises.
  bool try_recv_in_place(ConsumeFn consume, void* ctx) override;
  bool poll(Timeout timeout) override;

  // OSError("connection is write-only") on the sending end of a one-way pipe.
  bool ready_or_wait_fds(std::vector<int>& fds) override;
  // An epoll set over the socket and an eventfd of this end's, made on the first call;
  // from then on every receive keeps it readable exactly while messages wait.
  int fileno() override;
  // The socket: readable for a wake-up token, a hang-up, or (spuriously) a large payload's
  // chunk another reader of this end is reading.
  int wait_fileno() override { return fd_.get(); }
  bool shared_memory() const noexcept override { return !closed(); }
  ByteConnection::SharedMemoryHandles shared_memory_handles() const override;

 private:
  enum class LargeRead { kWhole, kOverLimit, kLost };
  enum class Wake { kMaybeReady, kTimedOut, kPeerGone };

  ByteQueue& tx() const noexcept { return pipe_->ring[side_]; }
  ByteQueue& rx() const noexcept { return pipe_->ring[1 - side_]; }
  PipeDirection& tx_control() const noexcept { return pipe_->control->direction[side_]; }
  PipeDirection& rx_control() const noexcept { return pipe_->control->direction[1 - side_]; }

  // BrokenPipeError when the socket pair shows the other end gone (looked at most every
  // kPeerCheckEvery, and after any ring end of this process was closed).
  void check_peer();
  // Puts a payload of `size` (at most inline_limit) into the ring as one record; without
  // `wait`, false when the ring has no room now.
  bool put_inline(size_t size, FillFn fill, void* ctx, bool wait);
  void send_large(std::span<const std::span<const std::byte>> parts, size_t size);
  void wake_receiver();

  // Blocks for the next message (as recv_bytes); `whole`, when given, receives a large
  // payload itself instead of `consume` seeing it.
  void recv(ConsumeFn consume, void* ctx, size_t limit, std::vector<std::byte>* whole = nullptr);
  // One attempt to take a message (blocking as ByteQueue::get_in_place does).
  bool take(ConsumeFn consume, void* ctx, size_t limit, bool block, Timeout timeout,
            std::vector<std::byte>* whole = nullptr);
  // The chunks of the large message `marker` announces, from the socket.
  LargeRead read_large(const PipeRecord& marker, size_t limit, std::vector<std::byte>& payload);
  // Sleeps until a sender's token, the peer's hang-up or the deadline.
  Wake sleep(const ByteQueue::Deadline& deadline);
  // Takes the tokens at the head of the socket (and chunks no reader will take). False when
  // a reader of this end is inside the ring or a chunk waits for its marker's reader: the
  // socket is theirs, tokens behind included, until they are done.
  bool take_tokens();
  // Once fileno() is out: keeps it readable exactly while messages wait.
  void after_receive();

  std::shared_ptr<RingPipe> pipe_;  // null once closed
  int side_;
  Fd watch_;  // fileno(): epoll over the socket and ready_
  Fd ready_;  // readable while messages that came without a token wait (fileno() only)
  // When this end last saw the other end alive, and the process's count of closed ring
  // ends then (see check_peer).
  std::chrono::steady_clock::time_point peer_seen_alive_{};
  uint64_t closes_seen_ = 0;
  SmallFrame small_;
};

}  // namespace xproc::detail
