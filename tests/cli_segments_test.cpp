// `xproc ls`, `stat`, `rm` and `cleanup` against real processes: a holder that is alive
// protects its queue from cleanup; once it is SIGKILLed, cleanup removes what it left.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include "support/test_support.h"
#include "xproc/byte_queue.h"

namespace {

const std::string kXproc = XPROC_BINARY_DIR "/src/cli/xproc";

// A child that creates the named queue, puts two messages, says so through a pipe and
// then holds the queue until killed.
pid_t start_holder(const std::string& name) {
  int ready[2];
  EXPECT_EQ(pipe(ready), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    auto queue = xproc::ByteQueue::create(name, xproc::QueueOptions{.maxsize = 10, .capacity_bytes = 1 << 16});
    const std::byte message[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
    queue.put_bytes(message);
    queue.put_bytes(message);
    (void)!write(ready[1], "r", 1);
    for (;;) pause();
  }
  char byte;
  EXPECT_EQ(read(ready[0], &byte, 1), 1);
  close(ready[0]);
  close(ready[1]);
  return pid;
}

TEST(CliSegmentsTest, LsAndStatShowDepthHoldersAndCounters) {
  const std::string name = xproc::testing::unique_name("cli-ls");
  const pid_t holder = start_holder(name);

  auto [ls_status, ls] = xproc::testing::run_command(kXproc + " ls" + " 2>&1");
  EXPECT_EQ(ls_status, 0);
  EXPECT_NE(ls.find(name), std::string::npos) << ls;
  EXPECT_NE(ls.find(std::to_string(holder)), std::string::npos) << ls;

  auto [json_status, json] = xproc::testing::run_command(kXproc + " ls --json" + " 2>&1");
  EXPECT_EQ(json_status, 0);
  EXPECT_NE(json.find("\"name\": \"" + name + "\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"holders\": [" + std::to_string(holder) + "]"), std::string::npos) << json;

  auto [stat_status, stat] = xproc::testing::run_command(kXproc + " stat " + name + " --json" + " 2>&1");
  EXPECT_EQ(stat_status, 0);
  EXPECT_NE(stat.find("\"messages\": 2"), std::string::npos) << stat;
  EXPECT_NE(stat.find("\"put\": 2"), std::string::npos) << stat;
  EXPECT_NE(stat.find("\"got\": 0"), std::string::npos) << stat;
  EXPECT_NE(stat.find("\"maxsize\": 10"), std::string::npos) << stat;
  EXPECT_NE(stat.find("\"kind\": \"Queue\""), std::string::npos) << stat;

  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
  xproc::ByteQueue::remove(name);
}

TEST(CliSegmentsTest, CleanupSparesLiveHoldersAndRemovesWhatTheDeadLeft) {
  const std::string name = xproc::testing::unique_name("cli-cleanup");
  const pid_t holder = start_holder(name);

  auto [dry_status, dry] = xproc::testing::run_command(kXproc + " cleanup --dry-run " + name + " 2>&1");
  EXPECT_EQ(dry_status, 0);
  EXPECT_EQ(dry.find(name), std::string::npos) << "a held queue must not be a candidate:\n" << dry;
  // (Each call names this test's queue: other tests' queues may be briefly unheld.)

  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);

  auto [status, out] = xproc::testing::run_command(kXproc + " cleanup --dry-run " + name + " 2>&1");
  EXPECT_EQ(status, 0);
  EXPECT_NE(out.find("would remove " + name), std::string::npos) << out;
  auto [still, unused] = xproc::testing::run_command(kXproc + " stat " + name + " 2>&1");
  EXPECT_EQ(still, 0) << "a dry run removes nothing";

  std::tie(status, out) = xproc::testing::run_command(kXproc + " cleanup " + name + " 2>&1");
  EXPECT_EQ(status, 0);
  EXPECT_NE(out.find("removed " + name), std::string::npos) << out;
  std::tie(status, out) = xproc::testing::run_command(kXproc + " stat " + name + " 2>&1");
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("no queue named '" + name + "'"), std::string::npos) << out;
}

TEST(CliSegmentsTest, RmAndBadNamesGiveActionableErrors) {
  const std::string name = xproc::testing::unique_name("cli-rm");
  auto queue = xproc::ByteQueue::create(name);
  auto [status, out] = xproc::testing::run_command(kXproc + " rm " + name + " 2>&1");
  EXPECT_EQ(status, 0);
  EXPECT_NE(out.find("removed " + name), std::string::npos);
  std::tie(status, out) = xproc::testing::run_command(kXproc + " rm " + name + " 2>&1");
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("no queue named"), std::string::npos) << out;
  std::tie(status, out) = xproc::testing::run_command(kXproc + " stat ../etc" + " 2>&1");
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("xproc:"), std::string::npos) << out;
}

}  // namespace
