// The synchronous Manager client (rpc/direct_session.h) reading whatever a server sends:
// the input is the server's byte stream, already on the socket, then the server stops
// writing. The client bootstraps and makes calls, each on the last capability a reply
// handed it, and reads every result in full. Every call ends in results or a kj::Exception,
// none waits for more than the server sent, and what the client writes stays the protocol:
// whole frames of rpc.capnp Messages of the kinds a client sends, a Finish only for a
// question it asked and only once.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <set>
#include <string>

#include <capnp/any.h>
#include <capnp/capability.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <kj/async.h>

#include "fuzz_check.h"
#include "xproc/rpc/direct_session.h"

namespace {

namespace wire = capnp::rpc;

constexpr int kCalls = 12;

struct World {
  kj::EventLoop loop;
  kj::WaitScope scope{loop};
};

World& world() {
  static World* w = new World;  // never destroyed: libFuzzer exits without unwinding
  return *w;
}

// As the Manager client reads (client_connection.cpp), with a smaller traversal limit so
// that a frame announcing hundreds of MiB costs the fuzzer milliseconds, not a second.
capnp::ReaderOptions reader_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = uint64_t{1} << 20;
  options.nestingLimit = 128;
  return options;
}

// Reads a result in full and returns the first capability among its pointers, if any.
kj::Maybe<capnp::Capability::Client> read_result(capnp::AnyPointer::Reader content) {
  (void)content.targetSize();  // walks every word, checked against the limits
  if (content.getPointerType() != capnp::PointerType::STRUCT) return nullptr;
  for (auto pointer : content.getAs<capnp::AnyStruct>().getPointerSection()) {
    if (pointer.isCapability()) return pointer.getAs<capnp::Capability>();
  }
  return nullptr;
}

// A call's own error (a Return with an exception) leaves the session working; a
// disconnection of the session's own finding ends it.
bool ends_the_session(const kj::Exception& e) {
  return e.getType() == kj::Exception::Type::DISCONNECTED && !e.getDescription().startsWith("remote exception: ");
}

// What the client wrote, read back after it closed: the protocol's invariants.
void check_written(int fd) {
  std::string bytes;
  char chunk[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n > 0) {
      bytes.append(chunk, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EINTR)) {
      break;  // the client closed its end, so nothing more will come
    }
  }
  FUZZ_CHECK(bytes.size() % sizeof(capnp::word) == 0, "the client wrote a partial word");
  auto words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  memcpy(words.begin(), bytes.data(), bytes.size());
  kj::ArrayPtr<const capnp::word> rest = words;
  std::set<uint32_t> open_questions;
  while (rest.size() > 0) {
    capnp::FlatArrayMessageReader reader(rest);  // throws on a broken frame: a finding
    auto message = reader.getRoot<wire::Message>();
    switch (message.which()) {
      case wire::Message::BOOTSTRAP:
        FUZZ_CHECK(open_questions.insert(message.getBootstrap().getQuestionId()).second, "a question id in use");
        break;
      case wire::Message::CALL:
        FUZZ_CHECK(open_questions.insert(message.getCall().getQuestionId()).second, "a question id in use");
        FUZZ_CHECK(message.getCall().getTarget().isImportedCap(), "a call to something the server did not export");
        break;
      case wire::Message::FINISH:
        FUZZ_CHECK(open_questions.erase(message.getFinish().getQuestionId()) == 1,
                   "a Finish for a question not asked, or finished twice");
        break;
      case wire::Message::RELEASE:
        FUZZ_CHECK(message.getRelease().getReferenceCount() > 0, "a Release of nothing");
        break;
      case wire::Message::UNIMPLEMENTED: break;  // the echo of a message this client does not serve
      default: FUZZ_CHECK(false, "the client wrote a kind of message a client never sends");
    }
    rest = kj::arrayPtr(reader.getEnd(), rest.end());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = world();
  int pair[2];
  FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  // A fuzz input fits the socket's buffer (libFuzzer's inputs are at most a few KiB).
  if (size > 0) FUZZ_CHECK(::send(pair[1], data, size, MSG_NOSIGNAL) == static_cast<ssize_t>(size));
  ::shutdown(pair[1], SHUT_WR);  // the server says no more; it still takes what the client sends

  {
    auto session = std::make_shared<xproc::rpc::DirectSession>(pair[0], reader_options(), std::chrono::microseconds(0));
    bool disconnected = false;
    try {
      capnp::Capability::Client current = session->bootstrap();
      for (int i = 0; i < kCalls; ++i) {
        try {
          auto request = current.typelessRequest(0x8000000000000000ull | static_cast<uint64_t>(i),
                                                 static_cast<uint16_t>(i), nullptr);
          auto response = request.send().wait(w.scope);
          KJ_IF_MAYBE (cap, read_result(response)) {
            current = kj::mv(*cap);
          }
        } catch (const kj::Exception& e) {
          if ((disconnected = ends_the_session(e))) break;
        }
      }
    } catch (const kj::Exception& e) {
      disconnected = ends_the_session(e);
    }
    if (disconnected) {
      // A broken session stays broken, at once.
      try {
        (void)session->bootstrap();
        FUZZ_CHECK(false, "a broken session bootstrapped");
      } catch (const kj::Exception& e) {
        FUZZ_CHECK(e.getType() == kj::Exception::Type::DISCONNECTED);
      }
    }
  }  // the session closes its socket; capabilities it handed out are gone with it
  check_written(pair[1]);
  ::close(pair[1]);
  return 0;
}
