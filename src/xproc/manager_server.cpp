// ManagerServer: accepts connections, gives each a Gate and a session, and runs the
// event loop, polling for a short while after each call before it sleeps.
#include "xproc/manager_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <unistd.h>

#include <capnp/rpc-twoparty.h>

#include "xproc/errors.h"
#include "xproc/listener.h"
#include "xproc/rpc/lane_stream.h"
#include "xproc/rpc/manager_service.h"
#include "xproc/rpc/socket_message_stream.h"
#include "xproc/rpc/thread_loop.h"

namespace xproc {
namespace {

using Clock = std::chrono::steady_clock;

bool is_unix_address(const std::string& address) {
  return address.empty() || address.starts_with('/') || address.starts_with("unix:") || address.starts_with('\0');
}

// Large enough for a 50 MB dict copied in one reply; a client cannot make the server
// walk more than this per message.
capnp::ReaderOptions rpc_reader_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = uint64_t{64} * 1024 * 1024;  // 512 MiB
  options.nestingLimit = 128;
  return options;
}

// One client connection: its RPC system, the Gate it bootstraps and its session.
struct ServedConnection {
  ServedConnection(rpc::Runtime& runtime, const rpc::ServiceConfig& config, kj::Own<capnp::MessageStream> stream_,
                   uint64_t session_id)
      : stream(kj::mv(stream_)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER, rpc_reader_options()),
        session(kj::refcounted<rpc::Session>(session_id)),
        system(capnp::makeRpcServer(network, rpc::make_gate(runtime, config, kj::addRef(*session)))) {}

  kj::Own<capnp::MessageStream> stream;
  capnp::TwoPartyVatNetwork network;
  kj::Own<rpc::Session> session;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> system;
};

// " from host:port" for a TCP client; nothing for a unix socket (its peer has no name).
std::string peer_of(kj::AsyncIoStream& stream) {
  sockaddr_storage address{};
  kj::uint length = sizeof(address);
  try {
    stream.getpeername(reinterpret_cast<sockaddr*>(&address), &length);
  } catch (const kj::Exception&) {
    return "";
  }
  char host[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return std::string(" from ") + host + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (address.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return std::string(" from [") + host + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "";
}

class IgnoreErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&&) override {}  // a broken connection only ends itself
};

}  // namespace

struct ManagerServer::State {
  ServerOptions options;
  Listener listener;
};

ManagerServer::ManagerServer(ServerOptions options) {
  if (!is_unix_address(options.address) && !options.authkey) {
    throw ValueError("a Manager listening on TCP needs an authkey");
  }
  Listener listener(options.address, 128);
  state_ = std::make_unique<State>(State{std::move(options), std::move(listener)});
}

ManagerServer::ManagerServer(ManagerServer&&) noexcept = default;
ManagerServer& ManagerServer::operator=(ManagerServer&&) noexcept = default;
ManagerServer::~ManagerServer() = default;

const std::string& ManagerServer::address() const noexcept { return state_->listener.address(); }

void ManagerServer::close_unserved() noexcept {
  state_->listener.keep_path();
  state_->listener.close();
}

void ManagerServer::serve_forever() {
  auto& loop = rpc::thread_loop();
  auto& io = loop.io();
  auto& scope = loop.wait_scope();

  rpc::Registry registry;
  rpc::Runtime runtime{io.provider->getTimer(), registry};
  bool stopping = false;
  auto stop = kj::newPromiseAndFulfiller<void>();
  auto stopped = stop.promise.fork();
  rpc::ServiceConfig config{state_->options.authkey, state_->options.types, [&] {
                              stopping = true;
                              stop.fulfiller->fulfill();
                            }};

  int fd = retry_syscall("dup", [&] { return ::dup(state_->listener.fileno()); });
  auto receiver = io.lowLevelProvider->wrapListenSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  IgnoreErrors ignore_errors;
  kj::TaskSet connections(ignore_errors);
  uint64_t next_session = 1;
  const auto& log = state_->options.log;

  // Accepts forever; a failed accept (out of descriptors) is retried after a pause.
  kj::Function<kj::Promise<void>()> accept_loop = [&]() -> kj::Promise<void> {
    return receiver->accept()
        .then([&](kj::Own<kj::AsyncIoStream>&& accepted) {
          const uint64_t id = next_session++;
          if (log) log("connection " + std::to_string(id) + " opened" + peer_of(*accepted));
          // The client's first bytes say whether it wants a lane; the handshake does not
          // hold up the other connections.
          auto socket = rpc::take_socket(kj::mv(accepted));
          connections.add(rpc::accept_message_stream(io.unixEventPort, socket)
                              .then([&, id](kj::Own<capnp::MessageStream>&& stream) {
                                auto connection = kj::heap<ServedConnection>(runtime, config, kj::mv(stream), id);
                                auto disconnected = connection->network.onDisconnect();
                                return disconnected.then([connection = kj::mv(connection), id, &log]() mutable {
                                  // Cancel its calls first, then give back what it held.
                                  auto session = kj::addRef(*connection->session);
                                  connection = nullptr;
                                  session->close();
                                  if (log) log("connection " + std::to_string(id) + " closed");
                                });
                              })
                              .catch_([id, &log](kj::Exception&& e) {
                                if (log) log("connection " + std::to_string(id) + " failed: " + e.getDescription().cStr());
                              }));
        })
        .catch_([&](kj::Exception&&) { return runtime.timer.afterDelay(10 * kj::MILLISECONDS); })
        .then([&] { return accept_loop(); });
  };
  auto accepting = accept_loop().eagerlyEvaluate(nullptr);

  const auto spin = state_->options.spin;
  uint64_t seen = rpc::calls_dispatched();
  auto last_call = Clock::now();
  while (!stopping) {
    rpc::poll_lanes();  // shared memory only: a lane's bytes cost no system call
    scope.poll();
    uint64_t calls = rpc::calls_dispatched();
    if (calls != seen) {
      seen = calls;
      last_call = Clock::now();
      continue;
    }
    if (Clock::now() - last_call < spin) continue;
    // Quiet: sleep until the next call (serving connects and disconnects meanwhile). The
    // lanes' clients ring a doorbell from now on.
    if (!rpc::lanes_may_sleep()) continue;
    rpc::next_call().exclusiveJoin(stopped.addBranch()).wait(scope);
    rpc::lanes_awake();
    seen = rpc::calls_dispatched();
    last_call = Clock::now();
  }
  // Let the reply to shutdown go out before the connections close.
  for (int i = 0; i < 8; ++i) scope.poll();
}

}  // namespace xproc
