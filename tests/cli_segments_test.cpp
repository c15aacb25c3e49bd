// `xproc ls`, `stat`, `rm` and `cleanup` against real processes: a holder that is alive
// protects its queue from cleanup, even when cleanup runs in another PID namespace; once it
// is SIGKILLed, cleanup removes what it left, but never messages without --force; a removal
// that fails is an error; hostile names reach neither the terminal nor the JSON raw.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "support/test_support.h"
#include "xproc/byte_queue.h"
#include "xproc/queue_waiter.h"

namespace {

using nlohmann::json;

const std::string kXproc = XPROC_BINARY_DIR "/src/cli/xproc";
constexpr uid_t kNobody = 65534;

// A child that creates the named queue, puts `messages` messages, says so through a pipe
// and then holds the queue until killed.
pid_t start_holder(const std::string& name, int messages = 2) {
  int ready[2];
  EXPECT_EQ(pipe(ready), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    auto queue = xproc::ByteQueue::create(name, xproc::QueueOptions{.maxsize = 10, .capacity_bytes = 1 << 16});
    const std::byte message[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
    for (int i = 0; i < messages; ++i) queue.put_bytes(message);
    (void)!write(ready[1], "r", 1);
    for (;;) pause();
  }
  char byte;
  EXPECT_EQ(read(ready[0], &byte, 1), 1);
  close(ready[0]);
  close(ready[1]);
  return pid;
}

// A queue whose creator has exited (nobody holds it), holding `messages` messages.
void leave_abandoned(const std::string& name, int messages) {
  const pid_t holder = start_holder(name, messages);
  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
}

// Runs `xproc ARGS` in a child prepared by `setup` (which runs in the child before exec and
// returns false if it could not do its part): the exit status and what it printed (stderr
// included). Status 125: the setup failed.
std::pair<int, std::string> run_xproc(const std::vector<std::string>& args, const std::function<bool()>& setup = {}) {
  int out[2];
  EXPECT_EQ(pipe(out), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(out[1], 2);
    close(out[0]);
    if (setup && !setup()) _exit(125);
    std::vector<char*> argv{const_cast<char*>(kXproc.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(kXproc.c_str(), argv.data());
    _exit(126);
  }
  close(out[1]);
  std::string output;
  char buffer[512];
  for (ssize_t n; (n = read(out[0], buffer, sizeof(buffer))) > 0;) output.append(buffer, static_cast<size_t>(n));
  close(out[0]);
  return {xproc::testing::wait_exit_code(pid), output};
}

// Setup for run_xproc: the command runs as pid 1 of a new PID namespace (a container that
// shares /dev/shm), which sees none of the processes holding queues.
bool in_new_pid_namespace() {
  if (unshare(CLONE_NEWPID) != 0) return false;
  const pid_t init = fork();  // the first child of the caller is the namespace's pid 1
  if (init < 0) return false;
  if (init == 0) return getpid() == 1;
  _exit(xproc::testing::wait_exit_code(init) & 0xff);
}

bool as_nobody() { return setresgid(kNobody, kNobody, kNobody) == 0 && setresuid(kNobody, kNobody, kNobody) == 0; }

bool exists(const std::string& name) {
  struct stat st {};
  return lstat(("/dev/shm/xproc." + name).c_str(), &st) == 0;
}

json entry_named(const json& listing, const std::string& name) {
  for (const auto& entry : listing) {
    if (entry.at("name") == name) return entry;
  }
  return json();
}

TEST(CliSegmentsTest, LsAndStatShowDepthHoldersAndCounters) {
  const std::string name = xproc::testing::unique_name("cli-ls");
  const pid_t holder = start_holder(name);

  auto [ls_status, ls] = run_xproc({"ls"});
  EXPECT_EQ(ls_status, 0);
  EXPECT_NE(ls.find(name), std::string::npos) << ls;

  auto [json_status, text] = run_xproc({"ls", "--json"});
  EXPECT_EQ(json_status, 0);
  const json entry = entry_named(json::parse(text), name);
  ASSERT_TRUE(entry.is_object()) << text;
  EXPECT_EQ(entry.at("holders"), 1);
  EXPECT_EQ(entry.at("abandoned"), false);
  EXPECT_EQ(entry.at("mode"), "0600");

  auto [stat_status, stat_text] = run_xproc({"stat", name, "--json"});
  EXPECT_EQ(stat_status, 0);
  const json stat = json::parse(stat_text);
  EXPECT_EQ(stat.at("messages"), 2);
  EXPECT_EQ(stat.at("put"), 2);
  EXPECT_EQ(stat.at("got"), 0);
  EXPECT_EQ(stat.at("maxsize"), 10);
  EXPECT_EQ(stat.at("kind"), "Queue");

  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
  xproc::ByteQueue::remove(name);
}

TEST(CliSegmentsTest, CleanupSparesLiveHoldersAndRemovesWhatTheDeadLeft) {
  const std::string name = xproc::testing::unique_name("cli-cleanup");
  const pid_t holder = start_holder(name, 0);

  auto [dry_status, dry] = run_xproc({"cleanup", "--dry-run", name});
  EXPECT_EQ(dry_status, 0);
  EXPECT_NE(dry.find("kept " + name + ": held by 1 process"), std::string::npos) << dry;

  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);

  auto [status, out] = run_xproc({"cleanup", "--dry-run", name});
  EXPECT_EQ(status, 0);
  EXPECT_NE(out.find("would remove " + name), std::string::npos) << out;
  EXPECT_TRUE(exists(name)) << "a dry run removes nothing";

  std::tie(status, out) = run_xproc({"cleanup", name});
  EXPECT_EQ(status, 0);
  EXPECT_NE(out.find("removed " + name), std::string::npos) << out;
  EXPECT_FALSE(exists(name));
  std::tie(status, out) = run_xproc({"stat", name});
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("no queue named '" + name + "'"), std::string::npos) << out;
}

// The doorbell sockets a cleanup of everything would remove ("would remove xproc-doorbell.*").
std::set<std::string> doorbells_listed(const std::string& out) {
  std::set<std::string> files;
  const std::string tag = "would remove xproc-doorbell.";
  for (size_t at = out.find(tag); at != std::string::npos; at = out.find(tag, at + 1)) {
    files.insert(out.substr(at + tag.size() - 15, 31));  // "xproc-doorbell." and 16 hex digits
  }
  return files;
}

// A waiter in an event loop that died with its queue gone leaves its doorbell socket: a
// cleanup of everything lists it, one naming queues leaves doorbells alone. (Dry runs: a
// real cleanup of everything would take other tests' queues; doorbells_test removes.)
TEST(CliSegmentsTest, CleanupOfEverythingListsTheDoorbellsOfDeadWaiters) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t waiter = fork();
  if (waiter == 0) {
    xproc::ByteQueue q;
    new xproc::QueueWaiter(q, xproc::QueueWaiter::For::kMessage);  // killed, never closed
    const char byte = 1;
    if (write(ready[1], &byte, 1) != 1) _exit(1);
    pause();
    _exit(0);
  }
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1);
  close(ready[0]);
  close(ready[1]);
  const std::set<std::string> before = doorbells_listed(run_xproc({"cleanup", "--dry-run"}).second);
  kill(waiter, SIGKILL);
  waitpid(waiter, nullptr, 0);
  auto [status, out] = run_xproc({"cleanup", "--dry-run"});
  EXPECT_EQ(status, 0);
  std::vector<std::string> left;
  for (const auto& file : doorbells_listed(out)) {
    if (!before.count(file)) left.push_back(file);
  }
  ASSERT_EQ(left.size(), 1u) << out;
  struct stat st {};
  EXPECT_EQ(lstat(("/dev/shm/" + left[0]).c_str(), &st), 0) << left[0];
  std::tie(status, out) = run_xproc({"cleanup", "--dry-run", "no-such-queue-here"});
  EXPECT_EQ(out.find("xproc-doorbell."), std::string::npos) << out;
  ::unlink(("/dev/shm/" + left[0]).c_str());
}

TEST(CliSegmentsTest, CleanupKeepsUndeliveredMessagesUnlessForced) {
  const std::string name = xproc::testing::unique_name("cli-undelivered");
  leave_abandoned(name, 3);  // a producer that finished before its consumer started

  auto [status, out] = run_xproc({"cleanup", name});
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("kept " + name + ": holds 3 messages"), std::string::npos) << out;
  ASSERT_TRUE(exists(name));
  auto consumer = xproc::ByteQueue::open(name);
  EXPECT_EQ(consumer.qsize(), 3u) << "nothing was lost";

  std::tie(status, out) = run_xproc({"rm", name});
  EXPECT_NE(status, 0) << "rm refuses a queue with messages too";
  EXPECT_NE(out.find("holds 3 messages"), std::string::npos) << out;

  std::tie(status, out) = run_xproc({"cleanup", "--force", name});
  EXPECT_EQ(status, 0);
  EXPECT_NE(out.find("kept " + name + ": held by 1 process"), std::string::npos) << "this test holds it: " << out;
  xproc::ByteQueue::remove(name);
}

TEST(CliSegmentsTest, ForcedCleanupRemovesAbandonedMessages) {
  const std::string name = xproc::testing::unique_name("cli-force");
  leave_abandoned(name, 1);
  auto [status, out] = run_xproc({"cleanup", "--force", name});
  EXPECT_EQ(status, 0);
  EXPECT_NE(out.find("removed " + name), std::string::npos) << out;
  EXPECT_FALSE(exists(name));
}

// Run from another PID namespace (a container sharing /dev/shm), cleanup sees no process of
// ours, yet a live holder still protects its queue: liveness comes from the kernel's locks.
TEST(CliSegmentsTest, CleanupFromAnotherPidNamespaceSparesLiveQueues) {
  const std::string live = xproc::testing::unique_name("cli-ns-live");
  const std::string dead = xproc::testing::unique_name("cli-ns-dead");
  const pid_t holder = start_holder(live, 0);
  leave_abandoned(dead, 0);

  auto [status, out] = run_xproc({"cleanup", live, dead}, in_new_pid_namespace);
  ASSERT_NE(status, 125) << "could not make a PID namespace (needs root)";
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("kept " + live + ": held by 1 process"), std::string::npos) << out;
  EXPECT_NE(out.find("removed " + dead), std::string::npos) << out;
  EXPECT_TRUE(exists(live));
  EXPECT_FALSE(exists(dead));
  auto opened = xproc::ByteQueue::open(live);  // the same queue, still usable: not replaced
  EXPECT_EQ(opened.info().creator_pid, holder);

  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
  xproc::ByteQueue::remove(live);
}

// A user who may look at a segment but not unlink it (another user's, in the sticky
// /dev/shm) is told so, and cleanup exits non-zero instead of claiming success.
TEST(CliSegmentsTest, FailedRemovalIsAnErrorAndExitsNonZero) {
  const std::string name = xproc::testing::unique_name("cli-eperm");
  {
    auto queue = xproc::ByteQueue::create(
        name, xproc::QueueOptions{.capacity_bytes = 4096, .sharing = xproc::Sharing{.mode = 0666}});
  }  // unheld and empty: abandoned
  auto [status, out] = run_xproc({"cleanup", name}, as_nobody);
  ASSERT_NE(status, 125) << "could not switch to uid 65534 (needs root)";
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(out.find("cannot remove " + name), std::string::npos) << out;
  EXPECT_EQ(out.find("removed " + name), std::string::npos) << out;
  EXPECT_TRUE(exists(name));
  xproc::ByteQueue::remove(name);
}

TEST(CliSegmentsTest, HostileNamesAreEscapedInTablesAndValidInJson) {
  const std::string name = xproc::testing::name_prefix() + "evil\x1b[2J\x07\xff\xfe\n";
  const std::string path = "/dev/shm/xproc." + name;
  const int fd = open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  close(fd);

  auto [status, table] = run_xproc({"ls"});
  EXPECT_EQ(status, 0);
  EXPECT_EQ(table.find('\x1b'), std::string::npos) << "a raw escape reached the terminal";
  EXPECT_EQ(table.find('\x07'), std::string::npos);
  EXPECT_NE(table.find(xproc::testing::name_prefix() + "evil\\x1b[2J\\x07\\xff\\xfe\\x0a"), std::string::npos) << table;

  auto [json_status, text] = run_xproc({"ls", "--json"});
  EXPECT_EQ(json_status, 0);
  for (const char c : text) EXPECT_TRUE(static_cast<unsigned char>(c) < 0x80) << "--json is ASCII";
  json listing;
  ASSERT_NO_THROW(listing = json::parse(text)) << text;  // strict: invalid UTF-8 would throw
  bool found = false;
  for (const auto& entry : listing) {
    const std::string listed = entry.at("name");
    if (listed.rfind(xproc::testing::name_prefix() + "evil\x1b", 0) == 0) {
      found = true;
      EXPECT_EQ(entry.at("valid_name"), false);
      EXPECT_TRUE(entry.contains("error"));
    }
  }
  EXPECT_TRUE(found) << text;
  unlink(path.c_str());
}

TEST(CliSegmentsTest, RmAndBadNamesGiveActionableErrors) {
  const std::string name = xproc::testing::unique_name("cli-rm");
  auto queue = xproc::ByteQueue::create(name);
  auto [status, out] = run_xproc({"rm", name});
  EXPECT_EQ(status, 0);
  EXPECT_NE(out.find("removed " + name), std::string::npos);
  std::tie(status, out) = run_xproc({"rm", name});
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("no queue named"), std::string::npos) << out;
  std::tie(status, out) = run_xproc({"stat", "../etc\x1b[31m"});
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("xproc:"), std::string::npos) << out;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << "errors quote names escaped";
}

}  // namespace
