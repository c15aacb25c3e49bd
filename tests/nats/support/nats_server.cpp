// Implementation of nats_server.h: fork/exec of nats-server, readiness through its
// monitoring port (/healthz, /jsz) read with a plain HTTP/1.0 GET.
#include "support/nats_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace xproc::testing {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kReadyTimeout = std::chrono::seconds(30);

// InterruptCheck's flag, raised by interrupt_after's thread and consumed by the check.
std::atomic<bool> interrupt_raised{false};

void throw_when_interrupted() {
  if (interrupt_raised.exchange(false)) throw Interrupted();
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

sockaddr_in loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(uint16_t(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

int free_port() {
  Fd s{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (s.fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
  sockaddr_in address = loopback(0);
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    throw std::runtime_error("bind: " + std::string(std::strerror(errno)));
  }
  socklen_t length = sizeof(address);
  ::getsockname(s.fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

// The body of GET http://127.0.0.1:port/path, nullopt when the server does not answer (yet).
std::optional<std::string> http_get(int port, const std::string& path) {
  Fd s{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (s.fd < 0) return std::nullopt;
  timeval one_second{1, 0};
  ::setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &one_second, sizeof(one_second));
  ::setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &one_second, sizeof(one_second));
  sockaddr_in address = loopback(port);
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) return std::nullopt;
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (::send(s.fd, request.data(), request.size(), MSG_NOSIGNAL) != ssize_t(request.size())) return std::nullopt;
  std::string reply;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::recv(s.fd, buffer, sizeof(buffer), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    reply.append(buffer, size_t(n));
  }
  const size_t body = reply.find("\r\n\r\n");
  if (body == std::string::npos) return std::nullopt;
  return reply.substr(body + 4);
}

std::optional<nlohmann::json> monitor(int port, const std::string& path) {
  const auto body = http_get(port, path);
  if (!body) return std::nullopt;
  auto parsed = nlohmann::json::parse(*body, nullptr, false);
  if (parsed.is_discarded()) return std::nullopt;
  return parsed;
}

std::string quoted(const std::string& text) { return nlohmann::json(text).dump(); }

}  // namespace

NatsServers::NatsServers(int size, std::vector<NatsUser> users) : users_(std::move(users)) {
  if (size < 1) throw std::invalid_argument("NatsServers: size must be at least 1");
  // mkdtemp replaces the template's trailing six X's; the directory is under $TMPDIR.
  std::string pattern = (std::filesystem::temp_directory_path() / "xproc-nats-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
  directory_ = pattern;
  servers_.resize(size_t(size));
  for (Server& server : servers_) {
    server.client_port = free_port();
    server.cluster_port = free_port();
    server.monitor_port = free_port();
  }
  try {
    for (int i = 0; i < size; ++i) {
      std::filesystem::create_directories(directory_ + "/n" + std::to_string(i));
      write_config(i);
      spawn(i);
    }
    for (int i = 0; i < size; ++i) wait_ready(i);
  } catch (...) {
    for (int i = 0; i < size; ++i) kill(i);
    std::filesystem::remove_all(directory_);
    throw;
  }
}

NatsServers::~NatsServers() {
  for (int i = 0; i < size(); ++i) kill(i);
  std::error_code ignored;
  std::filesystem::remove_all(directory_, ignored);
}

std::vector<std::string> NatsServers::urls() const {
  std::vector<std::string> urls;
  for (const Server& server : servers_) urls.push_back("nats://127.0.0.1:" + std::to_string(server.client_port));
  return urls;
}

nats::Options NatsServers::options() const {
  nats::Options options;
  options.servers = urls();
  if (!users_.empty()) {
    options.user = users_.front().user;
    options.password = users_.front().password;
  }
  return options;
}

std::string NatsServers::closed_url() { return "nats://127.0.0.1:" + std::to_string(free_port()); }

std::string NatsServers::config_path(int i) const { return directory_ + "/n" + std::to_string(i) + ".conf"; }
std::string NatsServers::log_path(int i) const { return directory_ + "/n" + std::to_string(i) + ".log"; }

void NatsServers::write_config(int i) const {
  const Server& server = servers_[size_t(i)];
  std::ofstream config(config_path(i));
  config << "server_name: \"n" << i << "\"\n"
         << "listen: 127.0.0.1:" << server.client_port << "\n"
         << "http: 127.0.0.1:" << server.monitor_port << "\n"
         << "jetstream { store_dir: " << quoted(directory_ + "/n" + std::to_string(i))
         << ", max_memory_store: 256MB, max_file_store: 2GB }\n";
  if (size() > 1) {
    config << "cluster { name: \"xproc-test\", listen: 127.0.0.1:" << server.cluster_port << ", routes: [";
    for (size_t n = 0; n < servers_.size(); ++n) {
      config << (n > 0 ? ", " : "") << "nats-route://127.0.0.1:" << servers_[n].cluster_port;
    }
    config << "] }\n";
  }
  if (!users_.empty()) {
    config << "authorization { users: [";
    for (size_t n = 0; n < users_.size(); ++n) {
      config << (n > 0 ? ", " : "") << "{user: " << quoted(users_[n].user)
             << ", password: " << quoted(users_[n].password) << "}";
    }
    config << "] }\n";
  }
  if (!config) throw std::runtime_error("cannot write " + config_path(i));
}

void NatsServers::spawn(int i) {
  if (running(i)) return;
  // Everything the child needs is made before fork: after it, only async-signal-safe calls.
  const std::string binary = XPROC_NATS_SERVER;
  const std::string config = config_path(i);
  const std::string log = log_path(i);
  const char* argv[] = {binary.c_str(), "-c", config.c_str(), nullptr};
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out >= 0) {
      ::dup2(out, STDOUT_FILENO);
      ::dup2(out, STDERR_FILENO);
    }
    ::execv(binary.c_str(), const_cast<char* const*>(argv));
    const char failed[] = "xproc test: exec of XPROC_NATS_SERVER failed\n";
    [[maybe_unused]] const ssize_t written = ::write(STDERR_FILENO, failed, sizeof(failed) - 1);
    ::_exit(127);
  }
  servers_[size_t(i)].pid = pid;
}

void NatsServers::wait_ready(int i) {
  const Server& server = servers_[size_t(i)];
  const auto deadline = Clock::now() + kReadyTimeout;
  for (;;) {
    int status = 0;
    if (::waitpid(server.pid, &status, WNOHANG) == server.pid) {
      servers_[size_t(i)].pid = -1;
      const std::string text = log(i);
      throw std::runtime_error("nats-server n" + std::to_string(i) +
                               " exited: " + text.substr(text.size() > 2000 ? text.size() - 2000 : 0));
    }
    const auto health = monitor(server.monitor_port, "/healthz");
    if (health && health->value("status", "") == "ok") {
      if (size() == 1) return;
      // Streams cannot be made, nor their leaders elected, before a meta leader is.
      const auto jsz = monitor(server.monitor_port, "/jsz");
      if (jsz && jsz->contains("meta_cluster") && !(*jsz)["meta_cluster"].value("leader", "").empty()) return;
    }
    if (Clock::now() > deadline) {
      const std::string text = log(i);
      throw std::runtime_error("nats-server n" + std::to_string(i) +
                               " not ready within 30 s: " + text.substr(text.size() > 2000 ? text.size() - 2000 : 0));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void NatsServers::kill(int i) {
  Server& server = servers_[size_t(i)];
  if (server.pid <= 0) return;
  ::kill(server.pid, SIGKILL);
  while (::waitpid(server.pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  server.pid = -1;
}

void NatsServers::stop(int i) {
  Server& server = servers_[size_t(i)];
  if (server.pid <= 0) return;
  ::kill(server.pid, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  while (Clock::now() < deadline) {
    if (::waitpid(server.pid, nullptr, WNOHANG) == server.pid) {
      server.pid = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(i);
}

void NatsServers::start(int i) {
  spawn(i);
  wait_ready(i);
}

void NatsServers::pause(int i) const {
  const pid_t pid = servers_[size_t(i)].pid;
  if (pid <= 0) return;
  if (::kill(pid, SIGSTOP) != 0) throw std::runtime_error("kill(SIGSTOP): " + std::string(std::strerror(errno)));
  // kill() returns before every thread of the server has stopped, and one still running would
  // answer what the test sends next: wait until the kernel reports the server stopped.
  int status = 0;
  pid_t got;
  while ((got = ::waitpid(pid, &status, WUNTRACED)) < 0 && errno == EINTR) {
  }
  if (got != pid || !WIFSTOPPED(status)) throw std::runtime_error("nats-server did not stop on SIGSTOP");
}

void NatsServers::resume(int i) const {
  const pid_t pid = servers_[size_t(i)].pid;
  if (pid > 0) ::kill(pid, SIGCONT);
}

InterruptCheck::InterruptCheck() {
  interrupt_raised = false;
  nats::set_wait_interrupt_check(&throw_when_interrupted);
}

InterruptCheck::~InterruptCheck() {
  interrupter_ = {};  // stops and joins it
  nats::set_wait_interrupt_check(nullptr);
  interrupt_raised = false;
}

void InterruptCheck::interrupt_after(std::chrono::milliseconds delay) {
  interrupter_ = std::jthread([delay](std::stop_token stop) {
    const auto at = Clock::now() + delay;
    while (!stop.stop_requested() && Clock::now() < at) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!stop.stop_requested()) interrupt_raised = true;
  });
}

std::string NatsServers::log(int i) const {
  std::ifstream in(log_path(i));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace xproc::testing
