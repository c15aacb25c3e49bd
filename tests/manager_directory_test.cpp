// The user's managers directory (xproc/manager_directory.h): a serving Manager has a live
// entry with its address and counts, gone when it stops; a server SIGKILLed leaves a stale
// entry, which the next server removes; a directory others may use is refused, and what
// else lies in it is skipped.
#include "xproc/manager_directory.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "support/test_support.h"
#include "xproc/errors.h"
#include "xproc/manager.h"

namespace xproc {
namespace {

// XDG_RUNTIME_DIR pointed at a fresh private directory for the test's life.
class PrivateRuntimeDir {
 public:
  PrivateRuntimeDir() {
    char pattern[] = "/tmp/xproc-runtime-test-XXXXXX";  // mkdtemp's template: it fills in the X's
    const char* made = ::mkdtemp(pattern);
    if (made == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = made;
    const char* old = std::getenv("XDG_RUNTIME_DIR");
    if (old != nullptr) old_ = old;
    ::setenv("XDG_RUNTIME_DIR", dir_.c_str(), 1);
  }
  ~PrivateRuntimeDir() {
    if (old_) {
      ::setenv("XDG_RUNTIME_DIR", old_->c_str(), 1);
    } else {
      ::unsetenv("XDG_RUNTIME_DIR");
    }
    std::filesystem::remove_all(dir_);
  }
  const std::filesystem::path& path() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::optional<std::string> old_;
};

std::optional<ManagerRecord> entry_of(pid_t pid) {
  for (auto& record : list_managers()) {
    if (record.pid == pid) return record;
  }
  return std::nullopt;
}

// The entry of server `pid` once `ready` holds (the server registers when it starts
// serving, in its own process, after the Manager's constructor has returned).
template <typename Ready>
std::optional<ManagerRecord> wait_for_entry(pid_t pid, Ready&& ready) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto record = entry_of(pid);
    if ((record && ready(*record)) || std::chrono::steady_clock::now() > deadline) return record;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}
std::optional<ManagerRecord> wait_for_entry(pid_t pid) {
  return wait_for_entry(pid, [](const ManagerRecord&) { return true; });
}

TEST(ManagerDirectoryTest, ServingManagerHasALiveEntryWithItsCountsUntilItStops) {
  PrivateRuntimeDir runtime;
  pid_t server = 0;
  {
    Manager manager;
    server = manager.pid();
    auto record = wait_for_entry(server);
    ASSERT_TRUE(record.has_value());
    EXPECT_TRUE(record->live);
    EXPECT_EQ(record->address, manager.address());
    EXPECT_EQ(record->instance, manager.instance());
    auto d = manager.dict({}, "shared");
    auto l = manager.list();
    // The counts are brought up to date once a second.
    record = wait_for_entry(server, [](const ManagerRecord& r) { return r.objects == 2; });
    ASSERT_TRUE(record.has_value());
    EXPECT_EQ(record->objects, 2u);
    EXPECT_EQ(record->named, 1u);
    struct stat st {};
    ASSERT_EQ(::stat(record->file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  EXPECT_FALSE(entry_of(server).has_value());
}

TEST(ManagerDirectoryTest, KilledServerLeavesAStaleEntryThatTheNextServerRemoves) {
  PrivateRuntimeDir runtime;
  Manager first;
  const pid_t killed = first.pid();
  ASSERT_TRUE(wait_for_entry(killed).has_value());
  ASSERT_EQ(::kill(killed, SIGKILL), 0);
  auto stale = wait_for_entry(killed, [](const ManagerRecord& r) { return !r.live; });
  ASSERT_TRUE(stale.has_value());
  EXPECT_FALSE(stale->live);  // listed as stale: its lock died with it
  Manager second;
  ASSERT_TRUE(wait_for_entry(second.pid()).has_value());  // registering swept the stale one
  EXPECT_FALSE(entry_of(killed).has_value());
  EXPECT_TRUE(entry_of(second.pid())->live);
}

TEST(ManagerDirectoryTest, OnlyAPrivateDirectoryIsUsedAndStrangersInItAreSkipped) {
  PrivateRuntimeDir runtime;
  const auto managers = managers_directory(/*create=*/true);
  // Files that are not entries, a link to one, and garbage with the suffix.
  std::ofstream(managers / "notes.txt") << "hello";
  std::ofstream(managers / "garbage.manager") << "not an entry\naddress=x";
  std::ofstream(managers / "huge.manager") << std::string(100000, 'x');
  std::filesystem::create_symlink("/etc/passwd", managers / "link.manager");
  EXPECT_TRUE(list_managers().empty());
  Manager serving;
  ASSERT_TRUE(wait_for_entry(serving.pid()).has_value());
  EXPECT_EQ(list_managers().size(), 1u);
  // Opened to the group: refused for listing, and a new server serves without an entry.
  ASSERT_EQ(::chmod(managers.c_str(), 0770), 0);
  EXPECT_THROW(list_managers(), PermissionError);
  Manager unlisted;
  auto d = unlisted.dict();
  d.set("works", 1);  // served, so past its registration
  EXPECT_EQ(d["works"], Value(1));
  ASSERT_EQ(::chmod(managers.c_str(), 0700), 0);
  EXPECT_FALSE(entry_of(unlisted.pid()).has_value());
}

}  // namespace
}  // namespace xproc
