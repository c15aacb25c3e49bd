// Manager lanes: the shared-memory byte rings under a same-host connection (lane.h), their
// handshake, and a server facing clients that misuse them.
#include "xproc/rpc/lane.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "support/test_support.h"
#include "xproc/errors.h"
#include "xproc/manager.h"
#include "xproc/process.h"

namespace xproc::rpc {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// A server's lane and a client's view of the same segment; `spare` is one more mapping
// of it, for scribbling as a misbehaving peer would.
struct LanePair {
  Lane server = Lane::create(4096);
  Lane client = Lane::attach(::dup(server.memfd()), 4096);
};

std::vector<unsigned char> pattern(size_t size, unsigned seed) {
  std::vector<unsigned char> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<unsigned char>(seed * 31 + i * 7);
  return bytes;
}

TEST(Lane, BytesCrossBothWaysAndWrapAround) {
  LanePair lane;
  // Odd sizes, so that writes and reads straddle the end of the ring over and over.
  for (unsigned round = 0; round < 200; ++round) {
    const size_t size = 1 + (round * 389) % 3000;
    auto sent = pattern(size, round);
    ASSERT_EQ(lane.client.write(sent.data(), size), size);
    ASSERT_TRUE(lane.server.has_input());
    std::vector<unsigned char> got(size);
    size_t have = 0;
    while (have < size) have += lane.server.read(got.data() + have, std::min<size_t>(size - have, 1000));
    ASSERT_EQ(got, sent) << "round " << round;
    ASSERT_FALSE(lane.server.has_input());

    ASSERT_EQ(lane.server.write(sent.data(), size), size);
    std::vector<unsigned char> back(size);
    ASSERT_EQ(lane.client.read(back.data(), size), size);
    ASSERT_EQ(back, sent);
  }
}

TEST(Lane, AFullRingTakesWhatFitsAndNoMore) {
  LanePair lane;
  auto bytes = pattern(5000, 1);
  EXPECT_EQ(lane.client.write(bytes.data(), bytes.size()), 4096u);
  EXPECT_FALSE(lane.client.has_room());
  EXPECT_EQ(lane.client.write(bytes.data(), 1), 0u);
  std::vector<unsigned char> got(100);
  EXPECT_EQ(lane.server.read(got.data(), got.size()), 100u);
  EXPECT_TRUE(lane.client.has_room());
  EXPECT_EQ(lane.client.write(bytes.data() + 4096, 904), 100u);
}

TEST(Lane, FlagsAskForOneDoorbellEach) {
  LanePair lane;
  EXPECT_FALSE(lane.server.take_input_doorbell()) << "nobody sleeps yet";
  EXPECT_TRUE(lane.client.sleep_for_input());
  const char byte = 'x';
  ASSERT_EQ(lane.server.write(&byte, 1), 1u);
  EXPECT_TRUE(lane.server.take_input_doorbell());
  EXPECT_FALSE(lane.server.take_input_doorbell()) << "one doorbell serves many writes";
  EXPECT_FALSE(lane.client.sleep_for_input()) << "a byte is there: no sleep";
  char in = 0;
  ASSERT_EQ(lane.client.read(&in, 1), 1u);

  // A writer that found the ring full sleeps for room; the reader's next read rings.
  std::vector<unsigned char> fill(4096);
  ASSERT_EQ(lane.client.write(fill.data(), fill.size()), 4096u);
  EXPECT_TRUE(lane.client.sleep_for_room());
  char out[16];
  ASSERT_EQ(lane.server.read(out, sizeof(out)), sizeof(out));
  EXPECT_TRUE(lane.server.take_room_doorbell());
  lane.client.awake();
  EXPECT_TRUE(lane.client.sleep_for_input());
  lane.client.awake();
  ASSERT_EQ(lane.server.write(&byte, 1), 1u);
  EXPECT_FALSE(lane.server.take_input_doorbell()) << "awake() took the flag down";
}

TEST(Lane, ImpossibleCountersFromThePeerAreALaneError) {
  Lane server = Lane::create(4096);
  const int spare_fd = ::dup(server.memfd());
  Lane client = Lane::attach(::dup(server.memfd()), 4096);
  const size_t size = 64 + 2 * 256 + 2 * 4096;
  void* spare = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, spare_fd, 0);
  ::close(spare_fd);
  ASSERT_NE(spare, MAP_FAILED);
  // The peer claims to have written more than a ring holds, and to have read bytes
  // nobody wrote: every counter in both control blocks.
  std::memset(static_cast<char*>(spare) + 64, 0x5a, 2 * 256);
  char out[8];
  EXPECT_THROW(server.read(out, sizeof(out)), LaneError);
  EXPECT_THROW(server.has_input(), LaneError);
  EXPECT_THROW(client.write(out, sizeof(out)), LaneError);
  EXPECT_THROW(client.has_room(), LaneError);
  ::munmap(spare, size);
}

TEST(Lane, AttachRefusesWhatIsNotALane) {
  const int small = ::memfd_create("not-a-lane", MFD_CLOEXEC);
  ASSERT_EQ(::ftruncate(small, 4096), 0);
  EXPECT_THROW(Lane::attach(small, 4096), LaneError);  // the wrong size (and closed)

  Lane server = Lane::create(4096);
  EXPECT_THROW(Lane::attach(::dup(server.memfd()), 8192), LaneError);
  EXPECT_THROW(Lane::attach(::dup(server.memfd()), 0), LaneError);
  const int other = ::memfd_create("zeros", MFD_CLOEXEC);
  ASSERT_EQ(::ftruncate(other, 64 + 2 * 256 + 2 * 4096), 0);
  EXPECT_THROW(Lane::attach(other, 4096), LaneError);  // the right size, no header
}

// A server that answers the request itself, as `reply` says.
std::optional<Lane> request_from(const std::string& reply, int memfd = -1) {
  int pair[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  std::thread server([&] {
    char request[8];
    EXPECT_EQ(::recv(pair[1], request, sizeof(request), MSG_WAITALL), 8);
    EXPECT_EQ(std::memcmp(request, kLaneRequest.data(), 8), 0);
    if (!reply.empty()) {
      EXPECT_TRUE(send_with_descriptor(pair[1], std::as_bytes(std::span(reply)), memfd));
    }
    ::close(pair[1]);
  });
  std::optional<Lane> lane;
  try {
    lane = request_lane(pair[0], std::nullopt);
  } catch (...) {
    server.join();
    ::close(pair[0]);
    throw;
  }
  server.join();
  ::close(pair[0]);
  return lane;
}

std::string reply_bytes(LaneReply reply) { return std::string(reinterpret_cast<const char*>(&reply), sizeof(reply)); }

TEST(LaneHandshake, GrantedRefusedAndGarbled) {
  Lane server = Lane::create(4096);
  LaneReply granted;
  granted.status = LaneReply::kGranted;
  granted.ring_bytes = 4096;
  auto lane = request_from(reply_bytes(granted), server.memfd());
  ASSERT_TRUE(lane.has_value());
  const char byte = 'y';
  ASSERT_EQ(lane->write(&byte, 1), 1u);
  char got = 0;
  EXPECT_EQ(server.read(&got, 1), 1u);
  EXPECT_EQ(got, 'y');

  EXPECT_FALSE(request_from(reply_bytes(LaneReply{})).has_value()) << "refused: the socket carries on";

  EXPECT_THROW(request_from(reply_bytes(granted)), ConnectionError) << "granted without a segment";
  EXPECT_THROW(request_from(std::string(16, 'z')), ConnectionError);
  EXPECT_THROW(request_from(""), ConnectionError) << "the server hung up";
}

TEST(LaneHandshake, NothingIsAskedOverATcpConnection) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(listener, 1), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  const int served = ::accept(listener, nullptr, nullptr);
  ASSERT_GE(served, 0);

  EXPECT_FALSE(request_lane(client, std::nullopt).has_value());
  char byte;
  EXPECT_EQ(::recv(served, &byte, 1, MSG_DONTWAIT), -1) << "the client sent a lane request over TCP";
  EXPECT_EQ(errno, EAGAIN);
  ::close(served);
  ::close(client);
  ::close(listener);
}

// A raw connection to `manager`'s socket.
int connect_to(const Manager& manager) {
  std::string path = manager.address();
  if (path.starts_with("unix:")) path = path.substr(std::strlen("unix:"));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  return fd;
}

// The server closes a connection it gave up on: read until the end (or 5 s).
bool closed_by_server(int fd) {
  timeval patience{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof(patience));
  char sink[256];
  ssize_t n;
  while ((n = ::read(fd, sink, sizeof(sink))) > 0) {
  }
  return n == 0;
}

TEST(ManagerLanes, CallsWorkOnALaneAndOnTheSocket) {
  for (bool shared_memory : {true, false}) {
    SCOPED_TRACE(shared_memory ? "lane" : "socket");
    Manager manager(ManagerOptions{.shared_memory = shared_memory});
    auto d = manager.dict();
    d.set("a", 1);
    EXPECT_EQ(d["a"], Value(1));
    // Larger than a ring both ways: the bytes stream through it in pieces.
    std::string big(3 * 1024 * 1024 + 5, 'q');
    for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + i % 26);
    d.set("big", big);
    EXPECT_EQ(d["big"], Value(big));
    EXPECT_EQ(d.size(), 2u);
  }
}

// Lane segments this process has mapped.
int lanes_mapped() {
  std::ifstream maps("/proc/self/maps");
  int count = 0;
  for (std::string line; std::getline(maps, line);) count += line.find("xproc-lane") != std::string::npos;
  return count;
}

TEST(ManagerLanes, AServerThatCannotMakeLanesServesOnTheSocket) {
  // The server inherits a file-size limit of zero, so it cannot size a lane's segment.
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit none = saved;
  none.rlim_cur = 0;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &none), 0);
  std::optional<Manager> manager;
  try {
    manager.emplace();
  } catch (...) {
    ::setrlimit(RLIMIT_FSIZE, &saved);
    ::signal(SIGXFSZ, old_handler);
    throw;
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::signal(SIGXFSZ, old_handler);

  const int before = lanes_mapped();
  auto d = manager->dict();
  d.set("a", std::string(200000, 'b'));
  EXPECT_EQ(d["a"], Value(std::string(200000, 'b')));
  EXPECT_EQ(lanes_mapped(), before) << "refused: this thread's connection stays on the socket";

  Manager granted;
  auto e = granted.dict();
  e.set("a", 1);
  EXPECT_EQ(lanes_mapped(), before + 1);
}

TEST(ManagerLanes, GarbageOnALaneEndsOnlyThatConnection) {
  Manager manager;
  auto d = manager.dict();
  d.set("k", "v");
  const std::vector<std::string> garbage = {
      std::string("\x00\x00\x00\x00\x02\x00\x00\x00"
                  "\xf0\xff\xff\x0f\x01\x00\x01\x00"
                  "\x00\x00\x00\x00\x00\x00\x00\x00",
                  24),
      std::string("\x00\x02\x00\x00\xff\xff\xff\xff", 8),  // 513 segments: too many
      std::string(4096, '\x7f')};
  for (const auto& bytes : garbage) {
    SCOPED_TRACE(::testing::PrintToString(bytes.substr(0, 8)));
    int fd = connect_to(manager);
    auto lane = request_lane(fd, manager.authkey());
    ASSERT_TRUE(lane.has_value());
    ASSERT_EQ(lane->write(bytes.data(), bytes.size()), bytes.size());
    const char bell = 1;
    if (lane->take_input_doorbell()) ::send(fd, &bell, 1, MSG_NOSIGNAL);
    EXPECT_TRUE(closed_by_server(fd));
    ::close(fd);
  }
  EXPECT_EQ(d["k"], Value("v"));
}

TEST(ManagerLanes, AClientStuckInTheHandshakeHoldsNobodyUp) {
  Manager manager;
  auto d = manager.dict();
  int fd = connect_to(manager);
  ASSERT_EQ(::send(fd, kLaneRequest.data(), 3, MSG_NOSIGNAL), 3);  // a prefix, then nothing
  const auto started = Clock::now();
  d.set("x", 2);
  EXPECT_EQ(d["x"], Value(2));
  auto other = Manager::connect(manager.address(), manager.authkey());
  EXPECT_EQ(other.dict().size(), 0u);
  EXPECT_LT(Clock::now() - started, seconds(2));
  ::close(fd);
}

TEST(ManagerLanes, AClientThatDiesWithBytesInItsLaneLeavesTheServerServing) {
  Manager manager;
  auto d = manager.dict();
  int fd = connect_to(manager);
  auto lane = request_lane(fd, manager.authkey());
  ASSERT_TRUE(lane.has_value());
  // Half a frame: a segment table announcing 100 words, and 16 of its bytes.
  std::string partial(
      "\x00\x00\x00\x00\x64\x00\x00\x00"
      "0123456789abcdef",
      24);
  ASSERT_EQ(lane->write(partial.data(), partial.size()), partial.size());
  ::close(fd);  // as a killed process's socket closes
  lane.reset();
  d.set("after", 3);
  EXPECT_EQ(d["after"], Value(3));
}

// Clients SIGKILLed at random instants of their calls (holding the lock, half-way through
// writing a large value into their lane, waiting for a reply): the server carries on, and
// what a dead client held comes free.
TEST(ManagerLanes, ClientsKilledAtRandomLeaveTheServerServingAndTheirLocksFree) {
  Manager manager;
  auto d = manager.dict();
  auto lock = manager.lock();
  d.set("n", 0);
  std::mt19937 random(20261201);
  const std::string large(300 * 1024, 'L');  // several rings' worth
  for (int cycle = 0; cycle < 40; ++cycle) {
    Process client([&] {
      for (int i = 0;; ++i) {
        lock.acquire();
        d.increment("n");
        lock.release();
        d.set("large", large);
      }
    });
    const int64_t before = d["n"].as_int();
    client.start();
    // Kill it once it is calling (a sanitizer build takes a while to connect).
    const auto patience = Clock::now() + seconds(10);
    while (d["n"].as_int() == before && Clock::now() < patience)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    ASSERT_GT(d["n"].as_int(), before) << "cycle " << cycle << ": the client never called";
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 5000));
    client.kill();
    client.join();
    ASSERT_TRUE(lock.acquire(true, seconds(5))) << "cycle " << cycle << ": the dead client's lock stayed taken";
    lock.release();
    d.set("alive", cycle);
    ASSERT_EQ(d["alive"], Value(cycle));
    const Value stored = d.get("large", Value());
    ASSERT_TRUE(stored.is_null() || stored == Value(large)) << "cycle " << cycle << ": a torn value was stored";
  }
}

// The server dies while a client waits for room in its lane (the server had stopped
// reading): the call fails with ConnectionError instead of waiting for ever.
TEST(ManagerLanes, AServerThatDiesWhileAClientWaitsForRoomFailsTheCall) {
  Manager manager;
  auto d = manager.dict();
  d.set("warm", 1);
  ASSERT_EQ(::kill(manager.pid(), SIGSTOP), 0);
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::kill(manager.pid(), SIGKILL);
  });
  const auto started = Clock::now();
  EXPECT_THROW(d.set("big", std::string(8 * 1024 * 1024, 'x')), ConnectionError);
  killer.join();
  EXPECT_LT(Clock::now() - started, seconds(3));
}

}  // namespace
}  // namespace xproc::rpc
