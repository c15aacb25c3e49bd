// Segments against other local users and other processes: names planted by another user,
// links, FIFOs and directories under the prefix, segments open to others, memory shrunk or
// grown under its holders, and holder tokens that the kernel vouches for.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "support/test_support.h"
#include "xproc/byte_queue.h"
#include "xproc/connection.h"
#include "xproc/errors.h"
#include "xproc/rpc/lane.h"
#include "xproc/shm/holders.h"
#include "xproc/shm/segment.h"

namespace {

using xproc::ByteQueue;
using xproc::QueueOptions;
using xproc::Sharing;
using xproc::shm::Segment;

constexpr uid_t kNobody = 65534;

std::string path_of(const std::string& name) { return "/dev/shm/xproc." + name; }

// Runs `body` in a child switched to uid and gid 65534 (tests run as root); its exit code.
int as_nobody(const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (setresgid(kNobody, kNobody, kNobody) != 0 || setresuid(kNobody, kNobody, kNobody) != 0) _exit(125);
    _exit(body());
  }
  return xproc::testing::wait_exit_code(pid);
}

std::string contents(const std::string& path) {
  std::string out;
  const int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW);
  if (fd < 0) return out;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) out.append(buffer, static_cast<size_t>(n));
  close(fd);
  return out;
}

// Another user creates the name first, open to everybody and full of bytes of its choosing:
// the victim refuses it and writes nothing there.
TEST(SegmentTest, NamePlantedByAnotherUserIsRefusedAndLeftUntouched) {
  const std::string name = xproc::testing::unique_name("squat");
  const std::string path = path_of(name);
  ASSERT_EQ(as_nobody([&] {
              const int fd = open(path.c_str(), O_CREAT | O_EXCL | O_RDWR, 0666);
              if (fd < 0 || fchmod(fd, 0666) != 0) return 1;
              std::vector<char> bait(1 << 16, 'A');
              return write(fd, bait.data(), bait.size()) == static_cast<ssize_t>(bait.size()) ? 0 : 2;
            }),
            0)
      << "125: could not switch to uid 65534 (needs root)";
  const std::string before = contents(path);

  EXPECT_THROW(ByteQueue::create(name), xproc::ValueError) << "the name is taken";
  try {
    ByteQueue::open(name);
    ADD_FAILURE() << "opened another user's segment";
  } catch (const xproc::PermissionError& e) {
    EXPECT_NE(std::string(e.what()).find("uid 65534"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("0666"), std::string::npos) << e.what();
  }
  EXPECT_EQ(contents(path), before) << "nothing was written into it";
  unlink(path.c_str());
}

TEST(SegmentTest, LinksFifosAndDirectoriesUnderThePrefixAreRefused) {
  const std::string target = xproc::testing::unique_name("target");
  auto real = ByteQueue::create(target);

  const std::string link = xproc::testing::unique_name("link");
  ASSERT_EQ(symlink(path_of(target).c_str(), path_of(link).c_str()), 0);
  const std::string fifo = xproc::testing::unique_name("fifo");
  ASSERT_EQ(mkfifo(path_of(fifo).c_str(), 0600), 0);
  const std::string directory = xproc::testing::unique_name("dir");
  ASSERT_EQ(mkdir(path_of(directory).c_str(), 0700), 0);

  for (const std::string& name : {link, fifo, directory}) {
    EXPECT_THROW(ByteQueue::open(name), xproc::PermissionError) << name;  // and no hang on the FIFO
    EXPECT_THROW(ByteQueue::create(name), xproc::ValueError) << name;
  }
  EXPECT_TRUE(real.empty());
  unlink(path_of(link).c_str());
  unlink(path_of(fifo).c_str());
  rmdir(path_of(directory).c_str());
  ByteQueue::remove(target);
}

TEST(SegmentTest, OwnSegmentOthersCanReachIsRefusedUnlessSharedOnPurpose) {
  const std::string name = xproc::testing::unique_name("open-to-all");
  auto queue = ByteQueue::create(name, QueueOptions{.capacity_bytes = 4096, .sharing = Sharing{.mode = 0666}});
  struct stat st {};
  ASSERT_EQ(stat(path_of(name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666u) << "the mode is set exactly, whatever the umask";
  EXPECT_THROW(ByteQueue::open(name), xproc::PermissionError);
  EXPECT_THROW(ByteQueue::open(name, Sharing{.mode = 0660}), xproc::PermissionError);
  EXPECT_NO_THROW(ByteQueue::open(name, Sharing{.mode = 0666}));
  ByteQueue::remove(name);
}

// A service user's queue, opened by another user that names it as the expected owner.
TEST(SegmentTest, AnotherUsersSegmentOpensWhenItsOwnerIsExpected) {
  const std::string name = xproc::testing::unique_name("service");
  ASSERT_EQ(as_nobody([&] {
              try {
                auto queue = ByteQueue::create(name, QueueOptions{.capacity_bytes = 4096});
                const std::byte hello[5] = {};
                queue.put_bytes(hello);
                return 0;
              } catch (...) {
                return 1;
              }
            }),
            0);
  EXPECT_THROW(ByteQueue::open(name), xproc::PermissionError) << "owned by 65534, not by us";
  auto queue = ByteQueue::open(name, Sharing{.owner = kNobody});
  EXPECT_EQ(queue.qsize(), 1u);
  ByteQueue::remove(name);
}

TEST(SegmentTest, GroupSharedSegmentIsCheckedAgainstTheExpectedGroup) {
  const std::string name = xproc::testing::unique_name("group");
  auto queue =
      ByteQueue::create(name, QueueOptions{.capacity_bytes = 4096, .sharing = Sharing{.mode = 0660, .group = kNobody}});
  struct stat st {};
  ASSERT_EQ(stat(path_of(name).c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, kNobody);
  EXPECT_NO_THROW(ByteQueue::open(name, Sharing{.mode = 0660, .group = kNobody}));
  EXPECT_NO_THROW(ByteQueue::open(name, Sharing{.mode = 0660}));  // the owner's choice of group is trusted
  EXPECT_THROW(ByteQueue::open(name, Sharing{.mode = 0660, .group = 0}), xproc::PermissionError);
  ByteQueue::remove(name);
}

// A child (holding the same memory, as a forked worker does) tries to shrink and to grow
// every kind of anonymous segment: a queue, a pipe's memory, a lane.
TEST(SegmentTest, AnonymousSegmentsCannotBeShrunkOrGrown) {
  ByteQueue queue(QueueOptions{.capacity_bytes = 4096});
  auto [a, b] = xproc::byte_pipe(true);
  const auto handles = a.shared_memory_handles();
  auto lane = xproc::rpc::Lane::create();
  std::vector<int> fds{queue.anonymous_fd(), handles.memory, lane.memfd()};

  const pid_t child = fork();
  if (child == 0) {
    int refused = 0;
    for (int fd : fds) {
      struct stat st {};
      if (fstat(fd, &st) != 0) _exit(100);
      refused += ftruncate(fd, 64) != 0 && errno == EPERM;
      refused += ftruncate(fd, st.st_size * 2) != 0 && errno == EPERM;
      refused += fallocate(fd, 0, st.st_size, 4096) != 0 && errno == EPERM;
    }
    _exit(refused);
  }
  EXPECT_EQ(xproc::testing::wait_exit_code(child), static_cast<int>(3 * fds.size()));
  const std::byte one[1] = {};
  queue.put_bytes(one);
  EXPECT_EQ(queue.get_bytes().size(), 1u) << "the queue still works";
}

TEST(SegmentTest, AdoptingAnUnsealedDescriptorIsRefused) {
  const int fd = memfd_create("unsealed", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 1 << 16), 0);
  EXPECT_THROW(ByteQueue::adopt_anonymous(fd), xproc::ValueError);  // (and closes fd)
  const int lane_fd = memfd_create("unsealed-lane", MFD_CLOEXEC);
  ASSERT_EQ(ftruncate(lane_fd, 1 << 20), 0);
  EXPECT_THROW(xproc::rpc::Lane::attach(lane_fd, xproc::rpc::kLaneRingBytes), xproc::rpc::LaneError);
}

// Holders as the kernel counts them: this process, and a forked child that gets a token
// (and an open file description) of its own, so that either's death is seen.
TEST(SegmentTest, ForkedChildHoldsATokenOfItsOwn) {
  const std::string name = xproc::testing::unique_name("tokens");
  auto segment = Segment::create(name, 4096, Sharing{});
  const uint32_t parent_token = segment.holder().token();
  int report[2];
  ASSERT_EQ(pipe(report), 0);
  int proceed[2];
  ASSERT_EQ(pipe(proceed), 0);
  const pid_t child = fork();
  if (child == 0) {
    const uint32_t token = segment.holder().token();
    (void)!write(report[1], &token, sizeof(token));
    char byte;
    (void)!read(proceed[0], &byte, 1);
    _exit(0);
  }
  uint32_t child_token = 0;
  ASSERT_EQ(read(report[0], &child_token, sizeof(child_token)), static_cast<ssize_t>(sizeof(child_token)));
  EXPECT_NE(child_token, parent_token);
  EXPECT_TRUE(segment.holder().alive(child_token));
  const int probe = open(path_of(name).c_str(), O_RDONLY);
  EXPECT_EQ(xproc::shm::count_holders(probe), 2u);
  (void)!write(proceed[1], "x", 1);
  EXPECT_EQ(xproc::testing::wait_exit_code(child), 0);
  EXPECT_FALSE(segment.holder().alive(child_token)) << "the kernel dropped the dead child's token";
  EXPECT_EQ(xproc::shm::count_holders(probe), 1u);
  EXPECT_TRUE(segment.holder().alive(parent_token));
  for (int fd : {report[0], report[1], proceed[0], proceed[1], probe}) close(fd);
  Segment::remove(name);
}

// While `xproc cleanup` holds its lock over every token, nobody starts holding the segment.
TEST(SegmentTest, OpeningWhileHoldersAreLockedOutSaysTheSegmentIsBeingRemoved) {
  const std::string name = xproc::testing::unique_name("lockout");
  { auto queue = ByteQueue::create(name, QueueOptions{.capacity_bytes = 4096}); }
  const int remover = open(path_of(name).c_str(), O_RDWR);
  ASSERT_TRUE(xproc::shm::lock_out_holders(remover));
  try {
    ByteQueue::open(name);
    ADD_FAILURE() << "opened a segment being removed";
  } catch (const xproc::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("being removed"), std::string::npos) << e.what();
  }
  close(remover);
  EXPECT_NO_THROW(ByteQueue::open(name));
  auto held = ByteQueue::open(name);
  const int second = open(path_of(name).c_str(), O_RDWR);
  EXPECT_FALSE(xproc::shm::lock_out_holders(second)) << "a holder keeps removers out";
  close(second);
  ByteQueue::remove(name);
}

}  // namespace
