// A Manager server and a Listener against clients that do not play fair: lane requests and
// frames before the login, floods of unfinished calls and of connections, wrong logins,
// users who may not connect, silent handshakes, clients over their limits after the login,
// and TLS peers with the wrong certificates. In every case the others keep being served, and
// the server's memory stays bounded.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"
#include "xproc/auth.h"
#include "xproc/errors.h"
#include "xproc/listener.h"
#include "xproc/manager.capnp.h"
#include "xproc/manager.h"
#include "xproc/rpc/lane.h"

namespace xproc {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kKey = "hostile-test-key";

// A ManagerServer serving in a forked child, its log lines on a pipe.
class ServerChild {
 public:
  explicit ServerChild(ServerOptions options, const std::function<void()>& in_child = {}) {
    int log[2];
    EXPECT_EQ(::pipe2(log, O_CLOEXEC), 0);
    log_fd_ = log[0];
    const int log_out = log[1];
    options.log = [log_out](const std::string& line) {
      const std::string text = line + "\n";
      (void)!::write(log_out, text.data(), text.size());
    };
    ManagerServer server(std::move(options));
    address_ = server.address();
    pid_ = ::fork();
    if (pid_ == 0) {
      if (in_child) in_child();
      server.serve_forever();
      _exit(0);
    }
    ::close(log_out);
    server.close_unserved();
  }
  ~ServerChild() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    ::close(log_fd_);
  }
  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }

  // Resident memory of the server, in KiB.
  size_t rss_kib() const {
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
    }
    return 0;
  }

  // What the server logged so far (waits up to `patience` for `wanted` to appear).
  std::string log(const std::string& wanted = "", std::chrono::milliseconds patience = 2000ms) {
    const auto until = Clock::now() + patience;
    for (;;) {
      pollfd ready{log_fd_, POLLIN, 0};
      if (::poll(&ready, 1, 20) > 0) {
        char buffer[4096];
        const ssize_t n = ::read(log_fd_, buffer, sizeof(buffer));
        if (n > 0) log_.append(buffer, static_cast<size_t>(n));
      }
      if (wanted.empty() || log_.find(wanted) != std::string::npos || Clock::now() >= until) return log_;
    }
  }

 private:
  pid_t pid_ = -1;
  int log_fd_ = -1;
  std::string address_;
  std::string log_;
};

// ThreadSanitizer keeps shadow memory for what a program touches (several times its size)
// and hands freed memory back late: under it a server that keeps its bound measures larger
// (85 MiB for 8 MiB of queued replies in one run), so the bounds measure the sanitizer.
#if defined(__SANITIZE_THREAD__)
constexpr size_t kMemoryBoundFactor = 4;
#else
constexpr size_t kMemoryBoundFactor = 1;
#endif

// Checks that the server's resident memory grew by less than `limit_kib` since `before`,
// and records how much it grew (--gtest_output=xml shows it).
void expect_memory_bounded(const ServerChild& server, size_t before, size_t limit_kib) {
  limit_kib *= kMemoryBoundFactor;
  const size_t now = server.rss_kib();
  ::testing::Test::RecordProperty("server_rss_growth_kib", std::to_string(now > before ? now - before : 0));
  EXPECT_LT(now, before + limit_kib) << "the server's memory grew from " << before << " KiB to " << now << " KiB";
}

// A legitimate client: connects, writes and reads a value. How long it took.
std::chrono::milliseconds served(const std::string& address, const ConnectOptions& options = {}) {
  const auto started = Clock::now();
  auto manager = Manager::connect(address, kKey, options);
  auto d = manager.dict();
  d.set("k", 42);
  EXPECT_EQ(d["k"], Value(42));
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
}

int connect_tcp(const std::string& address) {
  const size_t colon = address.rfind(':');
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int connect_unix(const std::string& address) {
  std::string path = address.starts_with("unix:") ? address.substr(5) : address;
  if (!path.empty() && path[0] == '\0') path[0] = '@';  // an abstract name, as the server reports it
  sockaddr_un to{};
  to.sun_family = AF_UNIX;
  socklen_t length;
  if (path.starts_with('@')) {
    std::memcpy(to.sun_path + 1, path.data() + 1, path.size() - 1);
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  } else {
    std::snprintf(to.sun_path, sizeof(to.sun_path), "%s", path.c_str());
    length = sizeof(to);
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), length) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Whether the server closes `fd` within `patience` (reading and dropping what it sends).
bool closed_by_server(int fd, std::chrono::milliseconds patience = 5000ms) {
  const auto until = Clock::now() + patience;
  char sink[4096];
  while (Clock::now() < until) {
    pollfd ready{fd, POLLIN, 0};
    if (::poll(&ready, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
  }
  return false;
}

bool send_bytes(int fd, const void* data, size_t size) {
  return ::send(fd, data, size, MSG_NOSIGNAL) == static_cast<ssize_t>(size);
}

// A client that speaks the RPC protocol by hand on a blocking socket, to do what no
// well-behaved client does: call without finishing, send without reading.
class RawRpc {
 public:
  explicit RawRpc(int fd) : fd_(fd) {}
  ~RawRpc() { ::close(fd_); }
  int fd() const { return fd_; }

  bool bootstrap(uint32_t question) {
    capnp::MallocMessageBuilder message;
    message.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(question);
    return send(message);
  }
  // A call of `method` of `interface` on the capability the server exported as `target`.
  template <typename Params = capnp::AnyStruct>
  bool call(uint32_t question, uint32_t target, uint64_t interface, uint16_t method,
            const std::function<void(capnp::AnyPointer::Builder)>& params = {}) {
    capnp::MallocMessageBuilder message;
    auto call = message.initRoot<capnp::rpc::Message>().initCall();
    call.setQuestionId(question);
    call.initTarget().setImportedCap(target);
    call.setInterfaceId(interface);
    call.setMethodId(method);
    auto content = call.initParams().getContent();
    if (params) params(content);
    return send(message);
  }
  // Reads messages until the Return of `question`; its results' content and capability table.
  kj::Own<capnp::MessageReader> await_return(uint32_t question) {
    for (;;) {
      auto message = kj::heap<capnp::StreamFdMessageReader>(fd_);
      auto root = message->getRoot<capnp::rpc::Message>();
      if (root.isReturn() && root.getReturn().getAnswerId() == question) return message;
    }
  }
  static uint32_t exported_cap(capnp::MessageReader& reply, unsigned index = 0) {
    return reply.getRoot<capnp::rpc::Message>().getReturn().getResults().getCapTable()[index].getSenderHosted();
  }
  static capnp::AnyPointer::Reader content(capnp::MessageReader& reply) {
    return reply.getRoot<capnp::rpc::Message>().getReturn().getResults().getContent();
  }

  // Bootstrap, challenge and login: the Manager capability's export id.
  uint32_t log_in(const std::string& key) {
    bootstrap(0);
    const uint32_t gate = exported_cap(*await_return(0));
    call(1, gate, capnp::typeId<schema::Gate>(), 0);
    auto nonce_reply = await_return(1);
    auto nonce = content(*nonce_reply).getAs<schema::Gate::ChallengeResults>().getNonce();
    const std::string digest =
        hmac_sha256(key, std::string_view(reinterpret_cast<const char*>(nonce.begin()), nonce.size()));
    call(2, gate, capnp::typeId<schema::Gate>(), 1, [&](capnp::AnyPointer::Builder params) {
      params.initAs<schema::Gate::LoginParams>().setDigest(
          kj::arrayPtr(reinterpret_cast<const kj::byte*>(digest.data()), digest.size()));
    });
    return exported_cap(*await_return(2));
  }

 private:
  bool send(capnp::MessageBuilder& message) {
    auto words = capnp::messageToFlatArray(message);
    return ::send(fd_, words.begin(), words.size() * sizeof(capnp::word), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(words.size() * sizeof(capnp::word));
  }
  int fd_;
};

TEST(ManagerHostileTest, LaneRequestWithoutTheKeyGetsNoMemoryAndClosesTheConnection) {
  ServerChild server(ServerOptions{.address = "unix:@" + testing::unique_name("lane-key"), .authkey = kKey});
  const int fd = connect_unix(server.address());
  ASSERT_GE(fd, 0);
  EXPECT_THROW(rpc::request_lane(fd, std::string("wrong key")), AuthenticationError);
  EXPECT_TRUE(closed_by_server(fd));
  ::close(fd);
  EXPECT_NE(server.log("wrong authkey in a lane request").find("wrong authkey in a lane request"), std::string::npos);

  // With the key, a lane: sealed, so the client cannot shrink it under the server.
  const int good = connect_unix(server.address());
  auto lane = rpc::request_lane(good, kKey);
  ASSERT_TRUE(lane.has_value());
  EXPECT_LT(served(server.address()), 1000ms);
  ::close(good);
}

TEST(ManagerHostileTest, ALaneCannotBeTruncatedUnderTheServer) {
  ServerChild server(ServerOptions{.address = "unix:@" + testing::unique_name("lane-seal"), .authkey = kKey});
  const int fd = connect_unix(server.address());
  ASSERT_EQ(rpc::send_all(fd, std::as_bytes(std::span(rpc::kLaneRequest))), 0);
  // The raw protocol, to keep the descriptor the server sends.
  rpc::LaneReply reply;
  ASSERT_EQ(::recv(fd, &reply, sizeof(reply), MSG_WAITALL), static_cast<ssize_t>(sizeof(reply)));
  ASSERT_EQ(reply.status, rpc::LaneReply::kChallenge);
  std::string nonce(rpc::kLaneNonceBytes, '\0');
  ASSERT_EQ(::recv(fd, nonce.data(), nonce.size(), MSG_WAITALL), static_cast<ssize_t>(nonce.size()));
  const std::string digest = hmac_sha256(kKey, nonce);
  ASSERT_TRUE(send_bytes(fd, digest.data(), digest.size()));
  char control[CMSG_SPACE(sizeof(int))] = {};
  iovec part{&reply, sizeof(reply)};
  msghdr message{};
  message.msg_iov = &part;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  ASSERT_EQ(::recvmsg(fd, &message, MSG_WAITALL), static_cast<ssize_t>(sizeof(reply)));
  ASSERT_EQ(reply.status, rpc::LaneReply::kGranted);
  int memfd = -1;
  std::memcpy(&memfd, CMSG_DATA(CMSG_FIRSTHDR(&message)), sizeof(int));
  EXPECT_NE(::ftruncate(memfd, 0), 0) << "a lane can be shrunk under the server";
  EXPECT_EQ(errno, EPERM);
  const char bell = 1;
  ASSERT_TRUE(send_bytes(fd, &bell, 1));  // and a doorbell, as the attack rang it
  EXPECT_LT(served(server.address()), 1000ms);
  ::close(memfd);
  ::close(fd);
}

// 512 MiB announced before the login, then zeros: refused when the size is known.
TEST(ManagerHostileTest, LargeFrameBeforeTheLoginClosesTheConnectionAndPinsNothing) {
  ServerChild server(ServerOptions{.address = "tcp:127.0.0.1:0", .authkey = kKey});
  EXPECT_LT(served(server.address()), 1000ms);
  const size_t rss_before = server.rss_kib();
  const int fd = connect_tcp(server.address());
  const uint32_t table[2] = {0, (512u << 20) / 8};
  ASSERT_TRUE(send_bytes(fd, table, sizeof(table)));
  std::vector<char> zeros(1 << 20);
  for (int i = 0; i < 64; ++i) {
    if (!send_bytes(fd, zeros.data(), zeros.size())) break;  // closed on us: good
  }
  EXPECT_TRUE(closed_by_server(fd));
  ::close(fd);
  EXPECT_LT(served(server.address()), 1000ms);
  expect_memory_bounded(server, rss_before, 16 * 1024);  // the frame announced 512 MiB
}

// challenge() calls that are never finished, before any login: the connection is cut
// after a few.
TEST(ManagerHostileTest, FloodOfUnfinishedCallsBeforeTheLoginIsCutOff) {
  ServerChild server(ServerOptions{.address = "tcp:127.0.0.1:0", .authkey = kKey});
  EXPECT_LT(served(server.address()), 1000ms);
  const size_t rss_before = server.rss_kib();
  std::vector<std::unique_ptr<RawRpc>> floods;
  for (int connection = 0; connection < 20; ++connection) {
    auto& rpc = *floods.emplace_back(std::make_unique<RawRpc>(connect_tcp(server.address())));
    rpc.bootstrap(0);
    const uint32_t gate = RawRpc::exported_cap(*rpc.await_return(0));
    for (uint32_t question = 1; question < 20000; ++question) {
      if (!rpc.call(question, gate, capnp::typeId<schema::Gate>(), 0)) break;  // cut off: good
    }
  }
  for (auto& rpc : floods) EXPECT_TRUE(closed_by_server(rpc->fd()));
  EXPECT_LT(served(server.address()), 1000ms);
  expect_memory_bounded(server, rss_before, 16 * 1024);
  EXPECT_NE(server.log("called more than a login needs").find("called more than a login needs"), std::string::npos);
}

TEST(ManagerHostileTest, WrongLoginClosesTheConnectionAtOnceAndIsLogged) {
  ServerChild server(ServerOptions{.address = "tcp:127.0.0.1:0", .authkey = kKey});
  const auto started = Clock::now();
  EXPECT_THROW(Manager::connect(server.address(), std::string("guess")), AuthenticationError);
  EXPECT_LT(Clock::now() - started, 2s);
  const std::string log = server.log("login failed");
  EXPECT_NE(log.find("login failed from 127.0.0.1:"), std::string::npos) << log;
  // One guess per connection: the server's side of it is gone.
  EXPECT_NE(server.log("closed").find(" closed"), std::string::npos);
  EXPECT_LT(served(server.address()), 1000ms);
}

TEST(ManagerHostileTest, ClientThatNeverLogsInIsClosedAfterTheLoginTimeout) {
  ServerChild server(ServerOptions{.address = "tcp:127.0.0.1:0", .authkey = kKey, .login_timeout = 300ms});
  const int fd = connect_tcp(server.address());
  const auto started = Clock::now();
  EXPECT_TRUE(closed_by_server(fd, 5000ms));
  EXPECT_GE(Clock::now() - started, 250ms);
  ::close(fd);
  EXPECT_NE(server.log("did not log in in time").find("did not log in in time"), std::string::npos);
}

// Many more idle connections than the server serves, at a low descriptor limit: the
// newcomers displace those that never logged in, so a legitimate client gets in.
TEST(ManagerHostileTest, ConnectionFloodAtALowDescriptorLimitLocksNobodyOut) {
  ServerChild server(ServerOptions{.address = "tcp:127.0.0.1:0", .authkey = kKey}, [] {
    rlimit limit{64, 64};
    ::setrlimit(RLIMIT_NOFILE, &limit);
  });
  EXPECT_LT(served(server.address()), 1000ms);
  const size_t rss_before = server.rss_kib();
  std::vector<int> flood;
  for (int i = 0; i < 300; ++i) {
    const int fd = connect_tcp(server.address());
    if (fd >= 0) flood.push_back(fd);
  }
  EXPECT_LT(served(server.address()), 1000ms);
  EXPECT_LT(served(server.address()), 1000ms);
  expect_memory_bounded(server, rss_before, 16 * 1024);
  for (int fd : flood) ::close(fd);
  EXPECT_NE(server.log("to make room").find("to make room"), std::string::npos);
}

// Over the descriptor limit itself (the connection limit set above it), accept() fails: the
// server serves the connections it has and takes new ones once descriptors free up.
TEST(ManagerHostileTest, AcceptFailuresNeverStopTheServer) {
  ServerChild server(ServerOptions{.address = "tcp:127.0.0.1:0", .authkey = kKey, .max_connections = 1000}, [] {
    rlimit limit{48, 48};
    ::setrlimit(RLIMIT_NOFILE, &limit);
  });
  auto manager = Manager::connect(server.address(), kKey);
  auto d = manager.dict();
  std::vector<int> flood;
  for (int i = 0; i < 100; ++i) {
    const int fd = connect_tcp(server.address());
    if (fd >= 0) flood.push_back(fd);
  }
  std::this_thread::sleep_for(200ms);
  d.set("still", 1);  // a connection it has
  EXPECT_EQ(d["still"], Value(1));
  for (int fd : flood) ::close(fd);
  std::this_thread::sleep_for(300ms);
  EXPECT_LT(served(server.address()), 2000ms);
}

TEST(ManagerHostileTest, UnixSocketRefusesOtherUsersUnlessAllowed) {
  const std::string name = testing::unique_name("peercred");
  ServerChild strict(ServerOptions{.address = "unix:@" + name, .authkey = kKey});
  ServerChild allowing(
      ServerOptions{.address = "unix:@" + name + "-allowed", .authkey = kKey, .allowed_uids = {65534}});
  auto as_nobody = [](const std::string& address) {
    const pid_t child = ::fork();
    if (child == 0) {
      if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) _exit(125);
      try {
        auto manager = Manager::connect(address, kKey);
        manager.dict().set("k", 1);
        _exit(0);
      } catch (const ConnectionError&) {
        _exit(1);
      } catch (...) {
        _exit(2);
      }
    }
    return testing::wait_exit_code(child);
  };
  EXPECT_EQ(as_nobody(strict.address()), 1) << "125: could not switch users (needs root)";
  EXPECT_NE(strict.log("not an allowed user").find("from uid 65534"), std::string::npos);
  EXPECT_EQ(as_nobody(allowing.address()), 0);
  EXPECT_LT(served(strict.address()), 1000ms);
}

// After the login: a client over one of its limits is disconnected, with the limit named,
// and the others carry on.
TEST(ManagerHostileTest, ClientOverItsLimitsAfterTheLoginIsDisconnectedAlone) {
  ServerChild server(
      ServerOptions{.address = "tcp:127.0.0.1:0",
                    .authkey = kKey,
                    .limits = ConnectionLimits{.max_message_bytes = 1 << 20, .max_outstanding_calls = 64}});
  auto bystander = Manager::connect(server.address(), kKey);
  auto shared = bystander.dict();
  shared.set("before", 1);

  auto greedy = Manager::connect(server.address(), kKey);
  auto d = greedy.dict();
  try {
    d.set("big", std::string(2 << 20, 'x'));
    ADD_FAILURE() << "a 2 MiB message passed a 1 MiB limit";
  } catch (const ConnectionError& e) {
    EXPECT_NE(std::string(e.what()).find("larger than the reader allows"), std::string::npos) << e.what();
  }
  EXPECT_EQ(shared["before"], Value(1));

  // Pipelined calls, none finished yet: more than 64 open at once.
  auto pipelining = Manager::connect(server.address(), kKey);
  auto client = pipelining.client();
  std::vector<capnp::RemotePromise<schema::Manager::NamesResults>> open;
  for (int i = 0; i < 200; ++i) open.push_back(client.namesRequest().send());
  bool cut_off = false;
  for (auto& call : open) {
    try {
      pipelining.wait(kj::mv(call));
    } catch (const ConnectionError& e) {
      cut_off = true;
      EXPECT_NE(std::string(e.what()).find("too many calls open at once"), std::string::npos) << e.what();
      break;
    }
  }
  EXPECT_TRUE(cut_off);
  shared.set("after", 2);
  EXPECT_EQ(shared["after"], Value(2));
}

// A logged-in client that asks and asks and never reads the replies.
TEST(ManagerHostileTest, ClientThatNeverReadsItsRepliesIsDisconnectedBeforeTheServerGrows) {
  ServerChild server(
      ServerOptions{.address = "tcp:127.0.0.1:0",
                    .authkey = kKey,
                    .limits = ConnectionLimits{.max_outstanding_calls = 1000000, .max_queued_reply_bytes = 8 << 20}});
  auto setup = Manager::connect(server.address(), kKey);
  auto big = setup.dict({}, "big");
  big.set("v", std::string(64 << 10, 'v'));
  const size_t rss_before = server.rss_kib();

  RawRpc rpc(connect_tcp(server.address()));
  const uint32_t manager = rpc.log_in(kKey);
  rpc.call(3, manager, capnp::typeId<schema::Manager>(), 16, [](capnp::AnyPointer::Builder params) {
    params.initAs<schema::Manager::LookupParams>().setRegisteredName("big");
  });
  const uint32_t dict = RawRpc::exported_cap(*rpc.await_return(3));
  const uint16_t copy = 14;  // Dict.copy (manager.capnp)
  for (uint32_t question = 4; question < 20000; ++question) {
    if (!rpc.call(question, dict, capnp::typeId<schema::Dict>(), copy)) break;  // cut off
  }
  EXPECT_TRUE(closed_by_server(rpc.fd(), 10000ms));
  expect_memory_bounded(server, rss_before, 64 * 1024);
  EXPECT_NE(server.log("does not read its replies").find("does not read its replies"), std::string::npos);
  EXPECT_LT(served(server.address()), 1000ms);
}

// multiprocessing's Listener serves one handshake at a time; this one does not wait for a
// silent client before it serves the next.
TEST(ListenerHostileTest, SilentClientHoldsUpNobodyAndIsDroppedAfterTheHandshakeTimeout) {
  Listener listener("127.0.0.1:0", 8, std::string("listener key"), {}, 500ms);
  const int silent = connect_tcp(listener.address());
  ASSERT_GE(silent, 0);
  std::thread client([&] {
    std::this_thread::sleep_for(50ms);
    ByteConnection c = Client(listener.address(), std::string("listener key"));
    c.send_bytes(std::as_bytes(std::span("hello", 5)));
  });
  const auto started = Clock::now();
  ByteConnection accepted = listener.accept();
  EXPECT_LT(Clock::now() - started, 1s);
  EXPECT_EQ(accepted.recv_bytes().size(), 5u);
  client.join();
  // The next accept drops it once its time is up.
  EXPECT_FALSE(listener.try_accept(1s).has_value());
  EXPECT_TRUE(closed_by_server(silent, 1000ms)) << "the silent client was never dropped";
  ::close(silent);
}

TEST(ListenerHostileTest, FailedHandshakeRaisesWhileOthersGoOn) {
  Listener listener("127.0.0.1:0", 8, std::string("listener key"), {}, 2000ms);
  std::thread wrong([&] { EXPECT_THROW(Client(listener.address(), std::string("wrong")), AuthenticationError); });
  EXPECT_THROW(listener.accept(), AuthenticationError);
  wrong.join();
  std::thread right(
      [&] { Client(listener.address(), std::string("listener key")).send_bytes(std::as_bytes(std::span("ok", 2))); });
  EXPECT_EQ(listener.accept().recv_bytes().size(), 2u);
  right.join();
}

// ---- TLS ------------------------------------------------------------------------------

// The certificates of tests/support/make_certificates.sh, in a fresh directory.
class Certificates {
 public:
  Certificates() : dir_("/tmp/" + testing::unique_name("tls")) {
    auto [status, out] =
        testing::run_command("sh " XPROC_SOURCE_DIR "/tests/support/make_certificates.sh " + dir_ + " 2>&1");
    ok_ = status == 0;
    output_ = out;
  }
  ~Certificates() { testing::run_command("rm -rf " + dir_); }
  bool ok() const { return ok_; }
  const std::string& output() const { return output_; }
  std::string operator()(const std::string& file) const { return dir_ + "/" + file; }

 private:
  std::string dir_;
  bool ok_ = false;
  std::string output_;
};

ServerOptions tls_server(const Certificates& certs, bool client_certificates, const std::string& cert = "server") {
  ServerOptions options{.address = "tls:127.0.0.1:0", .authkey = kKey};
  options.tls =
      TlsServerOptions{certs(cert + ".pem"), certs(cert + ".key"), client_certificates ? certs("ca.pem") : ""};
  return options;
}

// "tls:localhost:PORT" for a server bound to 127.0.0.1.
std::string as_localhost(const std::string& address) {
  return "tls:localhost:" + address.substr(address.rfind(':') + 1);
}

TEST(ManagerTlsTest, TrustedServerServesAndWrongPeersAreRefusedWithClearErrors) {
  Certificates certs;
  ASSERT_TRUE(certs.ok()) << certs.output();
  ServerChild server(tls_server(certs, false));
  const std::string address = as_localhost(server.address());
  ConnectOptions trusting{.tls = TlsClientOptions{.ca_file = certs("ca.pem")}};
  EXPECT_LT(served(address, trusting), 2000ms);

  // The certificate names localhost, not 127.0.0.1.
  try {
    Manager::connect("tls:127.0.0.1:" + address.substr(address.rfind(':') + 1), kKey, trusting);
    ADD_FAILURE() << "a certificate for another name was accepted";
  } catch (const ConnectionError& e) {
    EXPECT_NE(std::string(e.what()).find("TLS"), std::string::npos) << e.what();
  }
  // A CA the server's certificate does not chain to.
  ConnectOptions other_ca{.tls = TlsClientOptions{.ca_file = certs("other.pem")}};
  EXPECT_THROW(Manager::connect(address, kKey, other_ca), ConnectionError);
  // A TLS client that does not speak the Gate (openssl's own): closed, and the server serves on.
  auto [status, out] = testing::run_command(
      "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 10 openssl s_client -quiet -connect " +
      server.address().substr(4) + " -CAfile " + certs("ca.pem") + " -verify_hostname localhost 2>&1; echo exit=$?");
  EXPECT_NE(out.find("exit=0"), std::string::npos) << "the server did not close the connection: " << out;
  EXPECT_LT(served(address, trusting), 2000ms);
  // A plain TCP client that does not speak TLS: closed, and the server serves on.
  const int plain = connect_tcp(server.address().substr(4));
  const std::string hello = "not a TLS record, not a Cap'n Proto frame";
  send_bytes(plain, hello.data(), hello.size());
  EXPECT_TRUE(closed_by_server(plain));
  ::close(plain);
  EXPECT_LT(served(address, trusting), 2000ms);
}

TEST(ManagerTlsTest, ClientCertificatesAreRequiredWhenAsked) {
  Certificates certs;
  ASSERT_TRUE(certs.ok()) << certs.output();
  ServerChild server(tls_server(certs, true));
  const std::string address = as_localhost(server.address());
  ConnectOptions anonymous{.tls = TlsClientOptions{.ca_file = certs("ca.pem")}};
  EXPECT_THROW(Manager::connect(address, kKey, anonymous), ConnectionError);
  ConnectOptions impostor{.tls = TlsClientOptions{.ca_file = certs("ca.pem"),
                                                  .cert_file = certs("impostor.pem"),
                                                  .key_file = certs("impostor.key")}};
  EXPECT_THROW(Manager::connect(address, kKey, impostor), ConnectionError);
  ConnectOptions identified{.tls = TlsClientOptions{.ca_file = certs("ca.pem"),
                                                    .cert_file = certs("client.pem"),
                                                    .key_file = certs("client.key")}};
  EXPECT_LT(served(address, identified), 2000ms);
}

// A TLS peer that never finishes its handshake holds up nobody.
TEST(ManagerTlsTest, StalledTlsHandshakeIsClosedAtTheLoginTimeout) {
  Certificates certs;
  ASSERT_TRUE(certs.ok()) << certs.output();
  ServerOptions options = tls_server(certs, false);
  // Long enough for a legitimate client's TLS handshake and login under a sanitizer on a
  // loaded machine (300 ms was not, under ThreadSanitizer).
  options.login_timeout = 2000ms;
  ServerChild server(std::move(options));
  const int stalled = connect_tcp(server.address().substr(4));
  ConnectOptions trusting{.tls = TlsClientOptions{.ca_file = certs("ca.pem")}};
  EXPECT_LT(served(as_localhost(server.address()), trusting), 2000ms);
  EXPECT_TRUE(closed_by_server(stalled, 10000ms));
  ::close(stalled);
}

}  // namespace
}  // namespace xproc
