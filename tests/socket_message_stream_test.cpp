// The Manager's message stream: messages of any size arrive whole and in order, an end
// is an end, a vanished peer is a disconnection (never SIGPIPE), garbage is refused before
// anything is allocated for it, and the socket is registered with the event loop for
// reads only.
#include "xproc/rpc/socket_message_stream.h"

#include <dirent.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

namespace xproc::rpc {
namespace {

struct SocketPair {
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0); }
  int fds[2] = {-1, -1};
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
      std::string tag, events_tag, events;
      int target = -1;
      if (fields >> tag >> target >> events_tag >> events && tag == "tfd:" && target == fd) {
        mask = std::stol(events, nullptr, 16);
      }
    }
  }
  ::closedir(dir);
  return mask;
}

// A message of `words` data words (a list of words filled from `seed`) in one or more
// segments.
void fill(capnp::MallocMessageBuilder& message, size_t words, uint64_t seed) {
  auto list = message.initRoot<capnp::AnyPointer>().initAs<capnp::List<uint64_t>>(static_cast<unsigned>(words));
  for (size_t i = 0; i < words; ++i) list.set(static_cast<unsigned>(i), seed * 1000003 + i);
}

bool holds(capnp::MessageReader& reader, size_t words, uint64_t seed) {
  auto list = reader.getRoot<capnp::AnyPointer>().getAs<capnp::List<uint64_t>>();
  if (list.size() != words) return false;
  for (size_t i = 0; i < words; ++i) {
    if (list[static_cast<unsigned>(i)] != seed * 1000003 + i) return false;
  }
  return true;
}

TEST(SocketMessageStream, MessagesOfEverySizeArriveWholeAndInOrderThenTheEnd) {
  auto io = kj::setupAsyncIo();
  SocketPair pair;
  auto sender = socket_message_stream(io.unixEventPort, pair.fds[0]);
  auto receiver = socket_message_stream(io.unixEventPort, pair.fds[1]);
  const std::vector<size_t> sizes = {0, 1, 7, 100, 8191, 8192, 100000, 1 << 20, 3, (8 << 20) / 8, 5};

  capnp::ReaderOptions options;
  options.traversalLimitInWords = 16 << 20;
  std::vector<bool> received;
  kj::Function<kj::Promise<void>()> read_next = [&]() -> kj::Promise<void> {
    return receiver->tryReadMessage(options).then(
        [&](kj::Maybe<kj::Own<capnp::MessageReader>>&& message) -> kj::Promise<void> {
          KJ_IF_MAYBE (reader, message) {
            size_t i = received.size();
            received.push_back(i < sizes.size() && holds(**reader, sizes[i], i));
            return read_next();
          }
          return kj::READY_NOW;  // the end
        });
  };
  auto reading = read_next().eagerlyEvaluate(nullptr);

  std::vector<kj::Own<capnp::MallocMessageBuilder>> messages;
  kj::Promise<void> writing = kj::READY_NOW;
  for (size_t i = 0; i < sizes.size(); ++i) {
    messages.push_back(kj::heap<capnp::MallocMessageBuilder>(1024, capnp::AllocationStrategy::FIXED_SIZE));
    fill(*messages.back(), sizes[i], i);  // large ones span several segments
    writing = writing.then([&, i] { return sender->writeMessage(*messages[i]); });
  }
  writing.then([&] { return sender->end(); }).wait(io.waitScope);
  reading.wait(io.waitScope);
  ASSERT_EQ(received.size(), sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) EXPECT_TRUE(received[i]) << "message " << i;
}

// Another process writes bursts of messages with pauses between them, then ends (a
// shutdown, or a plain close) at a random moment. The reader takes every message and
// then sees the end: an arrival or an end that came while the reader was between reads
// is never missed.
TEST(SocketMessageStream, EveryMessageAndTheEndArriveWhateverTheTiming) {
  for (int round = 0; round < 60; ++round) {
    auto io = kj::setupAsyncIo();
    SocketPair pair;
    const int messages = 1 + round % 7 * 9;
    std::fflush(nullptr);
    const pid_t child = ::fork();
    if (child == 0) {
      ::close(pair.fds[0]);
      unsigned seed = static_cast<unsigned>(round) * 7919u + 17u;
      for (int i = 0; i < messages; ++i) {
        capnp::MallocMessageBuilder message;
        fill(message, (seed = seed * 1103515245u + 12345u) >> 16 & ((round % 3 == 0) ? 0xffff : 0x3f), i);
        capnp::writeMessageToFd(pair.fds[1], message);
        if ((seed >> 8) % 4 == 0) ::usleep((seed >> 4) % 300);
      }
      if (round % 2 == 0) ::shutdown(pair.fds[1], SHUT_WR);
      ::_exit(0);
    }
    ::close(pair.fds[1]);
    auto stream = socket_message_stream(io.unixEventPort, pair.fds[0]);
    capnp::ReaderOptions options;
    int received = 0;
    kj::Function<kj::Promise<void>()> read_next = [&]() -> kj::Promise<void> {
      return stream->tryReadMessage(options).then(
          [&](kj::Maybe<kj::Own<capnp::MessageReader>>&& message) -> kj::Promise<void> {
            if (message == nullptr) return kj::READY_NOW;
            ++received;
            return read_next();
          });
    };
    auto timed_out = io.provider->getTimer().afterDelay(10 * kj::SECONDS).then([] {
      KJ_FAIL_ASSERT("the reader missed an arrival or the end");
    });
    read_next().exclusiveJoin(kj::mv(timed_out)).wait(io.waitScope);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_EQ(received, messages) << "round " << round;
  }
}

TEST(SocketMessageStream, APeerThatWentAwayIsADisconnectionNotASignal) {
  auto io = kj::setupAsyncIo();
  SocketPair pair;
  auto stream = socket_message_stream(io.unixEventPort, pair.fds[0]);
  ::close(pair.fds[1]);
  capnp::MallocMessageBuilder message;
  fill(message, 10, 1);
  try {
    stream->writeMessage(message).wait(io.waitScope);
    io.waitScope.poll();  // the gathered bytes go out at the end of the turn, and fail
    stream->writeMessage(message).wait(io.waitScope);
    FAIL() << "a write to a closed peer succeeded";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED) << e.getDescription().cStr();
  }
}

// Each is refused as a disconnection; none makes the reader allocate what it claims.
TEST(SocketMessageStream, GarbageIsADisconnection) {
  const std::vector<std::string> garbage = {
      std::string("\xff\xff\xff\xff garbage", 13),                      // 2^32 segments
      std::string("\x00\x00\x00\x00\xff\xff\xff\x7f", 8),               // one segment of 2^31 words
      std::string("\x00\x00\x00\x00\x04\x00\x00\x00\x01\x02\x03", 11),  // truncated, then closed
  };
  for (const auto& bytes : garbage) {
    auto io = kj::setupAsyncIo();
    SocketPair pair;
    auto stream = socket_message_stream(io.unixEventPort, pair.fds[0]);
    ASSERT_EQ(::write(pair.fds[1], bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    ::close(pair.fds[1]);
    try {
      stream->tryReadMessage().wait(io.waitScope);
      ADD_FAILURE() << "garbage accepted";
    } catch (const kj::Exception& e) {
      EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED) << e.getDescription().cStr();
    }
  }
}

// A unix socket turns writable again whenever the peer reads; an event loop watching for
// that would be woken for nothing after every message the peer takes.
TEST(SocketMessageStream, IsRegisteredForReadsOnly) {
  auto io = kj::setupAsyncIo();
  SocketPair pair;
  auto stream = socket_message_stream(io.unixEventPort, pair.fds[0]);
  long mask = epoll_mask_of(pair.fds[0]);
  ASSERT_NE(mask, -1) << "the socket is not in any epoll set";
  EXPECT_TRUE(mask & EPOLLIN);
  EXPECT_FALSE(mask & EPOLLOUT);
  ::close(pair.fds[1]);
}

}  // namespace
}  // namespace xproc::rpc
