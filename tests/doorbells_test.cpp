// Doorbells in a shared table: rung once per arming, from other processes, only for what a
// waiter waits for; dead waiters' slots and sockets reclaimed; a table written by a hostile
// sharer never makes a ringer remove a live waiter's socket.
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "xproc/errors.h"
#include "xproc/shm/doorbells.h"
#include "xproc/shm/segment.h"

namespace {

using xproc::shm::Doorbell;
using xproc::shm::DoorbellTable;
using xproc::shm::kDoorbellSlots;
using xproc::shm::ring_doorbells;
using xproc::shm::Segment;
using xproc::shm::WaitFor;

const xproc::Sharing kPrivate;  // this user's alone, as an anonymous queue is
constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

bool readable(const Doorbell& bell, int timeout_ms = 0) {
  pollfd p{bell.fileno(), POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Runs `body` in a forked child; its exit code.
template <typename Body>
int in_child(Body&& body) {
  const pid_t pid = fork();
  if (pid == 0) _exit(body());
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct DoorbellsTest : ::testing::Test {
  Segment segment = Segment::anonymous(sizeof(DoorbellTable));
  DoorbellTable& table = *new (segment.data()) DoorbellTable{};
};

TEST_F(DoorbellsTest, AnArmedDoorbellIsRungOnceFromAnotherProcess) {
  Doorbell bell(table, segment.holder(), WaitFor::kMessage, kPrivate);
  EXPECT_FALSE(readable(bell));
  bell.arm();
  EXPECT_EQ(in_child([&] {
              ring_doorbells(table, segment.holder(), WaitFor::kMessage);
              ring_doorbells(table, segment.holder(), WaitFor::kMessage);
              return 0;
            }),
            0);
  EXPECT_TRUE(readable(bell, 1000));
  EXPECT_TRUE(bell.clear());
  EXPECT_FALSE(readable(bell)) << "two rings for one arming";
  EXPECT_FALSE(bell.clear());
  EXPECT_EQ(table.armed[0].load(), 0u);
}

TEST_F(DoorbellsTest, AnUnarmedOrDisarmedDoorbellIsNotRung) {
  Doorbell bell(table, segment.holder(), WaitFor::kMessage, kPrivate);
  ring_doorbells(table, segment.holder(), WaitFor::kMessage);
  EXPECT_FALSE(readable(bell));
  bell.arm();
  bell.disarm();
  ring_doorbells(table, segment.holder(), WaitFor::kMessage);
  EXPECT_FALSE(readable(bell));
  EXPECT_EQ(table.armed[0].load(), 0u);
}

TEST_F(DoorbellsTest, OnlyWaitersForTheChangeAreRung) {
  Doorbell message(table, segment.holder(), WaitFor::kMessage, kPrivate);
  Doorbell room(table, segment.holder(), WaitFor::kRoom, kPrivate);
  Doorbell join(table, segment.holder(), WaitFor::kJoin, kPrivate);
  message.arm();
  room.arm();
  join.arm();
  ring_doorbells(table, segment.holder(), WaitFor::kRoom);
  EXPECT_TRUE(readable(room, 1000));
  EXPECT_FALSE(readable(message));
  EXPECT_FALSE(readable(join));
  ring_doorbells(table, segment.holder(), WaitFor::kJoin);
  EXPECT_TRUE(readable(join, 1000));
  EXPECT_FALSE(readable(message));
}

TEST_F(DoorbellsTest, TheSocketHasTheQueuesBitsAndGroupSoTheGroupCanRingAndGoesWithTheDoorbell) {
  // Tests run as root; the queue is shared with group 65534, whose member rings.
  std::string path;
  {
    Doorbell bell(table, segment.holder(), WaitFor::kMessage, xproc::Sharing{.mode = 0660, .group = kNogroup});
    path = xproc::shm::doorbell_path(table.slots[0].name.load());
    struct stat st {};
    ASSERT_EQ(::lstat(path.c_str(), &st), 0) << path;
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    EXPECT_EQ(st.st_gid, kNogroup);
    EXPECT_NE(table.slots[0].token.load(), 0u);
    bell.arm();
    EXPECT_EQ(in_child([&] {
                if (::setgroups(0, nullptr) != 0 || ::setgid(kNogroup) != 0 || ::setuid(kNobody) != 0) return 2;
                ring_doorbells(table, segment.holder(), WaitFor::kMessage);
                return 0;
              }),
              0);
    EXPECT_TRUE(readable(bell, 1000)) << "a member of the queue's group could not ring";
  }
  EXPECT_FALSE(exists(path));
  EXPECT_EQ(table.slots[0].token.load(), 0u);
}

TEST_F(DoorbellsTest, ADeadWaitersSlotAndSocketAreReclaimedByTheNextRing) {
  // The child registers, arms and dies without cleaning up: its socket file stays behind.
  ASSERT_EQ(in_child([&] {
              auto* bell = new Doorbell(table, segment.holder(), WaitFor::kMessage, kPrivate);
              bell->arm();
              ::kill(::getpid(), SIGKILL);
              return 1;
            }),
            128 + SIGKILL);
  const std::string path = xproc::shm::doorbell_path(table.slots[0].name.load());
  ASSERT_NE(table.slots[0].token.load(), 0u);
  ASSERT_TRUE(exists(path));
  ring_doorbells(table, segment.holder(), WaitFor::kMessage);
  EXPECT_EQ(table.slots[0].token.load(), 0u);
  EXPECT_FALSE(exists(path));
  EXPECT_EQ(table.armed[0].load(), 0u);
}

TEST_F(DoorbellsTest, AFullTableRefusesAndADeadWaitersSlotIsTakenOver) {
  std::vector<std::unique_ptr<Doorbell>> bells;
  for (uint32_t i = 0; i + 1 < kDoorbellSlots; ++i) {
    bells.push_back(std::make_unique<Doorbell>(table, segment.holder(), WaitFor::kMessage, kPrivate));
  }
  ASSERT_EQ(in_child([&] {
              new Doorbell(table, segment.holder(), WaitFor::kRoom, kPrivate);  // the last slot, left by a death
              ::kill(::getpid(), SIGKILL);
              return 1;
            }),
            128 + SIGKILL);
  const std::string dead_path = xproc::shm::doorbell_path(table.slots[kDoorbellSlots - 1].name.load());
  ASSERT_TRUE(exists(dead_path));
  Doorbell taker(table, segment.holder(), WaitFor::kMessage, kPrivate);  // takes the dead waiter's slot
  EXPECT_FALSE(exists(dead_path));
  EXPECT_THROW(Doorbell(table, segment.holder(), WaitFor::kMessage, kPrivate), xproc::RuntimeError);
  bells.pop_back();
  Doorbell(table, segment.holder(), WaitFor::kMessage, kPrivate);
}

TEST_F(DoorbellsTest, AHostileSlotNamingALiveSocketRingsItButNeverRemovesIt) {
  // A live waiter of another table, and a slot here that names its socket with a dead token.
  Segment other_segment = Segment::anonymous(sizeof(DoorbellTable));
  auto& other = *new (other_segment.data()) DoorbellTable{};
  Doorbell victim(other, other_segment.holder(), WaitFor::kMessage, kPrivate);
  const uint64_t victim_name = other.slots[0].name.load();
  ASSERT_EQ(in_child([&] {
              Doorbell bell(table, segment.holder(), WaitFor::kMessage, kPrivate);
              ::kill(::getpid(), SIGKILL);
              return 1;
            }),
            128 + SIGKILL);
  ASSERT_NE(table.slots[0].token.load(), 0u);
  // The dead child's own socket is orphaned by the overwrite (`xproc cleanup` is for those).
  const std::string orphan = xproc::shm::doorbell_path(table.slots[0].name.load());
  table.slots[0].name.store(victim_name);
  table.slots[0].armed.store(1);
  table.armed[0].store(1);
  ring_doorbells(table, segment.holder(), WaitFor::kMessage);
  EXPECT_TRUE(exists(xproc::shm::doorbell_path(victim_name)));
  EXPECT_TRUE(readable(victim, 1000));  // a spurious ring: the victim looks at its queue again
  // Taking the slot over does not remove it either.
  Doorbell taker(table, segment.holder(), WaitFor::kMessage, kPrivate);
  EXPECT_TRUE(exists(xproc::shm::doorbell_path(victim_name)));
  ::unlink(orphan.c_str());
}

TEST_F(DoorbellsTest, CleanupFindsAndRemovesOnlySocketsNobodyListensOn) {
  Doorbell live(table, segment.holder(), WaitFor::kMessage, kPrivate);
  const std::string live_file = xproc::shm::doorbell_path(table.slots[0].name.load()).substr(9);
  ASSERT_EQ(in_child([&] {
              new Doorbell(table, segment.holder(), WaitFor::kMessage, kPrivate);
              ::kill(::getpid(), SIGKILL);
              return 1;
            }),
            128 + SIGKILL);
  const std::string dead_file = xproc::shm::doorbell_path(table.slots[1].name.load()).substr(9);
  const auto stale = xproc::shm::stale_doorbells();
  EXPECT_NE(std::find(stale.begin(), stale.end(), dead_file), stale.end());
  EXPECT_EQ(std::find(stale.begin(), stale.end(), live_file), stale.end());
  EXPECT_FALSE(xproc::shm::remove_stale_doorbell(live_file));
  EXPECT_TRUE(exists("/dev/shm/" + live_file));
  EXPECT_TRUE(xproc::shm::remove_stale_doorbell(dead_file));
  EXPECT_FALSE(exists("/dev/shm/" + dead_file));
  EXPECT_FALSE(xproc::shm::remove_stale_doorbell("xproc-doorbell.../../etc/x"));
}

TEST_F(DoorbellsTest, ClearingReadsABoundedNumberOfRingsFromAFlood) {
  Doorbell bell(table, segment.holder(), WaitFor::kMessage, kPrivate);
  const int flooder = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(flooder, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string path = xproc::shm::doorbell_path(table.slots[0].name.load());
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  int sent = 0;
  while (sent < 100 &&
         ::sendto(flooder, "x", 1, 0, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 1) {
    ++sent;
  }
  ::close(flooder);
  // (The kernel queues net.unix.max_dgram_qlen + 1 datagrams, 11 by default.)
  ASSERT_GT(sent, 8) << "the socket took fewer datagrams than one clear() reads";
  EXPECT_TRUE(bell.clear());
  EXPECT_TRUE(readable(bell)) << "more than 8 rings read at once";
  while (bell.clear()) {
  }
  EXPECT_FALSE(readable(bell));
}

TEST_F(DoorbellsTest, GarbageInTheTableNeverCrashesARinger) {
  for (auto& slot : table.slots) {
    slot.token.store(0xdeadbeef);
    slot.armed.store(1);
    slot.wait_for.store(0xffffffff);
    slot.name.store(~uint64_t{0});
  }
  table.armed[0].store(~0u);
  table.armed[1].store(~0u);
  ring_doorbells(table, segment.holder(), WaitFor::kMessage);
  ring_doorbells(table, segment.holder(), WaitFor::kRoom);
  for (auto& slot : table.slots) slot.wait_for.store(0);
  ring_doorbells(table, segment.holder(), WaitFor::kMessage);
  for (auto& slot : table.slots) EXPECT_EQ(slot.armed.load(), 0u);
  // The garbage belongs to no live holder: a waiter takes a slot of it and is rung.
  for (auto& slot : table.slots) {
    slot.armed.store(1);
    slot.wait_for.store(0xffffffff);
  }
  Doorbell bell(table, segment.holder(), WaitFor::kMessage, kPrivate);
  bell.arm();
  ring_doorbells(table, segment.holder(), WaitFor::kMessage);
  EXPECT_TRUE(readable(bell, 1000));
}

}  // namespace
