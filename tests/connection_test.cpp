// Tests for Pipe, Connection, Listener and Client: framing, typed and Value messages,
// dead peers, hostile frames and handshakes, poll and wait.
#include "xproc/connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "support/test_support.h"
#include "xproc/listener.h"
#include "xproc/process.h"
#include "xproc/ring_pipe_internal.h"
#include "xproc/shm/segment.h"

namespace {

using namespace std::chrono_literals;
using xproc::ByteConnection;
using xproc::Value;

std::vector<std::byte> bytes(std::string_view s) {
  auto p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}
std::string text(const std::vector<std::byte>& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

void write_raw(int fd, const void* data, size_t n) { ASSERT_EQ(write(fd, data, n), static_cast<ssize_t>(n)); }

// A Pipe as CPython makes it (a socket pair, or one way an OS pipe when SIGPIPE is
// ignored), without shared-memory rings: for the tests of the descriptor-level framing
// that Listener and Client connections use too.
std::pair<ByteConnection, ByteConnection> plain_pipe(bool duplex) {
  xproc::ConnectionOptions options;
  options.pipe_ring_bytes = 0;
  return xproc::byte_pipe(duplex, options);
}
std::pair<ByteConnection, ByteConnection> socket_pipe() { return plain_pipe(true); }

void set_sigpipe(void (*disposition)(int)) {
  struct sigaction action {};
  action.sa_handler = disposition;
  ASSERT_EQ(sigaction(SIGPIPE, &action, nullptr), 0);
}

TEST(ConnectionTest, DuplexPipeSendsBothWays) {
  auto [a, b] = xproc::byte_pipe();
  a.send_bytes(bytes("ping"));
  EXPECT_EQ(text(b.recv_bytes()), "ping");
  b.send_bytes(bytes("pong"));
  EXPECT_EQ(text(a.recv_bytes()), "pong");
}

TEST(ConnectionTest, FramingIsFourByteBigEndianLength) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  ByteConnection sender(fds[0], true, true);
  sender.send_bytes(bytes("abc"));
  unsigned char raw[7];
  ASSERT_EQ(read(fds[1], raw, sizeof(raw)), 7);
  EXPECT_EQ(std::vector<unsigned char>(raw, raw + 7), (std::vector<unsigned char>{0, 0, 0, 3, 'a', 'b', 'c'}));
  close(fds[1]);
}

TEST(ConnectionTest, SendBytesHonoursOffsetAndSize) {
  auto [a, b] = xproc::byte_pipe();
  a.send_bytes(bytes("0123456789"), 2, 3);
  EXPECT_EQ(text(b.recv_bytes()), "234");
  EXPECT_THROW(a.send_bytes(bytes("abc"), 4), xproc::ValueError);
  EXPECT_THROW(a.send_bytes(bytes("abc"), 1, 5), xproc::ValueError);
}

TEST(ConnectionTest, ManySmallAndSomeLargeMessagesArriveWhole) {
  auto [a, b] = xproc::byte_pipe();
  std::thread sender([&a] {
    for (int i = 0; i < 2000; ++i) a.send_bytes(bytes(std::string(i % 97, 'x') + std::to_string(i)));
    a.send_bytes(bytes(std::string(3 << 20, 'L')));
  });
  for (int i = 0; i < 2000; ++i) ASSERT_EQ(text(b.recv_bytes()), std::string(i % 97, 'x') + std::to_string(i));
  EXPECT_EQ(b.recv_bytes().size(), 3u << 20);
  sender.join();
}

// try_send_in_place never waits: when the socket is full it keeps the rest of the frame,
// finish_send() completes it, and frames still arrive whole and in order.
// Offers frames without waiting until the fd is full, then checks the kept rest goes out
// whole and in order once finish_send() can write it.
void try_send_until_full_then_finish(bool duplex) {
  auto [first, second] = plain_pipe(duplex);
  auto& a = duplex ? first : second;  // one way: the second end writes
  auto& b = duplex ? second : first;
  const std::string payload(1000, 'p');
  auto fill = [&](std::byte* out) { std::memcpy(out, payload.data(), payload.size()); };
  size_t sent = 0;
  while (a.try_send_in_place(payload.size(), fill)) ++sent;  // until the fd's buffer is full
  ASSERT_GT(sent, 0u);
  EXPECT_THROW(a.try_send_in_place(3, [](std::byte*) {}), xproc::ValueError);  // finish first
  std::thread receiver([&b = b, &sent] {
    for (size_t i = 0; i <= sent; ++i) EXPECT_EQ(b.recv_bytes().size(), 1000u);
    EXPECT_EQ(text(b.recv_bytes()), "after");
  });
  a.finish_send();  // blocks until the receiver makes room
  a.send_bytes(bytes("after"));
  receiver.join();
  EXPECT_THROW(a.try_send_in_place(ByteConnection::kSmallFrameLimit + 1, [](std::byte*) {}), xproc::ValueError);
}

TEST(ConnectionTest, TrySendInPlaceKeepsWhatAFullSocketCannotTake) { try_send_until_full_then_finish(true); }

TEST(ConnectionTest, TrySendInPlaceKeepsWhatAFullPipeCannotTake) {
  set_sigpipe(SIG_IGN);  // so that plain_pipe(false) makes an OS pipe
  try_send_until_full_then_finish(false);
  set_sigpipe(SIG_DFL);
}

TEST(ConnectionTest, TrySendInPlaceKeepsWhatAFullOneWaySocketCannotTake) { try_send_until_full_then_finish(false); }

// send_if_room never waits: a full shared-memory ring or socket turns a message away whole
// (kNoRoom, nothing kept), a socket that takes part of one (kBegun) keeps the rest for
// try_finish_send(), and every message offered and accepted arrives whole and in order.
void send_if_room_until_full(std::pair<ByteConnection, ByteConnection> ends, size_t size) {
  auto& [a, b] = ends;
  const std::string payload(size, 'r');
  auto fill = [&](std::byte* out) { std::memcpy(out, payload.data(), payload.size()); };
  size_t accepted = 0;
  ByteConnection::SendAttempt outcome;
  while ((outcome = a.send_if_room(payload.size(), fill)) == ByteConnection::SendAttempt::kSent) ++accepted;
  ASSERT_GT(accepted, 0u);
  if (outcome == ByteConnection::SendAttempt::kBegun) ++accepted;  // its rest is kept
  if (a.shared_memory()) {
    EXPECT_EQ(outcome, ByteConnection::SendAttempt::kNoRoom);  // a ring takes a record whole or not at all
    EXPECT_NE(a.send_ring(), nullptr);
  } else {
    EXPECT_EQ(a.send_ring(), nullptr);
  }
  std::thread receiver([&b = b, accepted, size] {
    for (size_t i = 0; i < accepted; ++i) ASSERT_EQ(b.recv_bytes().size(), size);
    EXPECT_EQ(text(b.recv_bytes()), "after");
  });
  while (!a.try_finish_send()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  while (a.send_if_room(5, [](std::byte* out) { std::memcpy(out, "after", 5); }) !=
         ByteConnection::SendAttempt::kSent) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  receiver.join();
}

TEST(ConnectionTest, SendIfRoomTurnsAwayWholeMessagesFromAFullRing) {
  xproc::ConnectionOptions options;
  options.pipe_ring_bytes = 64 << 10;
  send_if_room_until_full(xproc::byte_pipe(true, options), 1000);
}

TEST(ConnectionTest, SendIfRoomKeepsTheRestOfAFrameASocketTookInPart) { send_if_room_until_full(socket_pipe(), 1000); }

TEST(ConnectionTest, SendIfRoomSendsAMessageLargerThanTheBufferBlocking) {
  auto [a, b] = xproc::byte_pipe();
  const std::string big(1 << 20, 'L');
  std::thread receiver([&b = b, &big] { EXPECT_EQ(text(b.recv_bytes()), big); });
  EXPECT_EQ(a.send_if_room(big.size(), [&](std::byte* out) { std::memcpy(out, big.data(), big.size()); }),
            ByteConnection::SendAttempt::kSent);
  receiver.join();
}

TEST(ConnectionTest, SendIfRoomOnAClosedOrReadOnlyEndRaises) {
  auto [reader, writer] = xproc::byte_pipe(false);
  EXPECT_THROW(reader.send_if_room(1, [](std::byte*) {}), xproc::Error);
  EXPECT_EQ(reader.send_ring(), nullptr);
  writer.close();
  EXPECT_THROW(writer.send_if_room(1, [](std::byte*) {}), xproc::Error);
  EXPECT_THROW(writer.try_finish_send(), xproc::Error);
}

TEST(ConnectionTest, TryRecvInPlaceTakesOnlyWholeFramesThatAreHere) {
  auto [a, b] = socket_pipe();
  auto take = [&b = b] {
    std::string got;
    const bool ok = b.try_recv_in_place(
        [&](std::span<const std::byte> m) { got.assign(reinterpret_cast<const char*>(m.data()), m.size()); });
    return ok ? std::optional<std::string>(got) : std::nullopt;
  };
  EXPECT_EQ(take(), std::nullopt);  // nothing sent: false at once, no waiting
  a.send_bytes(bytes("one"));
  a.send_bytes(bytes("two"));
  EXPECT_EQ(take(), "one");
  EXPECT_THROW(b.try_recv_in_place([](std::span<const std::byte>) { throw xproc::DecodeError("bad"); }),
               xproc::DecodeError);  // consumed all the same
  const uint32_t half_header = htonl(10);
  write_raw(a.fileno(), &half_header, 4);
  write_raw(a.fileno(), "12345", 5);
  EXPECT_EQ(take(), std::nullopt);  // half a frame stays for later
  write_raw(a.fileno(), "67890", 5);
  EXPECT_EQ(take(), "1234567890");
  a.close();
  EXPECT_EQ(take(), std::nullopt);  // EOF is recv_bytes' to report
  EXPECT_THROW(b.recv_bytes(), xproc::EOFError);
}

TEST(ConnectionTest, TryRecvInPlaceOnAPipeReadsWithoutWaiting) {
  set_sigpipe(SIG_IGN);  // so that plain_pipe(false) makes an OS pipe
  auto [reader, writer] = plain_pipe(false);
  set_sigpipe(SIG_DFL);
  struct stat st {};
  ASSERT_EQ(fstat(reader.fileno(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  std::string got;
  auto keep = [&got](std::span<const std::byte> m) { got.assign(reinterpret_cast<const char*>(m.data()), m.size()); };
  EXPECT_FALSE(reader.try_recv_in_place(keep));  // empty: false at once
  writer.send_bytes(bytes("one"));
  EXPECT_TRUE(reader.try_recv_in_place(keep));
  EXPECT_EQ(got, "one");
}

TEST(ConnectionTest, LargeMessagesCrossANonBlockingPipeWhole) {
  // Larger than the pipe's 64 KiB: the writer meets EAGAIN part-way and waits in poll(),
  // the reader reads straight into the message and waits the same way.
  set_sigpipe(SIG_IGN);  // so that plain_pipe(false) makes an OS pipe
  auto [reader, writer] = plain_pipe(false);
  set_sigpipe(SIG_DFL);
  std::string big(3u << 20, 'b');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + (i / 4096) % 26);
  std::thread sender([&writer = writer, &big] {
    for (int i = 0; i < 3; ++i) writer.send_bytes(bytes(big));
    writer.send_bytes(bytes("end"));
  });
  for (int i = 0; i < 3; ++i) EXPECT_EQ(text(reader.recv_bytes()), big);
  EXPECT_EQ(text(reader.recv_bytes()), "end");
  sender.join();
}

TEST(ConnectionTest, NonBlockingSocketHandedInStillBlocksInRecvAndSend) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  ByteConnection a(fds[0], true, true);
  ByteConnection b(fds[1], true, true);
  const std::string big(1u << 20, 'n');  // over the socket buffer: send waits for room
  std::thread sender([&a, &big] {
    std::this_thread::sleep_for(50ms);  // the receiver is blocked in recv by now
    a.send_bytes(bytes(big));
  });
  EXPECT_EQ(text(b.recv_bytes()), big);
  sender.join();
}

TEST(ConnectionTest, OneWayPipeRejectsWrongDirection) {
  for (bool shared_memory : {true, false}) {
    auto [reader, writer] = shared_memory ? xproc::byte_pipe(false) : plain_pipe(false);
    EXPECT_EQ(reader.shared_memory(), shared_memory);
    EXPECT_TRUE(reader.readable());
    EXPECT_FALSE(reader.writable());
    EXPECT_FALSE(writer.readable());
    EXPECT_THROW(reader.send_bytes(bytes("x")), xproc::OSError);
    EXPECT_THROW(writer.recv_bytes(), xproc::OSError);
    EXPECT_THROW(writer.poll(), xproc::OSError);
    writer.send_bytes(bytes("one way"));
    EXPECT_EQ(text(reader.recv_bytes()), "one way");
  }
}

TEST(ConnectionTest, OneWaySharedMemoryPipeCarriesLargeMessagesAndSeesEitherEndGo) {
  auto [reader, writer] = xproc::byte_pipe(false);
  ASSERT_TRUE(writer.shared_memory());
  std::thread sender([&writer = writer] {
    for (int i = 0; i < 200; ++i) writer.send_bytes(bytes(std::string(i % 20 == 0 ? 300000 : i, 'w')));
    writer.close();
  });
  for (int i = 0; i < 200; ++i) ASSERT_EQ(reader.recv_bytes().size(), i % 20 == 0 ? 300000u : static_cast<size_t>(i));
  sender.join();
  EXPECT_THROW(reader.recv_bytes(), xproc::EOFError);
  auto [reader2, writer2] = xproc::byte_pipe(false);
  reader2.close();
  EXPECT_THROW(writer2.send_bytes(bytes("nobody")), xproc::BrokenPipeError);
}

TEST(ConnectionTest, RecvAfterPeerClosedThrowsEOFError) {
  auto [a, b] = xproc::byte_pipe();
  a.send_bytes(bytes("last"));
  a.close();
  EXPECT_EQ(text(b.recv_bytes()), "last");
  EXPECT_THROW(b.recv_bytes(), xproc::EOFError);
}

TEST(ConnectionTest, PeerDyingMidFrameGivesEOFErrorNotPartialMessage) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  ByteConnection reader(fds[1], true, true);
  const uint32_t length = htonl(100);
  write_raw(fds[0], &length, 4);
  write_raw(fds[0], "only part", 9);
  close(fds[0]);
  EXPECT_THROW(reader.recv_bytes(), xproc::EOFError);
}

TEST(ConnectionTest, PeerKilledWhileReaderBlockedGivesEOFError) {
  auto [a, b] = xproc::byte_pipe();
  xproc::Process peer([&b] { pause(); });
  peer.start();
  b.close();  // only the child holds b now
  std::thread killer([&peer] {
    std::this_thread::sleep_for(50ms);
    peer.kill();
  });
  EXPECT_THROW(a.recv_bytes(), xproc::EOFError);
  killer.join();
  peer.join();
}

TEST(ConnectionTest, SendToClosedSocketThrowsBrokenPipeNotSigpipe) {
  auto [a, b] = xproc::byte_pipe();
  b.close();
  EXPECT_THROW(
      {
        for (int i = 0; i < 100; ++i) a.send_bytes(bytes(std::string(65536, 'x')));
      },
      xproc::BrokenPipeError);
}

// Both ways of sending to a one-way Pipe whose reader is gone: BrokenPipeError, no
// signal left pending, the process alive. The Pipe is made under one SIGPIPE disposition
// (which decides between an OS pipe and a socket pair) and used under another.
void send_to_closed_pipe(void (*made_under)(int), void (*sent_under)(int)) {
  set_sigpipe(made_under);
  auto [reader, writer] = plain_pipe(false);
  set_sigpipe(sent_under);
  reader.close();
  EXPECT_THROW(writer.send_bytes(bytes("nobody listens")), xproc::BrokenPipeError);
  EXPECT_THROW(writer.try_send_in_place(3, [](std::byte* out) { std::memcpy(out, "abc", 3); }), xproc::BrokenPipeError);
  sigset_t pending;
  sigpending(&pending);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0) << "the SIGPIPE must be consumed";
  set_sigpipe(SIG_DFL);
}

TEST(ConnectionTest, SendToClosedPipeThrowsBrokenPipeAndProcessSurvives) {
  send_to_closed_pipe(SIG_DFL, SIG_DFL);  // a socket pair
}

TEST(ConnectionTest, SendToClosedPipeThrowsBrokenPipeWhenSigpipeIsIgnored) {
  send_to_closed_pipe(SIG_IGN, SIG_IGN);  // an OS pipe, written without masking
}

TEST(ConnectionTest, SendToClosedPipeMasksSigpipeRestoredToDefaultAfterwards) {
  send_to_closed_pipe(SIG_IGN, SIG_DFL);  // an OS pipe, so each write must mask SIGPIPE
}

TEST(ConnectionTest, SendToClosedBlockingPipeThrowsBrokenPipe) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);  // a blocking pipe handed in by the user
  ByteConnection writer(fds[1], false, true);
  close(fds[0]);
  EXPECT_THROW(writer.send_bytes(bytes("nobody listens")), xproc::BrokenPipeError);
  sigset_t pending;
  sigpending(&pending);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0) << "the SIGPIPE must be consumed";
}

TEST(ConnectionTest, NegativeLengthClosesConnectionWithOSError) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  ByteConnection reader(fds[1], true, true);
  const int32_t length = static_cast<int32_t>(htonl(static_cast<uint32_t>(-5)));
  write_raw(fds[0], &length, 4);
  EXPECT_THROW(reader.recv_bytes(), xproc::OSError);
  EXPECT_TRUE(reader.closed());
  close(fds[0]);
}

TEST(ConnectionTest, AbsurdLengthIsRejectedWithoutAllocating) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  ByteConnection reader(fds[1], true, true);
  const int32_t marker = static_cast<int32_t>(htonl(static_cast<uint32_t>(-1)));
  const uint64_t huge = htobe64(uint64_t{1} << 62);
  write_raw(fds[0], &marker, 4);
  write_raw(fds[0], &huge, 8);
  EXPECT_THROW(reader.recv_bytes(), xproc::OSError);
  EXPECT_TRUE(reader.closed());
  close(fds[0]);
}

TEST(ConnectionTest, LyingLengthThenCloseCostsNoHugeAllocation) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  ByteConnection reader(fds[1], true, true);  // default limit 1 GiB
  const uint32_t length = htonl(900u << 20);  // claims 900 MiB, sends 3 bytes
  write_raw(fds[0], &length, 4);
  write_raw(fds[0], "abc", 3);
  close(fds[0]);
  EXPECT_THROW(reader.recv_bytes(), xproc::EOFError);
}

TEST(ConnectionTest, RecvBytesOverMaxlengthClosesWithOSError) {
  auto [a, b] = xproc::byte_pipe();
  a.send_bytes(bytes("0123456789"));
  EXPECT_THROW(b.recv_bytes(5), xproc::OSError);
  EXPECT_TRUE(b.closed());
}

TEST(ConnectionTest, RecvBytesIntoFillsBufferOrThrowsBufferTooShort) {
  auto [a, b] = xproc::byte_pipe();
  a.send_bytes(bytes("hello"));
  a.send_bytes(bytes("too long for it"));
  std::vector<std::byte> buffer(8);
  EXPECT_EQ(b.recv_bytes_into(buffer, 2), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buffer.data()) + 2, 5), "hello");
  try {
    b.recv_bytes_into(buffer);
    FAIL() << "expected BufferTooShort";
  } catch (const xproc::BufferTooShort& e) {
    EXPECT_EQ(e.message(), "too long for it");
  }
}

TEST(ConnectionTest, GarbagePayloadGivesDecodeErrorAndConnectionStaysUsable) {
  auto [a, b] = xproc::byte_pipe();
  xproc::Connection<Value> typed(std::move(b));
  a.send_bytes(bytes("definitely not capnp!!!!"));
  a.send_bytes(bytes("odd"));
  xproc::Connection<Value> sender(std::move(a));
  sender.send(Value::list({1, "two"}));
  EXPECT_THROW(typed.recv(), xproc::DecodeError);
  EXPECT_THROW(typed.recv(), xproc::DecodeError);
  EXPECT_EQ(typed.recv().repr(), "[1, 'two']");
}

TEST(ConnectionTest, ValueConnectionCarriesValuesLargerThanTheInlineFirstSegment) {
  auto [a, b] = xproc::Pipe<Value>();
  Value::List items;
  for (int i = 0; i < 20000; ++i) items.push_back(Value::list({i, std::string(40, 'y')}));
  const Value big(std::move(items));
  std::thread sender([&a = a, &big] {
    a.send(big);
    a.send(Value("small after it"));
  });
  EXPECT_EQ(b.recv(), big);
  EXPECT_EQ(b.recv().repr(), "'small after it'");
  sender.join();
}

TEST(ConnectionTest, TypedConnectionCarriesCapnpMessages) {
  auto [a, b] = xproc::Pipe<xproc::schema::Value>();
  capnp::MallocMessageBuilder builder;
  builder.initRoot<xproc::schema::Value>().setText("typed");
  a.send(builder.getRoot<xproc::schema::Value>().asReader());
  a.send(builder);
  EXPECT_STREQ(b.recv()->getText().cStr(), "typed");
  EXPECT_STREQ(b.recv()->getText().cStr(), "typed");
}

// The common behaviour of both duplex transports, run over each.
class DuplexPipeTest : public ::testing::TestWithParam<bool> {
 protected:
  std::pair<ByteConnection, ByteConnection> pipe() const { return GetParam() ? xproc::byte_pipe() : socket_pipe(); }
};
INSTANTIATE_TEST_SUITE_P(Transports, DuplexPipeTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return param.param ? "SharedMemory" : "SocketPair";
                         });

TEST_P(DuplexPipeTest, SendsBothWaysInOrderWithLargeMessages) {
  auto [a, b] = pipe();
  EXPECT_EQ(a.shared_memory(), GetParam());
  std::thread sender([&a = a] {
    for (int i = 0; i < 3000; ++i) {
      const size_t size = i % 100 == 0 ? (70000u + static_cast<size_t>(i)) : static_cast<size_t>(i % 300);
      a.send_bytes(bytes(std::to_string(i) + std::string(size, 'x')));
    }
  });
  for (int i = 0; i < 3000; ++i) {
    const size_t size = i % 100 == 0 ? (70000u + static_cast<size_t>(i)) : static_cast<size_t>(i % 300);
    ASSERT_EQ(text(b.recv_bytes()), std::to_string(i) + std::string(size, 'x'));
  }
  sender.join();
  b.send_bytes(bytes("back"));
  EXPECT_EQ(text(a.recv_bytes()), "back");
}

TEST_P(DuplexPipeTest, SendPartsJoinsThemIntoOneMessageOfAnySize) {
  auto [a, b] = pipe();
  const std::string first(70000, 'a'), second(100001, 'b'), small = "tail";
  const std::vector<std::byte> p1 = bytes(first), p2 = bytes(second), p3 = bytes(small);
  const std::span<const std::byte> large_parts[] = {p1, {}, p2, p3};
  std::thread sender([&a = a, &large_parts, &p3] {
    a.send_parts(large_parts);
    const std::span<const std::byte> small_parts[] = {p3, p3};
    a.send_parts(small_parts);
  });
  EXPECT_EQ(text(b.recv_bytes()), first + second + small);
  EXPECT_EQ(text(b.recv_bytes()), small + small);
  sender.join();
}

TEST_P(DuplexPipeTest, SendAfterPeerClosedThrowsBrokenPipeAtOnce) {
  auto [a, b] = pipe();
  a.send_bytes(bytes("just before"));  // the peer was alive a moment ago
  b.close();
  EXPECT_THROW(a.send_bytes(bytes("x")), xproc::BrokenPipeError);
  EXPECT_THROW(a.send_bytes(bytes(std::string(100000, 'x'))), xproc::BrokenPipeError);
}

TEST_P(DuplexPipeTest, PeerKilledWhileReceivingGivesBrokenPipeToTheSender) {
  auto [a, b] = pipe();
  xproc::Process peer([&b = b] {
    for (;;) b.recv_bytes();  // spins, then sleeps, in recv until killed
  });
  peer.start();
  b.close();
  a.send_bytes(bytes("first"));
  std::this_thread::sleep_for(50ms);
  peer.kill();
  peer.join();
  EXPECT_THROW(a.send_bytes(bytes("after")), xproc::BrokenPipeError);
  EXPECT_THROW(a.recv_bytes(), xproc::EOFError);
}

TEST_P(DuplexPipeTest, FilenoIsReadableExactlyWhileMessagesWait) {
  auto [a, b] = pipe();
  auto readable = [fd = b.fileno()] {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  };
  EXPECT_FALSE(readable());
  a.send_bytes(bytes("one"));
  a.send_bytes(bytes("two"));
  EXPECT_TRUE(readable());
  EXPECT_EQ(text(b.recv_bytes()), "one");
  if (GetParam()) {           // (a socket's reader buffers ahead: "two" is no longer in the kernel)
    EXPECT_TRUE(readable());  // "two" still waits
  }
  EXPECT_EQ(text(b.recv_bytes()), "two");
  EXPECT_FALSE(readable());
  std::thread later([&a = a] {
    std::this_thread::sleep_for(20ms);
    a.send_bytes(bytes("three"));
  });
  pollfd p{b.fileno(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 5000), 1);  // a sleeping select() is woken by a send
  EXPECT_EQ(text(b.recv_bytes()), "three");
  later.join();
  a.close();
  EXPECT_TRUE(readable());  // the hang-up
  EXPECT_THROW(b.recv_bytes(), xproc::EOFError);
}

TEST_P(DuplexPipeTest, PollInAnotherProcessIsWokenBySend) {
  auto [a, b] = pipe();
  xproc::Process child([&b = b] {
    if (!b.poll(10s)) _exit(2);
    b.send_bytes(b.recv_bytes());  // echo
  });
  child.start();
  std::this_thread::sleep_for(30ms);  // let it fall asleep
  a.send_bytes(bytes("wake"));
  EXPECT_TRUE(a.poll(10s));
  EXPECT_EQ(text(a.recv_bytes()), "wake");
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

TEST_P(DuplexPipeTest, RecvBytesOverMaxlengthOfALargeMessageClosesWithOSError) {
  auto [a, b] = pipe();
  std::thread sender([&a = a] { a.send_bytes(bytes(std::string(200000, 'L'))); });
  EXPECT_THROW(b.recv_bytes(1000), xproc::OSError);
  EXPECT_TRUE(b.closed());
  sender.join();
}

// Shared-memory ends only: a socket end's reader buffers ahead, so one child may read the
// replies meant for the other.
TEST(ConnectionTest, ChildrenSharingOnePipeEndEachGetWholeMessages) {
  auto [parent, shared] = xproc::byte_pipe();
  std::vector<xproc::Process> children;
  for (int k = 0; k < 2; ++k) {
    children.emplace_back([&shared = shared, k] {
      for (int i = 0; i < 500; ++i) shared.send_bytes(bytes("child " + std::to_string(k) + " " + std::to_string(i)));
      for (int i = 0; i < 500; ++i) {
        const std::string m = text(shared.recv_bytes());
        if (m.rfind("reply ", 0) != 0) _exit(3);
      }
    });
    children.back().start();
  }
  shared.close();
  int next[2] = {0, 0};
  for (int i = 0; i < 1000; ++i) {
    const std::string m = text(parent.recv_bytes());
    const int k = m[6] - '0';
    ASSERT_EQ(m, "child " + std::to_string(k) + " " + std::to_string(next[k]));  // per-sender order
    ++next[k];
    parent.send_bytes(bytes("reply " + std::to_string(i)));
  }
  for (auto& c : children) {
    c.join();
    EXPECT_EQ(c.exitcode(), 0);
  }
}

TEST(ConnectionTest, PipeRingOfZeroBytesIsAPlainSocketPair) {
  auto [a, b] = socket_pipe();
  EXPECT_FALSE(a.shared_memory());
  struct stat st {};
  ASSERT_EQ(fstat(a.fileno(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  auto [c, d] = xproc::byte_pipe();
  EXPECT_TRUE(c.shared_memory());
}

TEST(ConnectionTest, PipeFallsBackOnASocketPairWhenSharedMemoryCannotBeHad) {
  // In a child whose files may not grow past 64 KiB, so the rings' memory cannot be
  // reserved. (A limit on descriptors would do as well, but the sanitizers' runtime needs
  // spare descriptors of its own.)
  xproc::Process child([] {
    signal(SIGXFSZ, SIG_IGN);  // the reservation fails with EFBIG instead
    rlimit limit{64 * 1024, 64 * 1024};
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(2);
    auto [a, b] = xproc::byte_pipe();
    if (a.shared_memory()) _exit(3);
    a.send_bytes(bytes("still a pipe"));
    _exit(text(b.recv_bytes()) == "still a pipe" ? 0 : 4);
  });
  child.start();
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

TEST(ConnectionTest, PipeRingBytesOutOfRangeIsValueError) {
  xproc::ConnectionOptions options;
  options.pipe_ring_bytes = 10;
  EXPECT_THROW(xproc::byte_pipe(true, options), xproc::ValueError);
  options.pipe_ring_bytes = uint64_t{1} << 32;
  EXPECT_THROW(xproc::byte_pipe(false, options), xproc::ValueError);
}

TEST(ConnectionTest, SmallRingSendsWhatItCannotCarryOverTheSocket) {
  xproc::ConnectionOptions options;
  options.pipe_ring_bytes = 1024;  // carries payloads of up to 256 bytes inline
  auto [a, b] = xproc::byte_pipe(true, options);
  ASSERT_TRUE(a.shared_memory());
  const std::string payload(1000, 'p');
  std::thread receiver([&b = b, &payload] {
    for (int i = 0; i < 3; ++i) EXPECT_EQ(text(b.recv_bytes()), i == 1 ? "small" : payload);
  });
  // The in-place offer keeps what the ring cannot carry; finish_send() sends it.
  if (!a.try_send_in_place(payload.size(), [&](std::byte* out) { std::memcpy(out, payload.data(), payload.size()); })) {
    a.finish_send();
  }
  a.send_bytes(bytes("small"));
  a.send_bytes(bytes(payload));
  receiver.join();
}

// Bytes of memory a pipe end's shared memory holds now (its control block and rings).
size_t pipe_memory(const ByteConnection& end) {
  const auto handles = end.shared_memory_handles();
  struct stat st {};
  EXPECT_EQ(fstat(handles.memory, &st), 0);
  return static_cast<size_t>(st.st_blocks) * 512;
}

TEST(ConnectionTest, IdlePipeHoldsUnder128KiBOfSharedMemory) {
  for (bool duplex : {true, false}) {
    auto [a, b] = xproc::byte_pipe(duplex);
    ASSERT_TRUE(a.shared_memory());
    EXPECT_LE(pipe_memory(a), size_t{128} << 10) << "duplex " << duplex;
  }
  xproc::ConnectionOptions preallocated;
  preallocated.pipe_reserved_bytes = preallocated.pipe_ring_bytes;
  auto [c, d] = xproc::byte_pipe(true, preallocated);
  EXPECT_GE(pipe_memory(c), 2 * preallocated.pipe_ring_bytes);
}

TEST(ConnectionTest, PipeRingGrowsForWhatWaitsAndGivesItBackOnceDrained) {
  xproc::ConnectionOptions options;
  options.pipe_ring_bytes = size_t{8} << 20;
  auto [a, b] = xproc::byte_pipe(true, options);
  ASSERT_TRUE(a.shared_memory());
  const std::string payload(60 << 10, 'g');                   // inline: under 64 KiB
  for (int i = 0; i < 64; ++i) a.send_bytes(bytes(payload));  // no receiver yet: none blocks
  EXPECT_GE(pipe_memory(a), size_t{3} << 20);
  for (int i = 0; i < 64; ++i) ASSERT_EQ(b.recv_bytes().size(), payload.size());
  // A receiver that waits (here in poll) gives the memory back once it has settled.
  EXPECT_FALSE(b.poll(500ms));
  EXPECT_LE(pipe_memory(a), size_t{128} << 10);
  a.send_bytes(bytes("after"));
  EXPECT_EQ(text(b.recv_bytes()), "after");
}

TEST(ConnectionTest, HundredsOfPipesWorkUnderTheUsualDescriptorLimit) {
  // Past half the limit pipes are socket pairs: a program making 400 at 1024 descriptors
  // gets 400 working pipes, not EMFILE.
  xproc::Process child([] {
    rlimit limit{1024, 1024};
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(2);
    std::vector<std::pair<ByteConnection, ByteConnection>> pipes;
    size_t shared = 0;
    for (int i = 0; i < 400; ++i) {
      pipes.push_back(xproc::byte_pipe());
      shared += pipes.back().first.shared_memory() ? 1 : 0;
    }
    for (auto& [a, b] : pipes) {
      a.send_bytes(bytes("ping"));
      if (text(b.recv_bytes()) != "ping") _exit(3);
    }
    _exit(shared > 0 && shared < 400 ? 0 : 4);
  });
  child.start();
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

TEST(ConnectionTest, GarbageInThePipesRingIsDecodeErrorForThatRecordOnly) {
  auto [a, b] = xproc::byte_pipe();
  // Another process scribbling records into the ring that a's messages travel in.
  const auto handles = a.shared_memory_handles();
  auto memory = std::make_shared<const xproc::shm::Segment>(xproc::shm::Segment::adopt(dup(handles.memory)));
  const auto* control = reinterpret_cast<const xproc::detail::PipeControl*>(memory->data());
  auto ring = xproc::ByteQueue::attach_in(memory, control->ring_offset[handles.side],
                                          control->ring_length[handles.side], "the ring");
  const uint32_t unknown_kind[2] = {7, 0};
  const uint64_t large_of_size_zero[3] = {1, 0, 1};
  ring.put_bytes(bytes("xx"));  // shorter than a record header
  ring.put_bytes(std::span(reinterpret_cast<const std::byte*>(unknown_kind), sizeof(unknown_kind)));
  ring.put_bytes(std::span(reinterpret_cast<const std::byte*>(large_of_size_zero), sizeof(large_of_size_zero)));
  a.send_bytes(bytes("fine"));
  for (int i = 0; i < 3; ++i) EXPECT_THROW(b.recv_bytes(), xproc::DecodeError);
  EXPECT_EQ(text(b.recv_bytes()), "fine");
}

TEST(ConnectionTest, AdoptingDescriptorsThatAreNotAPipeIsValueErrorAndClosesThemAll) {
  auto [a, b] = xproc::byte_pipe();
  const auto real = a.shared_memory_handles();
  auto duplicates = [&] {
    ByteConnection::SharedMemoryHandles h = real;
    h.socket = dup(real.socket);
    h.memory = dup(real.memory);
    return h;
  };
  auto all_closed = [](const ByteConnection::SharedMemoryHandles& h) {
    for (int fd : {h.socket, h.memory}) {
      if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) return false;
    }
    return true;
  };
  xproc::ByteQueue queue;
  auto not_a_pipe = duplicates();
  ::close(not_a_pipe.memory);
  not_a_pipe.memory = dup(queue.anonymous_fd());  // a queue segment instead
  EXPECT_THROW(ByteConnection::adopt_shared_memory(not_a_pipe), xproc::ValueError);
  EXPECT_TRUE(all_closed(not_a_pipe));
  {
    // A control block whose ring lies outside the segment, or over the control block. (The
    // ends made before read it once, and keep what they read.)
    const auto memory = xproc::shm::Segment::adopt(dup(real.memory));
    auto* control = reinterpret_cast<xproc::detail::PipeControl*>(memory.data());
    const uint64_t offset = control->ring_offset[1], length = control->ring_length[1];
    for (auto [bad_offset, bad_length] : {std::pair<uint64_t, uint64_t>{uint64_t{1} << 40, 8192},
                                          {0, 8192},
                                          {4096, memory.size()},
                                          {offset, length + 4096}}) {
      control->ring_offset[1] = bad_offset;
      control->ring_length[1] = bad_length;
      auto outside = duplicates();
      EXPECT_THROW(ByteConnection::adopt_shared_memory(outside), xproc::ValueError) << bad_offset << " " << bad_length;
      EXPECT_TRUE(all_closed(outside));
    }
    control->ring_offset[1] = offset;
    control->ring_length[1] = length;
  }
  auto bad_side = duplicates();
  bad_side.side = 2;
  EXPECT_THROW(ByteConnection::adopt_shared_memory(bad_side), xproc::ValueError);
  EXPECT_TRUE(all_closed(bad_side));
  // The real ones, duplicated, make a working end.
  auto again = ByteConnection::adopt_shared_memory(duplicates());
  again.send_bytes(bytes("adopted"));
  EXPECT_EQ(text(b.recv_bytes()), "adopted");
}

TEST(ConnectionTest, PollHonoursTimeoutAndSeesData) {
  auto [a, b] = xproc::byte_pipe();
  EXPECT_FALSE(b.poll());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(b.poll(0.05s));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
  a.send_bytes(bytes("x"));
  a.send_bytes(bytes("y"));
  EXPECT_TRUE(b.poll(1s));
  b.recv_bytes();
  EXPECT_TRUE(b.poll());  // the second message may already sit in the read buffer
  b.recv_bytes();
  EXPECT_FALSE(b.poll());
}

TEST(ConnectionTest, ClosedConnectionRefusesUse) {
  auto [a, b] = xproc::byte_pipe();
  a.close();
  EXPECT_TRUE(a.closed());
  EXPECT_THROW(a.fileno(), xproc::OSError);
  EXPECT_THROW(a.send_bytes(bytes("x")), xproc::OSError);
}

TEST(ConnectionTest, WaitReturnsReadyConnections) {
  auto [a1, b1] = xproc::byte_pipe();
  auto [a2, b2] = xproc::byte_pipe();
  EXPECT_TRUE(xproc::wait({&b1, &b2}, 0.01s).empty());
  a2.send_bytes(bytes("here"));
  auto ready = xproc::wait({&b1, &b2}, 1s);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], &b2);
}

TEST(ListenerTest, UnixPathListenerAcceptsClientWithAuthkey) {
  const std::string path = "/tmp/xproc-test-" + xproc::testing::unique_name("sock");
  {
    xproc::Listener listener(path, 1, "secret");
    EXPECT_EQ(listener.address(), path);
    std::thread client([&] {
      auto c = xproc::Client(path, "secret");
      c.send_bytes(bytes("hello listener"));
      EXPECT_EQ(text(c.recv_bytes()), "hello client");
    });
    auto server = listener.accept();
    EXPECT_EQ(text(server.recv_bytes()), "hello listener");
    server.send_bytes(bytes("hello client"));
    client.join();
  }
  EXPECT_NE(access(path.c_str(), F_OK), 0) << "the socket file is removed on close";
}

TEST(ListenerTest, AbstractAndTcpAddressesWork) {
  for (std::string address :
       {std::string(""), std::string("127.0.0.1:0"), std::string("unix:@") + xproc::testing::unique_name("abstract")}) {
    xproc::Listener listener(address, 1, "k");
    std::thread client([addr = listener.address()] {
      auto c = xproc::Client(addr, "k");
      c.send_bytes(bytes("via " + addr));
    });
    auto server = listener.accept();
    EXPECT_EQ(text(server.recv_bytes()), "via " + listener.address());
    client.join();
    if (address == "127.0.0.1:0") {
      EXPECT_NE(listener.address(), "127.0.0.1:0");
    }
  }
}

TEST(ListenerTest, WrongAuthkeyFailsOnBothSides) {
  xproc::Listener listener("", 1, "right");
  std::exception_ptr client_error;
  std::thread client([&, addr = listener.address()] {
    try {
      xproc::Client(addr, "wrong");
    } catch (...) {
      client_error = std::current_exception();
    }
  });
  EXPECT_THROW(listener.accept(), xproc::AuthenticationError);
  client.join();
  ASSERT_TRUE(client_error);
  EXPECT_THROW(std::rethrow_exception(client_error), xproc::AuthenticationError);
}

TEST(ListenerTest, GarbageOrAbandonedHandshakeLeavesListenerUsable) {
  xproc::Listener listener("", 2, "key");
  const std::string address = listener.address();
  std::thread bad([&] {
    // Connects, then sends a frame that is not an answer, then leaves.
    auto raw = xproc::Client(address);
    raw.recv_bytes();                              // the challenge
    raw.send_bytes(bytes(std::string(300, 'z')));  // over the handshake limit
  });
  EXPECT_THROW(listener.accept(), xproc::AuthenticationError);
  bad.join();
  std::thread quitter([&] { xproc::Client(address); });  // connects and leaves at once
  EXPECT_THROW(listener.accept(), xproc::AuthenticationError);
  quitter.join();
  std::thread good([&] { xproc::Client(address, "key").send_bytes(bytes("still here")); });
  auto server = listener.accept();
  EXPECT_EQ(text(server.recv_bytes()), "still here");
  good.join();
}

TEST(ListenerTest, ClientToNobodyThrowsConnectionError) {
  EXPECT_THROW(xproc::Client("/tmp/xproc-test-" + xproc::testing::unique_name("nobody")), xproc::ConnectionError);
  EXPECT_THROW(xproc::Client("unix:@" + xproc::testing::unique_name("nobody")), xproc::ConnectionError);
}

TEST(ListenerTest, BadAddressesThrowValueError) {
  EXPECT_THROW(xproc::Listener("tcp:nohostport"), xproc::ValueError);
  EXPECT_THROW(xproc::Listener("/tmp/" + std::string(200, 'p')), xproc::ValueError);
}

}  // namespace
