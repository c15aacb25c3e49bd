// ManagerServer: accepts connections, gives each a Gate and a session, and runs the
// event loop, polling for a short while after each call before it sleeps.
#include "xproc/manager_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include <capnp/rpc-twoparty.h>

#include "xproc/address_internal.h"
#include "xproc/auth.h"
#include "xproc/errors.h"
#include "xproc/listener.h"
#include "xproc/manager_directory.h"
#include "xproc/rpc/connection_guard.h"
#include "xproc/rpc/lane.h"
#include "xproc/rpc/lane_stream.h"
#include "xproc/rpc/manager_service.h"
#include "xproc/rpc/socket_message_stream.h"
#include "xproc/rpc/thread_loop.h"
#include "xproc/rpc/tls.h"
#include "xproc/syscall_internal.h"
#include "xproc/value.h"

namespace xproc {
namespace {

using Clock = std::chrono::steady_clock;

// As the listener parses it: a path or an abstract name (what only this host reaches).
bool is_unix_address(const std::string& address) {
  if (address.empty()) return true;  // the listener picks an abstract name
  if (address.starts_with("tls:")) return false;
  return detail::parse_address(address).kind != detail::Address::kTcp;
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
                   rpc::ConnectionGuard& guard, uint64_t session_id)
      : stream(kj::mv(stream_)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER, rpc_reader_options()),
        session(kj::refcounted<rpc::Session>(session_id)),
        system(kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(
            capnp::makeRpcServer(network, rpc::make_gate(runtime, config, kj::addRef(*session))))) {
    guard.watch_queue([this] { return network.getCurrentQueueSize(); });
  }
  // However the connection ends (the client left, or the server closed it): its calls are
  // cancelled first, then what it held is given back.
  ~ServedConnection() {
    system = nullptr;
    session->close();
  }
  KJ_DISALLOW_COPY(ServedConnection);

  kj::Own<capnp::MessageStream> stream;
  capnp::TwoPartyVatNetwork network;
  kj::Own<rpc::Session> session;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> system;
};

// " from host:port" for a TCP client, " from uid U (pid P)" for a unix socket's.
std::string peer_of(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return "";
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
  ucred credentials{};
  socklen_t size = sizeof(credentials);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) == 0) {
    return " from uid " + std::to_string(credentials.uid) + " (pid " + std::to_string(credentials.pid) + ")";
  }
  return "";
}

// Whether the process at the other end of the unix socket `fd` may connect: the server's
// own user, root, or a user or group the options allow.
bool peer_allowed(int fd, const ServerOptions& options) {
  ucred credentials{};
  socklen_t size = sizeof(credentials);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) return false;
  const auto& uids = options.allowed_uids;
  const auto& gids = options.allowed_gids;
  return credentials.uid == ::geteuid() || credentials.uid == 0 ||
         std::find(uids.begin(), uids.end(), credentials.uid) != uids.end() ||
         std::find(gids.begin(), gids.end(), credentials.gid) != gids.end();
}

size_t default_max_connections() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 1024;
  return std::max<size_t>(16, static_cast<size_t>(limit.rlim_cur) / 4);
}

// How long a connection whose login failed lingers if the client does not call again (it
// would read an error about a closed connection rather than the failed login).
constexpr auto kLoginFailureGrace = 500 * kj::MILLISECONDS;

// This run's instance number (never 0): what tells its objects' proxies from those of any
// other server, whose ids count from 1 as well.
uint64_t random_instance() {
  for (;;) {
    std::string bytes = random_bytes(sizeof(uint64_t));
    uint64_t instance = 0;
    std::memcpy(&instance, bytes.data(), sizeof(instance));
    if (instance != 0) return instance;
  }
}

kj::Exception closed_because(kj::Exception::Type type, const std::string& why) {
  return kj::Exception(type, __FILE__, __LINE__, kj::heapString(why));
}

class IgnoreErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&&) override {}  // a broken connection only ends itself
};

// The listening address as the Listener takes it, and whether it is TLS.
struct Endpoint {
  std::string listen;
  bool tls;
};

Endpoint endpoint_of(const std::string& address) {
  if (address.starts_with("tls:")) return {"tcp:" + address.substr(4), true};
  return {address, false};
}

}  // namespace

struct ManagerServer::State {
  ServerOptions options;
  Listener listener;
  std::string address;  // as clients pass it
  std::optional<rpc::ServerTlsFiles> tls;
};

ManagerServer::ManagerServer(ServerOptions options) {
  const Endpoint endpoint = endpoint_of(options.address);
  if (!is_unix_address(options.address) && !options.authkey) {
    throw ValueError("a Manager listening on TCP or TLS needs an authkey");
  }
  std::optional<rpc::ServerTlsFiles> tls;
  if (endpoint.tls) {
    if (!options.tls) throw ValueError("a Manager listening on TLS needs a certificate and a key");
    tls = rpc::ServerTlsFiles::read(*options.tls);
  } else if (options.tls) {
    throw ValueError("TLS options need a tls:host:port address");
  }
  Listener listener(endpoint.listen, 128);
  std::string address = endpoint.tls ? "tls:" + listener.address() : listener.address();
  state_ = std::make_unique<State>(State{std::move(options), std::move(listener), std::move(address), std::move(tls)});
}

ManagerServer::ManagerServer(ManagerServer&&) noexcept = default;
ManagerServer& ManagerServer::operator=(ManagerServer&&) noexcept = default;
ManagerServer::~ManagerServer() = default;

void UserTypes::refuse_arguments(const std::string& name) {
  throw TypeError("type " + Value(name).repr() + " takes no arguments");
}

const std::string& ManagerServer::address() const noexcept { return state_->address; }

void ManagerServer::close_unserved() noexcept {
  state_->listener.keep_path();
  state_->listener.close();
}

namespace {

// What the server knows of one client, from its accept to its close.
struct ClientState {
  ClientState(uint64_t id_, std::string peer_, const ConnectionLimits& limits, const kj::Timer& clock)
      : id(id_), peer(std::move(peer_)), accepted(clock.now()), guard(limits, clock) {}
  uint64_t id;
  std::string peer;
  kj::TimePoint accepted;
  bool closing = false;        // the server is closing it (it counts no more)
  rpc::ConnectionGuard guard;  // what it may send; outlives its streams
  kj::Canceler life;           // everything of the connection: cancelled to close it
};

}  // namespace

void ManagerServer::serve_forever() {
  auto& loop = rpc::thread_loop();
  auto& io = loop.io();
  auto& scope = loop.wait_scope();
  const ServerOptions& options = state_->options;
  const auto& log = options.log;
  const size_t max_connections = options.max_connections != 0 ? options.max_connections : default_max_connections();
  const kj::Duration login_timeout = options.login_timeout.count() * kj::MILLISECONDS;

  rpc::Registry registry;
  rpc::Runtime runtime{io.provider->getTimer(), registry, random_instance()};
  bool stopping = false;
  auto stop = kj::newPromiseAndFulfiller<void>();
  auto stopped = stop.promise.fork();

  // This server in the user's managers directory (`xproc ls --managers`), its counts
  // brought up to date once a second.
  auto entry = ManagerDirectoryEntry::create(state_->address, runtime.instance);
  kj::Function<kj::Promise<void>()> publish_counts = [&]() -> kj::Promise<void> {
    return runtime.timer.afterDelay(1 * kj::SECONDS).then([&] {
      entry->update(registry.live_objects(), registry.named_objects());
      return publish_counts();
    });
  };
  auto publishing = entry ? publish_counts().exclusiveJoin(stopped.addBranch()).eagerlyEvaluate(nullptr)
                          : kj::Promise<void>(kj::READY_NOW);
  std::map<uint64_t, kj::Own<ClientState>> clients;
  IgnoreErrors ignore_errors;
  kj::TaskSet connections(ignore_errors);

  // Closes a connection from the server's side: its handshake, or its RPC system and
  // stream, go (the client sees the connection close), and it no longer counts.
  auto close_client = [&](ClientState& client, kj::Exception why) {
    client.closing = true;
    client.life.cancel(kj::mv(why));
  };
  rpc::ServiceConfig config{options.authkey, options.types,
                            [&] {
                              stopping = true;
                              stop.fulfiller->fulfill();
                            },
                            [&](uint64_t id, bool succeeded) {
                              auto it = clients.find(id);
                              if (it == clients.end()) return;
                              ClientState& client = *it->second;
                              if (succeeded) {
                                client.guard.logged_in();
                                return;
                              }
                              // Closed as soon as it calls again, and in a moment anyway: not at once,
                              // so that the client reads the error before the connection ends.
                              if (log)
                                log("connection " + std::to_string(id) + ": login failed" + client.peer + "; closed");
                              auto why = closed_because(kj::Exception::Type::FAILED,
                                                        "AuthenticationError: a failed login ends the connection");
                              client.guard.refuse_calls(kj::cp(why));
                              connections.add(runtime.timer.afterDelay(kLoginFailureGrace)
                                                  .then([&clients, &close_client, id, why = kj::mv(why)]() mutable {
                                                    auto found = clients.find(id);
                                                    if (found != clients.end())
                                                      close_client(*found->second, kj::mv(why));
                                                  })
                                                  .exclusiveJoin(stopped.addBranch()));
                            }};

  // The TLS handshake is part of the time a connection has to log in.
  kj::Maybe<kj::Own<rpc::TlsSetup>> tls;
  if (state_->tls) tls = rpc::server_tls(*state_->tls, runtime.timer, login_timeout);

  Fd fd(detail::retry_syscall("dup", [&] { return ::dup(state_->listener.fileno()); }));
  // kj's from here on.
  auto receiver = io.lowLevelProvider->wrapListenSocketFd(fd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  uint64_t next_session = 1;

  // A new connection when there are `max_connections`: the oldest one that has not logged
  // in goes, else the one idle longest (idle for idle_reap_after at least); else the new
  // one is refused.
  const kj::Duration idle_reap_after = options.idle_reap_after.count() * kj::SECONDS;
  auto make_room = [&]() -> bool {
    size_t open = 0;
    ClientState* unauthenticated = nullptr;
    ClientState* idle = nullptr;
    const kj::TimePoint now = runtime.timer.now();
    for (auto& [id, client] : clients) {
      if (client->closing) continue;
      ++open;
      if (!client->guard.is_logged_in()) {
        if (unauthenticated == nullptr || client->accepted < unauthenticated->accepted) unauthenticated = client.get();
      } else if (now - client->guard.last_activity() >= idle_reap_after &&
                 (idle == nullptr || client->guard.last_activity() < idle->guard.last_activity())) {
        idle = client.get();
      }
    }
    if (open < max_connections) return true;
    ClientState* victim = unauthenticated != nullptr ? unauthenticated : idle;
    if (victim == nullptr) return false;
    if (log)
      log("connection " + std::to_string(victim->id) + " closed to make room (" + std::to_string(max_connections) +
          " connections)");
    close_client(*victim, closed_because(kj::Exception::Type::OVERLOADED,
                                         "the manager closed this connection to make room for another"));
    return true;
  };

  // The message stream of a freshly accepted connection, checked by `guard`: through TLS, a
  // lane (unix sockets, when the client asks and knows the key) or the socket itself.
  auto open_stream = [&](kj::Own<kj::AsyncIoStream> accepted,
                         rpc::ConnectionGuard& guard) -> kj::Promise<kj::Own<capnp::MessageStream>> {
    KJ_IF_MAYBE (setup, tls) {
      return (*setup)->context->wrapServer(kj::mv(accepted)).then([&guard](kj::Own<kj::AsyncIoStream>&& secure) {
        kj::Own<capnp::MessageStream> stream = kj::heap<capnp::AsyncIoMessageStream>(*secure);
        return rpc::guarded_stream(stream.attach(kj::mv(secure)), guard);
      });
    }
    return rpc::accept_message_stream(io.unixEventPort, rpc::take_socket(kj::mv(accepted)), options.authkey, guard);
  };

  auto serve = [&](kj::Own<kj::AsyncIoStream>&& accepted) {
    int raw = -1;
    KJ_IF_MAYBE (fd_ref, accepted->getFd()) {
      raw = *fd_ref;
    }
    const bool unix_socket = raw >= 0 && rpc::is_unix_socket(raw);
    const std::string peer = raw >= 0 ? peer_of(raw) : "";
    if (unix_socket && !peer_allowed(raw, options)) {
      if (log) log("refused a connection" + peer + ": not an allowed user");
      return;  // `accepted` closes it
    }
    if (!make_room()) {
      if (log) log("refused a connection" + peer + ": " + std::to_string(max_connections) + " connections, none idle");
      return;
    }
    const uint64_t id = next_session++;
    if (log) log("connection " + std::to_string(id) + " opened" + peer);
    auto& client = *clients.emplace(id, kj::heap<ClientState>(id, peer, options.limits, runtime.timer)).first->second;
    // Logged in within login_timeout, or closed.
    connections.add(runtime.timer.afterDelay(login_timeout)
                        .then([&clients, &close_client, id, &log] {
                          auto it = clients.find(id);
                          if (it == clients.end() || it->second->guard.is_logged_in() || it->second->closing) return;
                          if (log) log("connection " + std::to_string(id) + " did not log in in time; closed");
                          close_client(*it->second, closed_because(kj::Exception::Type::DISCONNECTED,
                                                                   "the client did not log in in time"));
                        })
                        .exclusiveJoin(stopped.addBranch()));
    auto connection = open_stream(kj::mv(accepted), client.guard)
                          .then([&runtime, &config, &client, id](kj::Own<capnp::MessageStream>&& stream) {
                            auto served = kj::heap<ServedConnection>(runtime, config, kj::mv(stream), client.guard, id);
                            auto disconnected = served->network.onDisconnect();
                            return disconnected.attach(kj::mv(served));
                          });
    connections.add(client.life.wrap(kj::mv(connection))
                        .then([] { return std::string(); },
                              [](kj::Exception&& e) { return std::string(": ") + e.getDescription().cStr(); })
                        .then([&clients, id, &log](std::string why) {
                          auto it = clients.find(id);
                          KJ_IF_MAYBE (reason, it->second->guard.reason()) {
                            why = std::string(": ") + reason->getDescription().cStr();
                          }
                          if (log) log("connection " + std::to_string(id) + " closed" + why);
                          clients.erase(it);
                        }));
  };

  // Accepts forever; a failed accept (out of descriptors, say) is retried after a pause,
  // while the connections already open are served.
  kj::Function<kj::Promise<void>()> accept_loop = [&]() -> kj::Promise<void> {
    return receiver->accept()
        .then([&](kj::Own<kj::AsyncIoStream>&& accepted) { serve(kj::mv(accepted)); })
        .catch_([&](kj::Exception&&) { return runtime.timer.afterDelay(10 * kj::MILLISECONDS); })
        .then([&] { return accept_loop(); });
  };
  auto accepting = accept_loop().eagerlyEvaluate(nullptr);

  const auto spin = options.spin;
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
