// Real nats-server processes for the C++ NATS tests: one server, or a JetStream cluster of
// several on loopback ports, each with its own store directory under a fresh temporary
// directory (the C++ twin of nats_cluster.py).
//
//   xproc::testing::NatsServers cluster(3);
//   auto nats = xproc::nats::connect(cluster.options());
//   cluster.kill(1);    // SIGKILL: no goodbye to its peers or clients
//   cluster.start(1);   // back, with its store, once JetStream says it is current
//   { PausedServer hung(cluster, 2); ... }   // SIGSTOP, SIGCONT at the end of the scope
#pragma once

#include <sys/types.h>

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "xproc/nats/connection.h"

namespace xproc::testing {

struct NatsUser {
  std::string user;
  std::string password;
};

// Not thread-safe. Each server dies with the thread that started it (PR_SET_PDEATHSIG), so
// that a test binary killed mid-run leaves none behind: start servers from the test's thread.
class NatsServers {
 public:
  // Starts `size` servers of $XPROC_NATS_SERVER (the build's nats-server), one cluster when
  // size > 1, with authorisation when `users` is not empty, and waits until each is ready:
  // healthy, and in a cluster with a JetStream meta leader. std::runtime_error, with the end
  // of the server's log, when one is not within 30 s.
  explicit NatsServers(int size = 1, std::vector<NatsUser> users = {});
  // Kills every server still running, reaps it, and removes the directory.
  ~NatsServers();
  NatsServers(const NatsServers&) = delete;
  NatsServers& operator=(const NatsServers&) = delete;

  int size() const noexcept { return int(servers_.size()); }
  // "nats://127.0.0.1:PORT" of each server, in order.
  std::vector<std::string> urls() const;
  // Options for xproc::nats::connect: every server, the first user's credentials.
  nats::Options options() const;
  // An address on which nothing listens (a port that was free a moment ago).
  static std::string closed_url();

  // SIGKILL server i and reap it.
  void kill(int i);
  // SIGTERM server i, as an operator stops it, and wait until it has exited.
  void stop(int i);
  // Start server i again (its store kept) and wait until it is ready, as the constructor.
  void start(int i);
  // SIGSTOP server i: its connections stay open and nothing on them is answered, as with a
  // server that hangs; resume(i) (SIGCONT) lets it read what came meanwhile. Prefer
  // PausedServer, which resumes it however the test ends. Safe from any thread.
  void pause(int i) const;
  void resume(int i) const;
  bool running(int i) const noexcept { return servers_[size_t(i)].pid > 0; }
  // What server i wrote to its log so far (every run of it).
  std::string log(int i) const;

 private:
  struct Server {
    int client_port = 0;
    int cluster_port = 0;
    int monitor_port = 0;
    pid_t pid = -1;
  };
  std::string config_path(int i) const;
  std::string log_path(int i) const;
  void write_config(int i) const;
  void spawn(int i);
  void wait_ready(int i);

  std::string directory_;
  std::vector<NatsUser> users_;
  std::vector<Server> servers_;
};

// Server i paused (NatsServers::pause) for this object's lifetime, and resumed by its
// destructor, also when a failed assertion or an exception ends the test early.
class PausedServer {
 public:
  PausedServer(const NatsServers& servers, int i) : servers_(servers), i_(i) { servers_.pause(i_); }
  ~PausedServer() { servers_.resume(i_); }
  PausedServer(const PausedServer&) = delete;
  PausedServer& operator=(const PausedServer&) = delete;

 private:
  const NatsServers& servers_;
  int i_;
};

// What the interrupt check that InterruptCheck installs throws.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted by the test's wait interrupt check") {}
};

// Installs a wait interrupt check (xproc::nats::set_wait_interrupt_check) for its lifetime, as
// the Python binding does for Ctrl-C: interrupt_after(delay) raises a flag from another thread
// after `delay`, as a signal handler does, and the next check throws Interrupted once (the flag
// is consumed). The check is process-wide: one InterruptCheck at a time.
class InterruptCheck {
 public:
  InterruptCheck();
  ~InterruptCheck();
  InterruptCheck(const InterruptCheck&) = delete;
  InterruptCheck& operator=(const InterruptCheck&) = delete;

  void interrupt_after(std::chrono::milliseconds delay);

 private:
  std::jthread interrupter_;
};

// A suite whose tests share one server, started before its first test and stopped after
// its last: `class NatsQueueTest : public OneNatsServerSuite {};`. Each test makes names of
// its own (unique_name), so they do not meet on the shared server.
class OneNatsServerSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = std::make_unique<NatsServers>(1); }
  static void TearDownTestSuite() { server_.reset(); }
  static std::shared_ptr<nats::Connection> connect() { return nats::connect(server_->options()); }
  static NatsServers& server() { return *server_; }

 private:
  static inline std::unique_ptr<NatsServers> server_;
};

}  // namespace xproc::testing
