// The Manager's socket stream: reads and writes whole, waits for room when the socket is
// full, reports a vanished peer as a disconnection (never SIGPIPE), and registers its
// socket with the event loop for reads only.
#include "xproc/rpc/socket_stream.h"

#include <dirent.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace xproc::rpc {
namespace {

struct SocketPair {
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0); }
  ~SocketPair() {
    if (fds[1] >= 0) ::close(fds[1]);
  }
  int fds[2] = {-1, -1};  // fds[0] goes to the stream, fds[1] stays plain
};

// The epoll event mask registered for `fd` in this process, read from /proc (fdinfo of
// every epoll descriptor lists "tfd: <fd> events: <mask hex> ..."); -1 if none has it.
long epoll_mask_of(int fd) {
  DIR* dir = ::opendir("/proc/self/fdinfo");
  long mask = -1;
  while (dirent* entry = ::readdir(dir)) {
    std::ifstream info(std::string("/proc/self/fdinfo/") + entry->d_name);
    std::string line;
    while (std::getline(info, line)) {
      std::istringstream fields(line);
      std::string tag, events_tag;
      int target = -1;
      std::string events;
      if (fields >> tag >> target >> events_tag >> events && tag == "tfd:" && target == fd) {
        mask = std::stol(events, nullptr, 16);
      }
    }
  }
  ::closedir(dir);
  return mask;
}

TEST(SocketStream, WaitsForRoomAndDeliversALargeWriteWhole) {
  auto io = kj::setupAsyncIo();
  SocketPair pair;
  auto stream = wrap_socket(io.unixEventPort, pair.fds[0]);
  std::vector<kj::byte> sent(8 << 20);  // far more than a socket buffer holds
  std::iota(sent.begin(), sent.end(), kj::byte{0});
  std::vector<kj::byte> received;
  std::thread reader([&] {
    kj::byte chunk[4096];
    ssize_t n;
    while ((n = ::read(pair.fds[1], chunk, sizeof(chunk))) > 0) received.insert(received.end(), chunk, chunk + n);
  });
  stream->write(sent.data(), sent.size()).wait(io.waitScope);
  stream->shutdownWrite();
  reader.join();
  EXPECT_EQ(received, sent);
}

TEST(SocketStream, ReadsAtLeastWhatWasAskedThenSeesTheEnd) {
  auto io = kj::setupAsyncIo();
  SocketPair pair;
  auto stream = wrap_socket(io.unixEventPort, pair.fds[0]);
  std::thread writer([&] {
    for (const char* piece : {"he", "llo ", "wor", "ld"}) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      ASSERT_GT(::write(pair.fds[1], piece, std::strlen(piece)), 0);
    }
    ::shutdown(pair.fds[1], SHUT_WR);
  });
  char buffer[32] = {};
  size_t got = stream->tryRead(buffer, 9, sizeof(buffer)).wait(io.waitScope);
  ASSERT_GE(got, 9u);
  while (size_t more = stream->tryRead(buffer + got, 1, sizeof(buffer) - got).wait(io.waitScope)) got += more;
  writer.join();
  EXPECT_EQ(std::string(buffer, got), "hello world");
}

TEST(SocketStream, APeerThatWentAwayIsADisconnectionNotASignal) {
  auto io = kj::setupAsyncIo();
  SocketPair pair;
  auto stream = wrap_socket(io.unixEventPort, pair.fds[0]);
  ::close(pair.fds[1]);
  pair.fds[1] = -1;
  const char message[] = "anyone there?";
  try {
    stream->write(message, sizeof(message)).wait(io.waitScope);
    FAIL() << "a write to a closed peer succeeded";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED) << e.getDescription().cStr();
  }
}

// A unix socket turns writable again whenever the peer reads; an event loop watching for
// that would be woken for nothing after every message the peer takes.
TEST(SocketStream, IsRegisteredForReadsOnly) {
  auto io = kj::setupAsyncIo();
  SocketPair pair;
  int fd = pair.fds[0];
  auto stream = wrap_socket(io.unixEventPort, fd);
  long mask = epoll_mask_of(fd);
  ASSERT_NE(mask, -1) << "the socket is not in any epoll set";
  EXPECT_TRUE(mask & EPOLLIN);
  EXPECT_FALSE(mask & EPOLLOUT);
}

}  // namespace
}  // namespace xproc::rpc
