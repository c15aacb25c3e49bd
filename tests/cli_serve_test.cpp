// `xproc serve`: a standalone Manager over TCP that clients reach with Manager::connect,
// and that stops when a client calls shutdown.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "support/test_support.h"
#include "xproc/errors.h"
#include "xproc/manager.h"

namespace xproc {
namespace {

struct ServeProcess {
  pid_t pid = -1;
  std::string first_line;

  explicit ServeProcess(const std::vector<std::string>& args) {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe");
    std::fflush(nullptr);
    pid = ::fork();
    if (pid == 0) {
      ::dup2(fds[1], 1);
      ::dup2(fds[1], 2);
      ::close(fds[0]);
      ::close(fds[1]);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      _exit(127);
    }
    ::close(fds[1]);
    out = ::fdopen(fds[0], "r");
    char line[512] = {};
    if (std::fgets(line, sizeof(line), out)) first_line = line;
  }
  // Waits for the exit, keeping what the server printed after its first line (read to the
  // end, so the server never writes into a closed pipe).
  int wait() {
    char buffer[512];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), out)) > 0) rest.append(buffer, n);
    std::fclose(out);
    out = nullptr;
    return testing::wait_exit_code(pid);
  }
  ~ServeProcess() {
    if (out != nullptr) std::fclose(out);
  }
  FILE* out = nullptr;
  std::string rest;
};

const std::string kXproc = XPROC_BINARY_DIR "/src/cli/xproc";

std::string key_file(const std::string& key, mode_t mode) {
  std::string path = "/tmp/" + testing::unique_name("key");
  std::ofstream(path) << key << "\n";
  ::chmod(path.c_str(), mode);
  return path;
}

TEST(CliServe, TcpManagerServesClientsUntilShutdown) {
  std::string keys = key_file("serve-test-key", 0600);
  ServeProcess serve({kXproc, "serve", "--address", "tcp:127.0.0.1:0", "--authkey-file", keys});
  ASSERT_TRUE(serve.first_line.starts_with("serving on ")) << serve.first_line;
  std::string address = serve.first_line.substr(11);
  address.pop_back();  // newline

  auto manager = Manager::connect(address, "serve-test-key");
  auto d = manager.dict({}, "shared");
  d.set("a", 1);
  auto again = Manager::connect(address, "serve-test-key");
  EXPECT_EQ(again.dict({}, "shared")["a"], Value(1));
  EXPECT_THROW(Manager::connect(address, "wrong"), AuthenticationError);

  try {
    manager.wait(manager.client().shutdownRequest().send());
  } catch (const ConnectionError&) {
    // the server may close before its reply is read
  }
  EXPECT_EQ(serve.wait(), 0);
  EXPECT_THROW(d["a"], ConnectionError);
  // Each connection is logged as it opens (with the client's address) and closes.
  EXPECT_NE(serve.rest.find("connection 1 opened from 127.0.0.1:"), std::string::npos) << serve.rest;
  EXPECT_NE(serve.rest.find("connection 3 closed"), std::string::npos) << serve.rest;
  ::unlink(keys.c_str());
}

TEST(CliServe, RefusesTcpWithoutKeyAndKeysOthersCanRead) {
  ServeProcess no_key({kXproc, "serve", "--address", "tcp:127.0.0.1:0"});
  EXPECT_NE(no_key.first_line.find("needs an authkey"), std::string::npos) << no_key.first_line;
  EXPECT_EQ(no_key.wait(), 1);

  std::string keys = key_file("k", 0644);
  ServeProcess open_key({kXproc, "serve", "--address", "tcp:127.0.0.1:0", "--authkey-file", keys});
  EXPECT_NE(open_key.first_line.find("readable by others"), std::string::npos) << open_key.first_line;
  EXPECT_EQ(open_key.wait(), 1);
  ::unlink(keys.c_str());

  std::string empty = key_file("", 0600);
  ServeProcess empty_key({kXproc, "serve", "--address", "tcp:127.0.0.1:0", "--authkey-file", empty});
  EXPECT_NE(empty_key.first_line.find("is empty"), std::string::npos) << empty_key.first_line;
  EXPECT_EQ(empty_key.wait(), 1);
  ::unlink(empty.c_str());
}

}  // namespace
}  // namespace xproc
