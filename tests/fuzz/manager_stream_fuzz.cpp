// The Manager server's core reading a client's byte stream: the connection guard, the Gate,
// the Manager and its objects, over an in-memory stream. The input is what the client
// sends, before the login, or after one (to a server without a key, so that a fixed login
// can come first). Whatever it sends, the server answers or ends the connection; it never
// holds more than the guard's limits allow, and nothing it does outlives the connection.
//
// Input: a byte (bit 0: logged in first), then the client's bytes.
#include <capnp/rpc-twoparty.h>
#include <capnp/serialize-async.h>
#include <kj/async-io.h>
#include <kj/timer.h>

#include <optional>
#include <string>

#include "fuzz_check.h"
#include "manager_frames.h"
#include "xproc/manager_server.h"
#include "xproc/rpc/connection_guard.h"
#include "xproc/rpc/manager_service.h"
#include "xproc/rpc/server_core.h"

namespace {

// One event loop for the process; a fresh connection, registry and guard for each input.
struct World {
  kj::EventLoop loop;
  kj::WaitScope scope{loop};
  kj::TimerImpl timer{kj::origin<kj::TimePoint>()};
  xproc::UserTypes types;
};

World& world() {
  static World* w = new World;  // never destroyed: libFuzzer exits without unwinding
  return *w;
}

// Reads and drops whatever the server writes, until it ends.
kj::Promise<void> drain(kj::AsyncIoStream& stream, kj::byte* buffer) {
  return stream.tryRead(buffer, 1, 4096).then([&stream, buffer](size_t n) -> kj::Promise<void> {
    if (n == 0) return kj::READY_NOW;
    return drain(stream, buffer);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = world();
  xproc::fuzz::Input input(data, size);
  const bool logged_in = (input.take<uint8_t>() & 1) != 0;
  const auto sent = input.rest();
  std::string bytes = logged_in ? xproc::fuzz::login_frames() : std::string();
  bytes.append(reinterpret_cast<const char*>(sent.data()), sent.size());

  xproc::rpc::Registry registry;
  xproc::rpc::Runtime runtime{w.timer, registry};
  const xproc::ConnectionLimits limits{
      .max_message_bytes = 1 << 16, .max_outstanding_calls = 64, .max_queued_reply_bytes = 1 << 20};
  xproc::rpc::ConnectionGuard guard(limits, w.timer);
  xproc::rpc::ServiceConfig config{logged_in ? std::nullopt : std::optional<std::string>("the key"), w.types, [] {},
                                   [&guard](uint64_t, bool succeeded) {
                                     if (succeeded) guard.logged_in();
                                   }};
  auto pipe = kj::newTwoWayPipe();
  capnp::ReaderOptions options;
  options.traversalLimitInWords = uint64_t{64} * 1024 * 1024;  // as the server's
  options.nestingLimit = 128;
  auto stream = xproc::rpc::guarded_stream(kj::heap<capnp::AsyncIoMessageStream>(*pipe.ends[0]), guard);
  auto network = kj::heap<capnp::TwoPartyVatNetwork>(*stream, capnp::rpc::twoparty::Side::SERVER, options);
  auto session = kj::refcounted<xproc::rpc::Session>(1);
  auto system = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(
      capnp::makeRpcServer(*network, xproc::rpc::make_gate(runtime, config, kj::addRef(*session))));
  {
    kj::byte buffer[4096];
    auto client = pipe.ends[1]->write(bytes.data(), bytes.size()).then([&] { pipe.ends[1]->shutdownWrite(); });
    auto drained = drain(*pipe.ends[1], buffer);
    auto disconnected = network->onDisconnect();
    // Everything runs in this process: the loop goes idle once the server has done all it
    // will do with these bytes (a blocking call waits on a timer that is never advanced).
    (void)disconnected.poll(w.scope);
  }
  // However the connection ends: its calls are cancelled, then what it held given back.
  system = nullptr;
  session->close();
  network = nullptr;
  stream = nullptr;
  return 0;
}
