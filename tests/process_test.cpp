// Tests for xproc::Process: exit codes and signals as Python reports them, names,
// joining with timeouts, daemons, and the child's clean exit path. Children report only
// through exit codes and pipes.
#include "xproc/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"
#include "xproc/errors.h"

namespace {

using namespace std::chrono_literals;
using xproc::Process;

// Runs `body` in a forked wrapper child whose stdout and stderr go to a pipe; returns
// (exit code of the wrapper, everything it printed).
std::pair<int, std::string> run_captured(const std::function<void()>& body) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[1]);
    try {
      body();
    } catch (...) {
      _exit(99);
    }
    std::fflush(nullptr);
    _exit(0);
  }
  close(fds[1]);
  std::string output;
  char buffer[512];
  ssize_t n;
  while ((n = read(fds[0], buffer, sizeof(buffer))) > 0) output.append(buffer, n);
  close(fds[0]);
  return {xproc::testing::wait_exit_code(pid), output};
}

bool pid_exists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

// Forks a parent that starts a daemon child and reports its pid; the parent then exits
// normally (`exit_at_once`) or waits to be killed. Returns (parent pid, daemon pid or -1).
std::pair<pid_t, pid_t> start_parent_of_daemon(bool exit_at_once) {
  int fds[2];
  if (pipe(fds) != 0) return {-1, -1};
  std::fflush(nullptr);
  const pid_t parent = fork();
  if (parent == 0) {
    close(fds[0]);
    Process daemon([] { pause(); }, {.daemon = true});
    daemon.start();
    const pid_t pid = daemon.pid();
    (void)!write(fds[1], &pid, sizeof(pid));
    if (exit_at_once) std::exit(0);  // atexit terminates the daemon
    pause();
    _exit(0);
  }
  close(fds[1]);
  pid_t daemon_pid = -1;
  if (read(fds[0], &daemon_pid, sizeof(daemon_pid)) != static_cast<ssize_t>(sizeof(daemon_pid))) daemon_pid = -1;
  close(fds[0]);
  return {parent, daemon_pid};
}

TEST(ProcessTest, TargetReturningNormallyExitsZero) {
  Process p([] {});
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_FALSE(p.is_alive());
}

TEST(ProcessTest, ExitcodeIsEmptyBeforeStartAndWhileRunning) {
  Process p([] { std::this_thread::sleep_for(300ms); });
  EXPECT_FALSE(p.exitcode().has_value());
  EXPECT_EQ(p.pid(), 0);
  p.start();
  EXPECT_TRUE(p.is_alive());
  EXPECT_FALSE(p.exitcode().has_value());
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(ProcessTest, EscapingExceptionPrintsProcessNameAndExitsOne) {
  auto [code, output] = run_captured([] {
    Process p([] { throw std::runtime_error("boom"); }, {.name = "Worker-7"});
    p.start();
    p.join();
    std::exit(*p.exitcode());
  });
  EXPECT_EQ(code, 1);
  EXPECT_NE(output.find("Process Worker-7:"), std::string::npos) << output;
  EXPECT_NE(output.find("std::runtime_error: boom"), std::string::npos) << output;
}

TEST(ProcessTest, SystemExitSetsExitCodeWithoutTraceback) {
  auto [code, output] = run_captured([] {
    Process p([] { throw xproc::SystemExit{7}; });
    p.start();
    p.join();
    std::exit(*p.exitcode());
  });
  EXPECT_EQ(code, 7);
  EXPECT_EQ(output.find("Traceback"), std::string::npos) << output;
}

TEST(ProcessTest, KilledChildReportsMinusSignal) {
  Process p([] { pause(); });
  p.start();
  p.kill();
  p.join();
  EXPECT_EQ(p.exitcode(), -SIGKILL);
}

TEST(ProcessTest, TerminatedChildReportsMinusSigterm) {
  Process p([] { pause(); });
  p.start();
  p.terminate();
  p.join();
  EXPECT_EQ(p.exitcode(), -SIGTERM);
}

TEST(ProcessTest, JoinWithTimeoutReturnsWhileChildStillRuns) {
  Process p([] { std::this_thread::sleep_for(600ms); });
  p.start();
  p.join(50ms);
  EXPECT_TRUE(p.is_alive());
  EXPECT_FALSE(p.exitcode().has_value());
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(ProcessTest, JoinWithTimeoutReturnsEarlyWhenChildExits) {
  Process p([] {});
  p.start();
  p.join(30s);  // returns as soon as the child exits; a hang would time the test out
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(ProcessTest, DefaultNamesCountUpAndChildrenExtendThem) {
  Process a([] {});
  Process b([] {});
  const int first = std::stoi(a.name().substr(a.name().find('-') + 1));
  EXPECT_EQ(a.name().rfind("Process-", 0), 0u);
  EXPECT_EQ(b.name(), "Process-" + std::to_string(first + 1));
  // A child's own children are named "<child name>:k", as Python does.
  auto [code, output] = run_captured([] {
    Process parent([] {
      Process grandchild([] {});
      std::printf("%s|%s\n", xproc::current_process_name().c_str(), grandchild.name().c_str());
    });
    parent.start();
    parent.join();
    std::printf("parent was %s\n", parent.name().c_str());
  });
  EXPECT_EQ(code, 0);
  const auto parent_name = output.substr(output.find("parent was ") + 11);
  const std::string expected = parent_name.substr(0, parent_name.size() - 1);
  EXPECT_NE(output.find(expected + "|" + expected + ":1"), std::string::npos) << output;
}

TEST(ProcessTest, StartTwiceThrowsValueError) {
  Process p([] {});
  p.start();
  EXPECT_THROW(p.start(), xproc::ValueError);
  p.join();
}

TEST(ProcessTest, JoinBeforeStartThrowsValueError) {
  Process p([] {});
  EXPECT_THROW(p.join(), xproc::ValueError);
  EXPECT_FALSE(p.is_alive());
}

TEST(ProcessTest, ChildDoesNotRunParentsAtexitHandlers) {
  auto [code, output] = run_captured([] {
    std::atexit([] { std::fputs("atexit-ran\n", stdout); });
    Process p([] {});
    p.start();
    p.join();
  });
  EXPECT_EQ(code, 0);
  // The wrapper leaves with _exit, so any "atexit-ran" could only come from the child.
  EXPECT_EQ(output.find("atexit-ran"), std::string::npos) << output;
}

TEST(ProcessTest, BufferedParentOutputIsNotPrintedTwice) {
  auto [code, output] = run_captured([] {
    std::printf("before-start ");  // buffered: stdout is a pipe
    Process p([] { std::printf("from-child "); });
    p.start();
    p.join();
    std::printf("after-join\n");
  });
  EXPECT_EQ(code, 0);
  size_t count = 0;
  for (size_t at = output.find("before-start"); at != std::string::npos; at = output.find("before-start", at + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 1u) << output;
  EXPECT_NE(output.find("from-child"), std::string::npos) << output;
}

TEST(ProcessTest, DaemonIsTerminatedWhenParentExitsNormally) {
  auto [wrapper, daemon_pid] = start_parent_of_daemon(/*exit_at_once=*/true);
  ASSERT_GT(daemon_pid, 0);
  EXPECT_EQ(xproc::testing::wait_exit_code(wrapper), 0);
  // The wrapper reaped its daemon before exiting, so the pid is gone.
  EXPECT_FALSE(pid_exists(daemon_pid));
}

TEST(ProcessTest, DaemonDiesWhenParentIsKilled) {
  auto [wrapper, daemon_pid] = start_parent_of_daemon(/*exit_at_once=*/false);
  ASSERT_GT(daemon_pid, 0);
  kill(wrapper, SIGKILL);
  EXPECT_EQ(xproc::testing::wait_exit_code(wrapper), -SIGKILL);
  // The orphaned daemon is re-parented (to init or a subreaper) and killed by PDEATHSIG.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (pid_exists(daemon_pid) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  // A zombie still "exists" until its new parent reaps it; check its state instead.
  FILE* stat = std::fopen(("/proc/" + std::to_string(daemon_pid) + "/stat").c_str(), "r");
  char state = 'X';
  if (stat) {
    (void)!std::fscanf(stat, "%*d %*s %c", &state);
    std::fclose(stat);
  }
  EXPECT_TRUE(state == 'X' || state == 'Z') << "daemon state " << state;
}

TEST(ProcessTest, DaemonCannotStartChildren) {
  auto [code, output] = run_captured([] {
    Process daemon(
        [] {
          Process child([] {});
          try {
            child.start();
          } catch (const xproc::ValueError&) {
            throw xproc::SystemExit{42};
          }
        },
        {.daemon = true});
    daemon.start();
    daemon.join();
    std::exit(*daemon.exitcode());
  });
  EXPECT_EQ(code, 42) << output;
}

TEST(ProcessTest, DestructorOfUnjoinedProcessReapsIt) {
  pid_t pid;
  {
    Process p([] { std::this_thread::sleep_for(50ms); });
    p.start();
    pid = p.pid();
  }
  EXPECT_FALSE(pid_exists(pid));
}

TEST(ProcessTest, DestructorOfDaemonTerminatesIt) {
  pid_t pid;
  {
    Process p([] { pause(); }, {.daemon = true});
    p.start();
    pid = p.pid();
  }
  EXPECT_FALSE(pid_exists(pid));
}

TEST(ProcessTest, VectorOfProcessesStartsAndJoins) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::vector<Process> workers;
  for (int i = 0; i < 10; ++i) {
    workers
        .emplace_back([i, fd = fds[1]] {
          const char c = static_cast<char>('0' + i);
          (void)!write(fd, &c, 1);
          throw xproc::SystemExit{i};
        })
        .start();
  }
  close(fds[1]);
  for (auto& w : workers) w.join();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(workers[i].exitcode(), i);
  std::string seen;
  char buffer[32];
  ssize_t n;
  while ((n = read(fds[0], buffer, sizeof(buffer))) > 0) seen.append(buffer, n);
  close(fds[0]);
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, "0123456789");
}

TEST(ProcessTest, MovedProcessKeepsTrackOfItsChild) {
  Process a([] { throw xproc::SystemExit{3}; });
  a.start();
  Process b = std::move(a);
  b.join();
  EXPECT_EQ(b.exitcode(), 3);
  EXPECT_EQ(a.pid(), 0);  // NOLINT(bugprone-use-after-move): moved-from is empty
}

}  // namespace
