// Interoperability with CPython's own multiprocessing.connection (standard library only,
// no xproc code in the Python process): framing and the HMAC handshake in both
// directions, and message payloads that `capnp decode` reads.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <signal.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "support/test_support.h"
#include "xproc/connection.h"
#include "xproc/listener.h"

namespace {

using xproc::ByteConnection;

std::string python() {
  const char* p = std::getenv("XPROC_PYTHON");
  return p && *p ? p : "python3";
}

using xproc::testing::venv_python;
std::string script(const char* name) { return xproc::testing::interop_script(name); }

// A python3 child with its stdout on a pipe we read lines from.
struct PythonChild {
  pid_t pid = -1;
  FILE* out = nullptr;
  explicit PythonChild(std::vector<std::string> args) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe");
    std::fflush(nullptr);
    pid = fork();
    if (pid == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      const std::string interpreter = python();
      argv.push_back(const_cast<char*>(interpreter.c_str()));
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    out = fdopen(fds[0], "r");
  }
  std::string line() {
    char buffer[512] = {};
    if (!std::fgets(buffer, sizeof(buffer), out)) return {};
    std::string s(buffer);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }
  int wait() {
    if (out) std::fclose(out);
    out = nullptr;
    return xproc::testing::wait_exit_code(pid);
  }
  ~PythonChild() {
    if (out) {
      kill(pid, SIGKILL);
      wait();
    }
  }
};

// accept() that gives up (instead of hanging the test) when no client shows up.
ByteConnection accept_within(xproc::Listener& listener, int seconds) {
  pollfd fd{listener.fileno(), POLLIN, 0};
  if (::poll(&fd, 1, seconds * 1000) != 1) throw std::runtime_error("no client connected in time");
  return listener.accept();
}

std::vector<std::byte> pattern(size_t size) {
  std::vector<std::byte> m(size);
  for (size_t i = 0; i < size; ++i) m[i] = static_cast<std::byte>((i * 7 + size) % 256);
  return m;
}

TEST(ConnectionInteropTest, XprocClientTalksToCPythonListener) {
  const std::string path = "/tmp/xproc-interop-" + xproc::testing::unique_name("py-listener");
  PythonChild listener({script("python_listener.py"), path, "shared key"});
  ASSERT_EQ(listener.line(), path);
  ByteConnection c = xproc::Client(path, "shared key");
  for (size_t size : {size_t{0}, size_t{5}, size_t{16385}, size_t{70000}, size_t{1} << 20}) {
    auto message = pattern(size);
    c.send_bytes(message);
    auto reply = c.recv_bytes();
    std::reverse(message.begin(), message.end());
    EXPECT_EQ(reply, message) << "size " << size;
  }
  c.send_bytes(std::as_bytes(std::span("bye", 3)));
  EXPECT_EQ(listener.wait(), 0);
}

TEST(ConnectionInteropTest, CPythonClientTalksToXprocListener) {
  xproc::Listener listener("127.0.0.1:0", 1, "tcp key");
  PythonChild client({script("python_client.py"), listener.address(), "tcp key"});
  ByteConnection server = accept_within(listener, 20);
  for (;;) {
    auto message = server.recv_bytes();
    if (message == std::vector<std::byte>{std::byte{'b'}, std::byte{'y'}, std::byte{'e'}}) break;
    std::reverse(message.begin(), message.end());
    server.send_bytes(message);
  }
  EXPECT_EQ(client.wait(), 0);
}

TEST(ConnectionInteropTest, WrongAuthkeyFailsWithCPythonListener) {
  const std::string path = "/tmp/xproc-interop-" + xproc::testing::unique_name("py-wrongkey");
  PythonChild listener({script("python_listener.py"), path, "right"});
  ASSERT_EQ(listener.line(), path);
  EXPECT_THROW(xproc::Client(path, "wrong"), xproc::AuthenticationError);
  EXPECT_EQ(listener.line(), "auth-failed");
  EXPECT_EQ(listener.wait(), 3);
}

TEST(ConnectionInteropTest, WrongAuthkeyFailsWithCPythonClient) {
  const std::string name = xproc::testing::unique_name("xproc-listener");
  xproc::Listener listener("unix:@" + name, 1, "right");
  PythonChild client({script("python_client.py"), "@" + name, "wrong"});
  EXPECT_THROW(accept_within(listener, 20), xproc::AuthenticationError);
  EXPECT_EQ(client.wait(), 3);
}

TEST(ConnectionInteropTest, ValuePayloadReceivedByCPythonDecodesWithCapnpToolAndPycapnp) {
  const std::string path = "/tmp/xproc-interop-" + xproc::testing::unique_name("py-decode");
  const std::string saved = path + ".bin";
  PythonChild listener({script("python_listener.py"), path, "k", saved});
  ASSERT_EQ(listener.line(), path);
  xproc::Connection<xproc::Value> c(xproc::Client(path, "k"));
  const xproc::Value sent = xproc::Value::map(
      {{"greeting", "Hi I'm your subprocess"}, {"id", 42}, {0.25, nullptr}, {"raw", xproc::Value::bytes("\x00a")}});
  c.send(sent);
  c.recv_bytes();  // the reversed echo: Python got the whole frame
  c.send_bytes(std::as_bytes(std::span("bye", 3)));
  EXPECT_EQ(listener.wait(), 0);
  auto [status, output] = xproc::testing::capnp_decode_value(saved);
  EXPECT_EQ(status, 0) << output;
  // pycapnp alone (the project's venv has it) reads the same bytes into the same object.
  auto [py_status, py_repr] = xproc::testing::run_command(venv_python() + " " + script("pycapnp_decode.py") +
                                                          " " XPROC_SOURCE_DIR "/schema " + saved + " 2>&1");
  EXPECT_EQ(py_status, 0) << py_repr;
  EXPECT_EQ(py_repr, sent.repr() + "\n");
  std::remove(saved.c_str());
  EXPECT_NE(output.find("your subprocess"), std::string::npos) << output;
  EXPECT_NE(output.find("int64 = 42"), std::string::npos) << output;
}

}  // namespace
