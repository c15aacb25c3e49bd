// Queues waited for in poll() loops: every message reaches an event-loop consumer in
// another process, named queues are awaited by processes that only opened them, a waiter
// killed while armed costs nobody, room and joins ring their waiters, and blocking and
// polling consumers share a stream with each message delivered once.
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"
#include "xproc/byte_queue.h"
#include "xproc/errors.h"
#include "xproc/queue_waiter.h"

namespace {

using xproc::ByteQueue;
using xproc::QueueOptions;
using xproc::QueueWaiter;
using namespace std::chrono_literals;

std::vector<std::byte> bytes_of(uint32_t n) {
  std::vector<std::byte> b(sizeof(n));
  std::memcpy(b.data(), &n, sizeof(n));
  return b;
}

uint32_t number_in(std::span<const std::byte> m) {
  uint32_t n = 0;
  std::memcpy(&n, m.data(), std::min(m.size(), sizeof(n)));
  return n;
}

bool readable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

// Takes one message the event-loop way: tries without blocking, else arms and polls.
// Counts the polls that found the doorbell rung.
uint32_t get_polling(ByteQueue& q, QueueWaiter& waiter, int& rings) {
  uint32_t n = 0;
  for (;;) {
    if (q.get_in_place([&](std::span<const std::byte> m) { n = number_in(m); }, false)) return n;
    if (!waiter.arm()) continue;
    if (readable(waiter.fileno(), QueueWaiter::kRecheck)) ++rings;
    waiter.clear();
  }
}

int exit_code(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(QueueWaiterTest, APollingConsumerGetsEveryMessageInOrderAndSleepsBetweenBursts) {
  ByteQueue q;
  const pid_t consumer = fork();
  if (consumer == 0) {
    int rings = 0;
    bool in_order = true;
    {
      QueueWaiter waiter(q, QueueWaiter::For::kMessage);
      for (uint32_t i = 0; i < 2000; ++i) in_order = in_order && get_polling(q, waiter, rings) == i;
    }
    _exit(!in_order ? 1 : rings > 0 ? 0 : 2);  // it slept between the bursts and was rung
  }
  for (uint32_t i = 0; i < 2000; ++i) {
    q.put_bytes(bytes_of(i));
    if (i % 200 == 199) std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(exit_code(consumer), 0);
}

TEST(QueueWaiterTest, ANamedQueueIsAwaitedByAProcessThatOnlyOpenedIt) {
  const std::string name = xproc::testing::unique_name("waited");
  ByteQueue q = ByteQueue::create(name);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t consumer = fork();
  if (consumer == 0) {
    const int code = [&] {
      ByteQueue opened = ByteQueue::open(name);
      QueueWaiter waiter(opened, QueueWaiter::For::kMessage);
      if (opened.try_get_bytes() || !waiter.arm()) return 2;
      const char byte = 1;
      if (::write(ready[1], &byte, 1) != 1) return 3;
      // Armed before the put: only the ring can end this poll.
      if (!readable(waiter.fileno(), 10s)) return 4;
      waiter.clear();
      const auto m = opened.try_get_bytes();
      return m && number_in(*m) == 42 ? 0 : 1;
    }();
    _exit(code);
  }
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  q.put_bytes(bytes_of(42));
  EXPECT_EQ(exit_code(consumer), 0);
  ByteQueue::remove(name);
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST(QueueWaiterTest, AQueueSharedWithAGroupIsRungByAMemberOfThatGroup) {
  // Tests run as root: the queue is shared with group 65534, and nobody (65534) puts.
  constexpr uid_t kNobody = 65534;
  constexpr gid_t kNogroup = 65534;
  const std::string name = xproc::testing::unique_name("group-waited");
  ByteQueue q = ByteQueue::create(name, QueueOptions{.sharing = {.mode = 0660, .group = kNogroup}});
  QueueWaiter waiter(q, QueueWaiter::For::kMessage);
  ASSERT_TRUE(waiter.arm());
  const pid_t producer = fork();
  if (producer == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(kNogroup) != 0 || ::setuid(kNobody) != 0) _exit(2);
    ByteQueue::open(name, {.mode = 0660, .owner = 0, .group = kNogroup}).put_bytes(bytes_of(5));
    _exit(0);
  }
  EXPECT_EQ(exit_code(producer), 0);
  EXPECT_TRUE(readable(waiter.fileno(), 1000ms)) << "the group's member could not ring the waiter";
  waiter.clear();
  EXPECT_EQ(q.get_bytes(), bytes_of(5));
  ByteQueue::remove(name);
}

TEST(QueueWaiterTest, AWaiterKilledWhileArmedCostsTheProducerAndOtherWaitersNothing) {
  ByteQueue q;
  const pid_t doomed = fork();
  if (doomed == 0) {
    QueueWaiter waiter(q, QueueWaiter::For::kMessage);
    waiter.arm();
    ::kill(::getpid(), SIGKILL);
    _exit(1);
  }
  ASSERT_EQ(exit_code(doomed), 128 + SIGKILL);
  QueueWaiter waiter(q, QueueWaiter::For::kMessage);
  ASSERT_TRUE(waiter.arm());
  q.put_bytes(bytes_of(7));  // rings the live waiter, frees the dead one's slot
  EXPECT_TRUE(readable(waiter.fileno(), 1000ms));
  waiter.clear();
  EXPECT_EQ(q.get_bytes(), bytes_of(7));
  // Every other slot is free again: 31 more waiters fit beside this one.
  std::vector<QueueWaiter> more;
  for (int i = 0; i < 31; ++i) more.emplace_back(q, QueueWaiter::For::kMessage);
  EXPECT_THROW(QueueWaiter(q, QueueWaiter::For::kMessage), xproc::RuntimeError);
}

TEST(QueueWaiterTest, RoomInAFullBoundedQueueRingsAPutWaiter) {
  ByteQueue q(QueueOptions{.maxsize = 1});
  q.put_bytes(bytes_of(1));
  QueueWaiter waiter(q, QueueWaiter::For::kRoom);
  EXPECT_FALSE(q.try_put_bytes(bytes_of(2)));
  ASSERT_TRUE(waiter.arm());
  EXPECT_FALSE(readable(waiter.fileno(), 0ms));
  const pid_t consumer = fork();
  if (consumer == 0) _exit(ByteQueue(q).get_bytes() == bytes_of(1) ? 0 : 1);
  EXPECT_TRUE(readable(waiter.fileno(), 2000ms));
  waiter.clear();
  EXPECT_TRUE(q.try_put_bytes(bytes_of(2)));
  EXPECT_EQ(exit_code(consumer), 0);
}

TEST(QueueWaiterTest, TaskDoneRingsAJoinWaiter) {
  ByteQueue q(QueueOptions{}, 0, xproc::detail::QueueKind::kJoinable);
  q.put_bytes(bytes_of(1));
  q.get_bytes();
  QueueWaiter waiter(q, QueueWaiter::For::kJoin);
  ASSERT_TRUE(waiter.arm());
  const pid_t worker = fork();
  if (worker == 0) {
    ByteQueue(q).task_done();
    _exit(0);
  }
  EXPECT_TRUE(readable(waiter.fileno(), 2000ms));
  EXPECT_NO_THROW(q.join(0s));
  EXPECT_EQ(exit_code(worker), 0);
}

TEST(QueueWaiterTest, ArmSaysWhenTheQueueChangedSinceTheWaiterLooked) {
  ByteQueue q;
  QueueWaiter waiter(q, QueueWaiter::For::kMessage);
  q.put_bytes(bytes_of(1));
  EXPECT_FALSE(waiter.arm()) << "a message came after the waiter looked";
  EXPECT_TRUE(waiter.arm());  // nothing since: it may sleep (and the message is still there)
  EXPECT_EQ(q.qsize(), 1u);
}

TEST(QueueWaiterTest, BlockingAndPollingConsumersShareAStreamEachMessageOnce) {
  ByteQueue q;
  constexpr uint32_t kMessages = 20000;
  ByteQueue results;  // each consumer reports what it got
  std::vector<pid_t> consumers;
  for (int c = 0; c < 2; ++c) {
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<uint32_t> got;
      if (c == 0) {
        QueueWaiter waiter(q, QueueWaiter::For::kMessage);
        int rings = 0;
        for (;;) {
          const uint32_t n = get_polling(q, waiter, rings);
          if (n == kMessages) break;
          got.push_back(n);
        }
      } else {
        for (;;) {
          const uint32_t n = number_in(q.get_bytes());
          if (n == kMessages) break;
          got.push_back(n);
        }
      }
      for (uint32_t n : got) results.put_bytes(bytes_of(n));
      _exit(0);
    }
    consumers.push_back(pid);
  }
  for (uint32_t i = 0; i < kMessages; ++i) {
    q.put_bytes(bytes_of(i));
    if (i % 1000 == 999) std::this_thread::sleep_for(2ms);
  }
  q.put_bytes(bytes_of(kMessages));
  q.put_bytes(bytes_of(kMessages));
  for (pid_t pid : consumers) EXPECT_EQ(exit_code(pid), 0);
  std::vector<int> seen(kMessages, 0);
  while (auto m = results.try_get_bytes()) seen[number_in(*m)]++;
  for (uint32_t i = 0; i < kMessages; ++i) ASSERT_EQ(seen[i], 1) << "message " << i;
}

}  // namespace
