// The synchronous RPC session against a scripted server on the other end of a socket pair:
// what it sends (Bootstrap, Call, Finish, Release), how it takes what comes back (results
// with capabilities, Resolve, the Return of a call it gave up on), and what a server that
// sends garbage or aborts gets it: a disconnection error, nothing worse.
#include "xproc/rpc/direct_session.h"

#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <kj/async.h>

#include "xproc/rpc/thread_loop.h"

namespace xproc::rpc {
namespace {

namespace wire = capnp::rpc;
using namespace std::chrono_literals;

constexpr uint32_t kServerCap = 7;
constexpr uint64_t kInterface = 0xabcdef0123456789;

capnp::ReaderOptions options() { return capnp::ReaderOptions(); }

// The server's side of the socket: reads and writes whole RPC messages.
class ScriptedServer {
 public:
  explicit ScriptedServer(int fd) : fd_(fd) {}
  ~ScriptedServer() { ::close(fd_); }

  kj::Own<capnp::MessageReader> read() {
    kj::FdInputStream in(fd_);
    return kj::heap<capnp::InputStreamMessageReader>(in);
  }
  // Reads until a message of kind `which` arrives, noting the others in `seen`.
  kj::Own<capnp::MessageReader> read_until(wire::Message::Which which) {
    for (;;) {
      auto message = read();
      auto root = message->getRoot<wire::Message>();
      seen.push_back(root.which());
      if (root.isRelease()) released.emplace_back(root.getRelease().getId(), root.getRelease().getReferenceCount());
      if (root.isFinish()) finished.push_back(root.getFinish().getQuestionId());
      if (root.which() == which) return message;
    }
  }
  void write(capnp::MessageBuilder& message) { capnp::writeMessageToFd(fd_, message); }
  void write_bytes(const std::string& bytes) {
    ASSERT_EQ(::write(fd_, bytes.data(), bytes.size()), (ssize_t)bytes.size());
  }

  // A Return for `answer` whose results are the capability kServerCap.
  void return_capability(uint32_t answer) {
    capnp::MallocMessageBuilder message;
    auto results = message.initRoot<wire::Message>().initReturn();
    results.setAnswerId(answer);
    auto payload = results.initResults();
    capnp::BuilderCapabilityTable table;
    table.imbue(payload.getContent())
        .setAs<capnp::Capability>(capnp::Capability::Client(capnp::newBrokenCap("stand-in")));
    payload.initCapTable(1)[0].setSenderHosted(kServerCap);
    write(message);
  }
  void return_text(uint32_t answer, kj::StringPtr text) {
    capnp::MallocMessageBuilder message;
    auto results = message.initRoot<wire::Message>().initReturn();
    results.setAnswerId(answer);
    results.initResults().getContent().setAs<capnp::Text>(text);
    write(message);
  }

  std::vector<wire::Message::Which> seen;
  std::vector<std::pair<uint32_t, uint32_t>> released;  // (id, count)
  std::vector<uint32_t> finished;

 private:
  int fd_;
};

struct Pair {
  Pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0); }
  int fds[2];
};

// Runs `script` as the server in a thread while the test body acts as the client.
class DirectSessionTest : public ::testing::Test {
 protected:
  void serve(std::function<void(ScriptedServer&)> script) {
    server_ = std::thread([this, fd = pair_.fds[1], script = std::move(script)] {
      ScriptedServer server(fd);
      try {
        script(server);
      } catch (const std::exception& e) {
        server_error_ = e.what();
      } catch (const kj::Exception& e) {
        server_error_ = e.getDescription().cStr();
      }
      seen_ = server.seen;
      released_ = server.released;
      finished_ = server.finished;
    });
  }
  void TearDown() override {
    session_.reset();
    if (server_.joinable()) server_.join();
    EXPECT_EQ(server_error_, "");
  }
  std::shared_ptr<DirectSession> session(std::chrono::microseconds spin = 0us) {
    session_ = std::make_shared<DirectSession>(pair_.fds[0], options(), spin);
    return session_;
  }
  kj::WaitScope& scope() { return thread_loop().wait_scope(); }

  Pair pair_;
  std::thread server_;
  std::shared_ptr<DirectSession> session_;
  std::string server_error_;
  std::vector<wire::Message::Which> seen_;
  std::vector<std::pair<uint32_t, uint32_t>> released_;
  std::vector<uint32_t> finished_;
};

TEST_F(DirectSessionTest, CallsAnImportAndGivesBackWhatItWasSent) {
  serve([](ScriptedServer& server) {
    auto bootstrap = server.read_until(wire::Message::BOOTSTRAP);
    server.return_capability(bootstrap->getRoot<wire::Message>().getBootstrap().getQuestionId());

    auto request = server.read_until(wire::Message::CALL);
    auto call = request->getRoot<wire::Message>().getCall();
    if (call.getTarget().getImportedCap() != kServerCap || call.getInterfaceId() != kInterface ||
        call.getMethodId() != 3 || call.getParams().getContent().getAs<capnp::Text>() != "hello") {
      throw std::runtime_error("the call is not what the client built");
    }
    // Unsolicited first: a promise this side exported resolved to capability 11.
    capnp::MallocMessageBuilder resolve;
    auto body = resolve.initRoot<wire::Message>().initResolve();
    body.setPromiseId(9);
    body.initCap().setSenderHosted(11);
    server.write(resolve);
    server.return_text(call.getQuestionId(), "world");

    // The client's second bootstrap carries what it owes.
    auto again = server.read_until(wire::Message::BOOTSTRAP);
    server.return_capability(again->getRoot<wire::Message>().getBootstrap().getQuestionId());
  });
  auto direct = session();
  {
    auto cap = direct->bootstrap();
    auto request = cap.typelessRequest(kInterface, 3, nullptr);
    request.setAs<capnp::Text>("hello");
    auto response = request.send().wait(scope());
    EXPECT_EQ(response.getAs<capnp::Text>(), "world");
  }  // the capability goes: a Release is owed
  direct->bootstrap();
  server_.join();
  EXPECT_EQ(std::count(released_.begin(), released_.end(), std::make_pair(kServerCap, 1u)), 1);
  EXPECT_EQ(std::count(released_.begin(), released_.end(), std::make_pair(11u, 1u)), 1);
  EXPECT_EQ(finished_.size(), 2u) << "a Finish for the bootstrap and for the call";
}

TEST_F(DirectSessionTest, AnInterruptedCallIsCancelledAtOnceAndItsLateReturnSkipped) {
  serve([](ScriptedServer& server) {
    auto bootstrap = server.read_until(wire::Message::BOOTSTRAP);
    server.return_capability(bootstrap->getRoot<wire::Message>().getBootstrap().getQuestionId());
    auto first = server.read_until(wire::Message::CALL);
    uint32_t abandoned = first->getRoot<wire::Message>().getCall().getQuestionId();
    auto finish = server.read_until(wire::Message::FINISH);  // sent when the caller gave up
    if (finish->getRoot<wire::Message>().getFinish().getQuestionId() != abandoned)
      throw std::runtime_error("wrong Finish");
    server.return_text(abandoned, "too late");
    auto second = server.read_until(wire::Message::CALL);
    server.return_text(second->getRoot<wire::Message>().getCall().getQuestionId(), "second");
  });
  auto direct = session();
  auto cap = direct->bootstrap();
  set_interrupt_check([] { throw std::runtime_error("interrupted"); }, 1ms);
  auto first = cap.typelessRequest(kInterface, 0, nullptr);
  EXPECT_THROW(auto reply = first.send(), std::runtime_error);
  set_interrupt_check(nullptr, 50ms);
  auto second = cap.typelessRequest(kInterface, 0, nullptr);
  EXPECT_EQ(second.send().wait(scope()).getAs<capnp::Text>(), "second");
}

// The session exports nothing: a capability put in call parameters is refused before
// anything is sent, and the session goes on.
TEST_F(DirectSessionTest, ACapabilityInParametersIsRefusedAndNothingIsSent) {
  serve([](ScriptedServer& server) {
    auto bootstrap = server.read_until(wire::Message::BOOTSTRAP);
    server.return_capability(bootstrap->getRoot<wire::Message>().getBootstrap().getQuestionId());
    auto call = server.read_until(wire::Message::CALL);  // the first call to arrive
    if (call->getRoot<wire::Message>().getCall().getParams().getContent().getAs<capnp::Text>() != "plain") {
      throw std::runtime_error("the refused call reached the server");
    }
    server.return_text(call->getRoot<wire::Message>().getCall().getQuestionId(), "ok");
  });
  auto direct = session();
  auto cap = direct->bootstrap();
  auto refused = cap.typelessRequest(kInterface, 0, nullptr);
  refused.setAs<capnp::Capability>(capnp::Capability::Client(capnp::newBrokenCap("mine")));
  try {
    auto reply = refused.send();
    FAIL() << "a capability went out in parameters";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::UNIMPLEMENTED);
    EXPECT_NE(std::string(e.getDescription().cStr()).find("event-loop connection"), std::string::npos)
        << e.getDescription().cStr();
  }
  auto plain = cap.typelessRequest(kInterface, 0, nullptr);
  plain.setAs<capnp::Text>("plain");
  EXPECT_EQ(plain.send().wait(scope()).getAs<capnp::Text>(), "ok");
}

// Calls from the server to this side (which serves nothing) are answered "unimplemented"
// with the call echoed, as the protocol asks, and the session goes on.
TEST_F(DirectSessionTest, ACallFromTheServerIsAnsweredUnimplemented) {
  serve([](ScriptedServer& server) {
    auto bootstrap = server.read_until(wire::Message::BOOTSTRAP);
    uint32_t question = bootstrap->getRoot<wire::Message>().getBootstrap().getQuestionId();
    capnp::MallocMessageBuilder call;
    auto body = call.initRoot<wire::Message>().initCall();
    body.setQuestionId(42);
    body.initTarget().setImportedCap(0);
    body.setInterfaceId(kInterface);
    server.write(call);
    server.return_capability(question);
    auto answer = server.read_until(wire::Message::UNIMPLEMENTED);
    auto echoed = answer->getRoot<wire::Message>().getUnimplemented();
    if (!echoed.isCall() || echoed.getCall().getQuestionId() != 42) throw std::runtime_error("not the call echoed");
    auto again = server.read_until(wire::Message::BOOTSTRAP);
    server.return_capability(again->getRoot<wire::Message>().getBootstrap().getQuestionId());
  });
  auto direct = session();
  direct->bootstrap();
  direct->bootstrap();  // carries the Unimplemented answer, and works
}

TEST_F(DirectSessionTest, ARemoteExceptionKeepsItsTypeAndText) {
  serve([](ScriptedServer& server) {
    auto bootstrap = server.read_until(wire::Message::BOOTSTRAP);
    capnp::MallocMessageBuilder message;
    auto answer = message.initRoot<wire::Message>().initReturn();
    answer.setAnswerId(bootstrap->getRoot<wire::Message>().getBootstrap().getQuestionId());
    auto error = answer.initException();
    error.setReason("KeyError: 'a'");
    error.setType(wire::Exception::Type::FAILED);
    server.write(message);
  });
  try {
    session()->bootstrap();
    FAIL() << "no exception";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::FAILED);
    EXPECT_STREQ(e.getDescription().cStr(), "remote exception: KeyError: 'a'");
  }
}

TEST_F(DirectSessionTest, AnAbortEndsTheSessionWithTheServersReason) {
  serve([](ScriptedServer& server) {
    server.read_until(wire::Message::BOOTSTRAP);
    capnp::MallocMessageBuilder message;
    message.initRoot<wire::Message>().initAbort().setReason("shutting down");
    server.write(message);
  });
  auto direct = session();
  try {
    direct->bootstrap();
    FAIL() << "no exception";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED);
    EXPECT_NE(std::string(e.getDescription().cStr()).find("shutting down"), std::string::npos);
  }
  EXPECT_THROW(direct->bootstrap(), kj::Exception);  // and stays ended
}

// Bytes that are no message: each is a disconnection, never a crash or a huge allocation.
TEST_F(DirectSessionTest, GarbageFromTheServerIsADisconnection) {
  const std::vector<std::string> garbage = {
      std::string("\xff\xff\xff\xff garbage", 13),                      // 2^32 segments
      std::string("\x00\x00\x00\x00\xff\xff\xff\x7f", 8),               // one segment of 2^31 words
      std::string("\x00\x00\x00\x00\x04\x00\x00\x00\x01\x02\x03", 11),  // truncated, then closed
      std::string("\x00\x00\x00\x00\x01\x00\x00\x00"
                  "\xf0\xff\xff\x0f\x01\x00\x01\x00",
                  16),  // pointer out of bounds
  };
  for (const auto& bytes : garbage) {
    Pair pair;
    std::thread server([fd = pair.fds[1], bytes] {
      ScriptedServer scripted(fd);
      scripted.read_until(wire::Message::BOOTSTRAP);
      scripted.write_bytes(bytes);
      ::shutdown(fd, SHUT_WR);
    });
    auto direct = std::make_shared<DirectSession>(pair.fds[0], options(), 0us);
    try {
      direct->bootstrap();
      ADD_FAILURE() << "garbage accepted";
    } catch (const kj::Exception& e) {
      EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED) << e.getDescription().cStr();
    }
    server.join();
  }
}

}  // namespace
}  // namespace xproc::rpc
