// Tests of the two transports under ByteConnection, each alone: the contract they share
// (one body over both), then what each puts on its wire. connection_test.cpp checks the
// public calls over both.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "xproc/errors.h"
#include "xproc/ring_transport_internal.h"
#include "xproc/rpc/lane.h"
#include "xproc/stream_transport_internal.h"

namespace {

using namespace std::chrono_literals;
using xproc::Fd;
using xproc::detail::ByteTransport;
using xproc::detail::RingPipe;
using xproc::detail::RingTransport;
using xproc::detail::StreamTransport;

std::span<const std::byte> as_bytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }
std::string text(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// The payload of `s` as a FillFn and its context.
struct Filler {
  std::string_view payload;
  static void fill(void* self, std::byte* out) {
    const auto& p = static_cast<Filler*>(self)->payload;
    if (!p.empty()) std::memcpy(out, p.data(), p.size());
  }
};

// What consume saw, as a ConsumeFn and its context.
struct Keeper {
  std::string seen;
  static void consume(void* self, std::span<const std::byte> payload) {
    static_cast<Keeper*>(self)->seen = text(payload);
  }
};

std::pair<Fd, Fd> socket_pair(int type) {
  int fds[2];
  if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) != 0) throw std::runtime_error("socketpair");
  return {Fd(fds[0]), Fd(fds[1])};
}

std::pair<std::unique_ptr<ByteTransport>, std::unique_ptr<ByteTransport>> stream_ends(
    xproc::ConnectionOptions options = {}) {
  auto [a, b] = socket_pair(SOCK_STREAM);
  return {std::make_unique<StreamTransport>(std::move(a), true, true, options),
          std::make_unique<StreamTransport>(std::move(b), true, true, options)};
}

std::pair<std::unique_ptr<ByteTransport>, std::unique_ptr<ByteTransport>> ring_ends(
    xproc::ConnectionOptions options = {}) {
  auto [a, b] = socket_pair(SOCK_SEQPACKET);
  auto pipe = std::make_shared<RingPipe>(options.pipe_ring_bytes, options.pipe_reserved_bytes, true);
  return {std::make_unique<RingTransport>(std::move(a), pipe, 0, true, true, options),
          std::make_unique<RingTransport>(std::move(b), pipe, 1, true, true, options)};
}

// --- the contract both transports keep -------------------------------------------------

struct Stream {
  static auto ends(xproc::ConnectionOptions options = {}) { return stream_ends(options); }
};
struct Ring {
  static auto ends(xproc::ConnectionOptions options = {}) { return ring_ends(options); }
};

template <typename T>
class ByteTransportTest : public ::testing::Test {};
using Transports = ::testing::Types<Stream, Ring>;
class TransportNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, Stream> ? "Stream" : "Ring";
  }
};
TYPED_TEST_SUITE(ByteTransportTest, Transports, TransportNames);

TYPED_TEST(ByteTransportTest, PartsArriveAsOneMessageInOrder) {
  auto [a, b] = TypeParam::ends();
  const std::string big(300000, 'L');  // over the ring's inline limit and the small frame
  const std::span<const std::byte> parts[] = {as_bytes("he"), as_bytes(""), as_bytes("llo")};
  const std::string_view view(big);
  const std::span<const std::byte> large[] = {as_bytes(view.substr(0, 1000)), as_bytes(view.substr(1000))};
  std::thread sender([&a = a, &parts, &large] {
    a->send_parts(parts, 5);
    a->send_parts(large, 300000);
    a->send_parts({}, 0);
  });
  EXPECT_EQ(text(b->recv_bytes(1 << 20)), "hello");
  EXPECT_TRUE(text(b->recv_bytes(1 << 20)) == big);
  EXPECT_EQ(b->recv_bytes(1 << 20).size(), 0u);
  sender.join();
}

TYPED_TEST(ByteTransportTest, InPlaceCallsFillAndConsumeOnceEach) {
  auto [a, b] = TypeParam::ends();
  Filler small{"in place"};
  a->send_in_place(small.payload.size(), &Filler::fill, &small);
  Keeper keeper;
  b->recv_in_place(&Keeper::consume, &keeper);
  EXPECT_EQ(keeper.seen, "in place");
  EXPECT_TRUE(a->try_send_in_place(small.payload.size(), &Filler::fill, &small));
  EXPECT_TRUE(b->poll(1s));
  keeper.seen.clear();
  EXPECT_TRUE(b->try_recv_in_place(&Keeper::consume, &keeper));
  EXPECT_EQ(keeper.seen, "in place");
  EXPECT_FALSE(b->try_recv_in_place(&Keeper::consume, &keeper));  // nothing more: false at once
  EXPECT_FALSE(b->poll(0s));
}

TYPED_TEST(ByteTransportTest, TrySendInPlaceRefusesOverTheSmallFrameLimit) {
  auto [a, b] = TypeParam::ends();
  Filler filler{""};
  EXPECT_THROW(a->try_send_in_place(xproc::ByteConnection::kSmallFrameLimit + 1, &Filler::fill, &filler),
               xproc::ValueError);
}

// Offers messages without waiting until the transport is full: the last one is kept, the
// next offer is refused until finish_send() sends it, and all arrive in order.
TYPED_TEST(ByteTransportTest, TrySendInPlaceKeepsWhatCannotGoNowForFinishSend) {
  xproc::ConnectionOptions options;
  options.pipe_ring_bytes = 4096;
  auto [a, b] = TypeParam::ends(options);
  Filler filler{std::string_view("0123456789abcdef0123456789abcdef", 32)};
  size_t taken = 0;
  while (a->try_send_in_place(filler.payload.size(), &Filler::fill, &filler)) ++taken;
  ASSERT_GT(taken, 0u);
  EXPECT_THROW(a->try_send_in_place(1, &Filler::fill, &filler), xproc::ValueError);
  size_t received = 0;
  std::thread receiver([&b = b, &received] {
    while (b->recv_bytes(1 << 20).size() == 32) ++received;  // up to the last, which is not
  });
  a->finish_send();  // blocks until the receiver makes room
  Filler last{"end"};
  a->send_in_place(3, &Filler::fill, &last);
  receiver.join();
  EXPECT_EQ(received, taken + 1);
}

// An empty payload kept for finish_send() is sent too, though nothing but its length is
// kept (the ring end once lost it).
TYPED_TEST(ByteTransportTest, TrySendInPlaceKeepsAnEmptyPayload) {
  xproc::ConnectionOptions options;
  options.pipe_ring_bytes = 4096;
  auto [a, b] = TypeParam::ends(options);
  Filler empty{""};
  size_t taken = 0;
  while (a->try_send_in_place(0, &Filler::fill, &empty)) ++taken;
  size_t received = 0;
  std::thread receiver([&b = b, &received] {
    while (b->recv_bytes(1 << 20).empty()) ++received;
  });
  a->finish_send();
  Filler last{"end"};
  a->send_in_place(3, &Filler::fill, &last);
  receiver.join();
  EXPECT_EQ(received, taken + 1);
}

TYPED_TEST(ByteTransportTest, MessageOverTheLimitClosesTheReceiver) {
  auto [a, b] = TypeParam::ends();
  a->send_parts({}, 0);
  const std::span<const std::byte> part[] = {as_bytes("0123456789")};
  a->send_parts(part, 10);
  EXPECT_EQ(b->recv_bytes(5).size(), 0u);
  EXPECT_THROW(b->recv_bytes(5), xproc::OSError);
  EXPECT_TRUE(b->closed());
  EXPECT_FALSE(b->shared_memory());
}

TYPED_TEST(ByteTransportTest, SleepingReceiverWakesForAMessageAndForTheSendersClose) {
  auto [a, b] = TypeParam::ends();
  std::thread sender([&a = a] {
    std::this_thread::sleep_for(50ms);  // the receiver sleeps in the kernel by now
    const std::span<const std::byte> part[] = {as_bytes("late")};
    a->send_parts(part, 4);
    std::this_thread::sleep_for(50ms);
    a->close();
  });
  EXPECT_EQ(text(b->recv_bytes(100)), "late");
  EXPECT_THROW(b->recv_bytes(100), xproc::EOFError);
  sender.join();
  EXPECT_TRUE(b->poll(0s));  // EOF is ready to report
}

TYPED_TEST(ByteTransportTest, SendAfterTheReceiverClosedIsBrokenPipe) {
  auto [a, b] = TypeParam::ends();
  b->close();
  const std::string chunk(65536, 'x');
  const std::span<const std::byte> part[] = {as_bytes(chunk)};
  EXPECT_THROW(
      {
        for (int i = 0; i < 100; ++i) a->send_parts(part, chunk.size());
      },
      xproc::BrokenPipeError);
}

// --- the stream's wire: CPython's framing ----------------------------------------------

TEST(StreamTransportTest, FrameIsFourByteBigEndianLengthThenPayload) {
  auto [mine, theirs] = socket_pair(SOCK_STREAM);
  StreamTransport t(std::move(mine), true, true, {});
  const std::span<const std::byte> parts[] = {as_bytes("ab"), as_bytes("c")};
  t.send_parts(parts, 3);
  Filler filler{"de"};
  ASSERT_TRUE(t.try_send_in_place(2, &Filler::fill, &filler));
  unsigned char raw[13];
  ASSERT_EQ(read(theirs.get(), raw, sizeof(raw)), 13);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(raw), 13), std::string("\0\0\0\3abc\0\0\0\2de", 13));
}

TEST(StreamTransportTest, TryRecvInPlaceWaitsForTheWholeFrame) {
  auto [mine, theirs] = socket_pair(SOCK_STREAM);
  StreamTransport t(std::move(mine), true, true, {});
  const uint32_t length = htonl(4);
  ASSERT_EQ(write(theirs.get(), &length, 4), 4);
  ASSERT_EQ(write(theirs.get(), "ab", 2), 2);
  Keeper keeper;
  EXPECT_FALSE(t.try_recv_in_place(&Keeper::consume, &keeper));
  EXPECT_TRUE(t.poll(0s));  // half a frame is buffered: recv would not wait for its start
  ASSERT_EQ(write(theirs.get(), "cd", 2), 2);
  EXPECT_TRUE(t.try_recv_in_place(&Keeper::consume, &keeper));
  EXPECT_EQ(keeper.seen, "abcd");
}

TEST(StreamTransportTest, NegativeLengthClosesIt) {
  auto [mine, theirs] = socket_pair(SOCK_STREAM);
  StreamTransport t(std::move(mine), true, true, {});
  const uint32_t length = htonl(static_cast<uint32_t>(-5));
  ASSERT_EQ(write(theirs.get(), &length, 4), 4);
  EXPECT_THROW(t.recv_bytes(100), xproc::OSError);
  EXPECT_TRUE(t.closed());
  EXPECT_EQ(t.fileno(), -1);
}

TEST(StreamTransportTest, WaitsOnItsOwnDescriptor) {
  auto [a, b] = stream_ends();
  std::vector<int> fds;
  EXPECT_FALSE(b->ready_or_wait_fds(fds));
  EXPECT_EQ(fds, std::vector<int>{b->fileno()});
  EXPECT_EQ(b->wait_fileno(), b->fileno());
  EXPECT_FALSE(b->shared_memory());
  EXPECT_THROW(b->shared_memory_handles(), xproc::ValueError);
}

// --- the ring's wire: records in shared memory, large payloads on the socket -----------

// One end of a duplex pipe, and the other end's socket and rings as they are.
struct OneRingEnd {
  std::shared_ptr<RingPipe> pipe;
  Fd peer_socket;
  std::unique_ptr<RingTransport> end;

  explicit OneRingEnd(size_t ring_bytes) {
    auto [a, b] = socket_pair(SOCK_SEQPACKET);
    pipe = std::make_shared<RingPipe>(ring_bytes, 0, true);
    peer_socket = std::move(b);
    xproc::ConnectionOptions options;
    options.pipe_ring_bytes = ring_bytes;
    end = std::make_unique<RingTransport>(std::move(a), pipe, 0, true, true, options);
  }
  // The next record end 0 sent, as it lies in ring 0.
  std::string take_record() const {
    std::string record;
    EXPECT_TRUE(pipe->ring[0].get_in_place([&](std::span<const std::byte> r) { record = text(r); }, false));
    return record;
  }
};

TEST(RingTransportTest, SmallPayloadIsOneInlineRecord) {
  OneRingEnd one(4096);
  EXPECT_EQ(one.pipe->inline_limit, 1024u);  // a quarter of the ring
  const std::span<const std::byte> parts[] = {as_bytes("ab"), as_bytes("c")};
  one.end->send_parts(parts, 3);
  EXPECT_EQ(one.take_record(), std::string("\0\0\0\0\0\0\0\0abc", 11));  // kind 0, reserved, payload
  Filler filler{"de"};
  ASSERT_TRUE(one.end->try_send_in_place(2, &Filler::fill, &filler));
  EXPECT_EQ(one.take_record(), std::string("\0\0\0\0\0\0\0\0de", 10));
  EXPECT_EQ(one.pipe->ring[0].qsize(), 0u);
}

TEST(RingTransportTest, LargePayloadIsAMarkerThenNumberedChunksOnTheSocket) {
  OneRingEnd one(4096);
  std::string big(70000, 'b');
  big[65536] = 'c';
  const std::span<const std::byte> parts[] = {as_bytes(big)};
  one.end->send_parts(parts, big.size());
  one.end->send_parts(parts, big.size());
  for (uint64_t seq : {1, 2}) {
    xproc::detail::PipeRecord marker{};
    const std::string record = one.take_record();
    ASSERT_EQ(record.size(), sizeof(marker));
    std::memcpy(&marker, record.data(), sizeof(marker));
    EXPECT_EQ(marker.kind, xproc::detail::PipeRecord::kLarge);
    EXPECT_EQ(marker.large_size, big.size());
    EXPECT_EQ(marker.large_seq, seq);
    for (uint64_t offset : {uint64_t{0}, uint64_t{65536}}) {  // one packet per chunk
      std::string packet(80000, '\0');
      const ssize_t n = recv(one.peer_socket.get(), packet.data(), packet.size(), 0);
      const size_t expected = std::min<size_t>(65536, big.size() - offset);
      ASSERT_EQ(n, static_cast<ssize_t>(16 + expected));
      xproc::detail::LargeChunk header{};
      std::memcpy(&header, packet.data(), sizeof(header));
      EXPECT_EQ(header.seq, seq);
      EXPECT_EQ(header.offset, offset);
      EXPECT_EQ(packet.substr(16, expected), big.substr(offset, expected));
    }
  }
}

TEST(RingTransportTest, OnlyAnArmedDirectionGetsAWakeUpToken) {
  OneRingEnd one(4096);
  auto& direction = one.pipe->control->direction[0];
  const std::span<const std::byte> parts[] = {as_bytes("x")};
  one.end->send_parts(parts, 1);
  pollfd token{one.peer_socket.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&token, 1, 0), 0);  // nobody asleep: no token
  direction.armed.store(1);            // as a receiver does before it sleeps
  one.end->send_parts(parts, 1);
  EXPECT_EQ(direction.armed.load(), 0u);
  EXPECT_EQ(::poll(&token, 1, 0), 1);
  char packet[64];
  EXPECT_EQ(recv(one.peer_socket.get(), packet, sizeof(packet), MSG_DONTWAIT), 1);  // one byte
  EXPECT_EQ(recv(one.peer_socket.get(), packet, sizeof(packet), MSG_DONTWAIT), -1);
}

TEST(RingTransportTest, ASleepingReceiverTakesTokensAndStaleChunksButNotALiveReadersChunk) {
  auto [a, b] = ring_ends();
  const int socket = b->shared_memory_handles().socket;
  auto waiting = [socket] {
    pollfd p{socket, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  };
  // A token and a chunk whose marker no reader will take (its sender gave it up) are taken
  // by a receiver that looks and finds nothing.
  const char token = 0;
  const xproc::detail::LargeChunk stale{7, 0};
  const int peer = a->shared_memory_handles().socket;
  ASSERT_EQ(send(peer, &token, 1, 0), 1);
  ASSERT_EQ(send(peer, &stale, sizeof(stale), 0), static_cast<ssize_t>(sizeof(stale)));
  EXPECT_FALSE(b->poll(std::chrono::milliseconds(0)));
  EXPECT_FALSE(waiting());
  // A large message's chunks stay for the reader that takes its marker, tokens around them.
  const std::string big(70000, 'L');  // two chunks, the socket's buffer holds them
  const std::span<const std::byte> parts[] = {as_bytes(big)};
  a->send_parts(parts, big.size());
  ASSERT_EQ(send(peer, &token, 1, 0), 1);
  EXPECT_TRUE(b->poll(std::chrono::milliseconds(0)));
  EXPECT_EQ(text(b->recv_bytes(1 << 20)), big);
  EXPECT_FALSE(b->poll(std::chrono::milliseconds(0)));
  EXPECT_FALSE(waiting());
  // An empty packet (no sender makes one) is taken too; a packet carrying a descriptor
  // (send_handle's) is left for the receive that asks for it, with its descriptor.
  ASSERT_EQ(send(peer, nullptr, 0, 0), 0);
  EXPECT_FALSE(b->poll(std::chrono::milliseconds(0)));
  EXPECT_FALSE(waiting());
  const int passed = ::eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(passed, 0);
  ASSERT_TRUE(xproc::rpc::send_with_descriptor(peer, as_bytes("\1"), passed));  // as send_handle's
  ::close(passed);
  EXPECT_FALSE(b->poll(std::chrono::milliseconds(0)));
  EXPECT_TRUE(waiting());
  char one = 0;
  iovec data{&one, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr handle{};
  handle.msg_iov = &data;
  handle.msg_iovlen = 1;
  handle.msg_control = control;
  handle.msg_controllen = sizeof(control);
  ASSERT_EQ(recvmsg(socket, &handle, 0), 1);
  const cmsghdr* rights = CMSG_FIRSTHDR(&handle);
  ASSERT_NE(rights, nullptr);
  ASSERT_EQ(rights->cmsg_type, SCM_RIGHTS);
  int received = -1;
  std::memcpy(&received, CMSG_DATA(rights), sizeof(int));
  EXPECT_GE(received, 0);
  ::close(received);
}

TEST(RingTransportTest, FilenoIsReadableExactlyWhileMessagesWait) {
  auto [a, b] = ring_ends();
  const int fd = b->fileno();
  auto readable = [fd] {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  };
  EXPECT_FALSE(readable());
  const std::span<const std::byte> parts[] = {as_bytes("one")};
  a->send_parts(parts, 3);
  a->send_parts(parts, 3);
  EXPECT_TRUE(readable());
  b->recv_bytes(10);
  EXPECT_TRUE(readable());
  b->recv_bytes(10);
  EXPECT_FALSE(readable());
  // Drained, it is armed: the next send makes it readable again.
  a->send_parts(parts, 3);
  EXPECT_TRUE(readable());
  b->recv_bytes(10);
  EXPECT_FALSE(readable());
}

TEST(RingTransportTest, FilenoSeesMessagesThatCameBeforeIt) {
  auto [a, b] = ring_ends();
  const std::span<const std::byte> parts[] = {as_bytes("early")};
  a->send_parts(parts, 5);  // no receiver armed: no token
  pollfd p{b->fileno(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 1);
  EXPECT_EQ(text(b->recv_bytes(10)), "early");
  EXPECT_EQ(::poll(&p, 1, 0), 0);
}

TEST(RingTransportTest, WaitsOnTheSocket) {
  auto [a, b] = ring_ends();
  std::vector<int> fds;
  EXPECT_FALSE(b->ready_or_wait_fds(fds));
  ASSERT_EQ(fds.size(), 1u);
  EXPECT_EQ(fds[0], b->shared_memory_handles().socket);  // what end 0 sends wakes end 1
  EXPECT_EQ(b->wait_fileno(), fds[0]);
  const std::span<const std::byte> parts[] = {as_bytes("x")};
  a->send_parts(parts, 1);
  fds.clear();
  EXPECT_TRUE(b->ready_or_wait_fds(fds));
  EXPECT_TRUE(fds.empty());
}

TEST(RingTransportTest, AdoptedDuplicatesReachTheSameRings) {
  auto [a, b] = ring_ends();
  const auto h = b->shared_memory_handles();
  EXPECT_EQ(h.side, 1);
  xproc::ByteConnection::SharedMemoryHandles copy = h;
  for (int* fd : {&copy.socket, &copy.memory}) {
    *fd = dup(*fd);
  }
  auto adopted = RingTransport::adopt(copy, {});
  b->close();
  const std::span<const std::byte> parts[] = {as_bytes("to the copy")};
  a->send_parts(parts, 11);
  EXPECT_EQ(text(adopted->recv_bytes(100)), "to the copy");
  const std::span<const std::byte> back[] = {as_bytes("back")};
  adopted->send_parts(back, 4);
  EXPECT_EQ(text(a->recv_bytes(100)), "back");
}

}  // namespace
