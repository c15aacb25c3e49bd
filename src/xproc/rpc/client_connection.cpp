// See client_connection.h.
#include "xproc/rpc/client_connection.h"

#include <fcntl.h>
#include <unistd.h>

#include <map>
#include <utility>

#include "xproc/auth.h"
#include "xproc/errors.h"
#include "xproc/kj_errors_internal.h"
#include "xproc/listener.h"
#include "xproc/rpc/call_batches.h"
#include "xproc/rpc/direct_session.h"
#include "xproc/rpc/socket_message_stream.h"
#include "xproc/rpc/tls.h"
#include "xproc/syscall_internal.h"

namespace xproc::rpc {
namespace {

capnp::ReaderOptions client_reader_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = uint64_t{64} * 1024 * 1024;  // 512 MiB: a 50 MB dict's copy()
  options.nestingLimit = 128;
  return options;
}

// How long a TLS handshake with the server may take.
constexpr auto kTlsHandshakeTimeout = 10 * kj::SECONDS;

bool is_tls(const std::string& address) { return address.starts_with("tls:"); }

// Connects with the library's own Client (addresses parsed once, in one place) and takes
// the socket from it. A tls: address is TCP underneath.
Fd connect_socket(const std::string& address) {
  ByteConnection connection = Client(is_tls(address) ? "tcp:" + address.substr(4) : address);
  // Close-on-exec: a program this process runs must not hold the connection open.
  return Fd(detail::retry_syscall("dup", [&] { return ::fcntl(connection.fileno(), F_DUPFD_CLOEXEC, 0); }));
}

// "host" of "tls:host:port" or "tls:[v6]:port".
std::string host_of(const std::string& address) {
  std::string rest = address.substr(4);
  const size_t colon = rest.rfind(':');
  std::string host = colon == std::string::npos ? rest : rest.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host;
}

// kj's TLS over the connected socket `fd`, its handshake done: the server's certificate
// checked against the options' CAs and server name.
kj::Own<capnp::MessageStream> tls_message_stream(ThreadLoop& loop, Fd fd, const TlsClientOptions& tls,
                                                 const std::string& address) {
  // The socket is the stream's from here on, closed with it whatever fails.
  auto raw = loop.io().lowLevelProvider->wrapSocketFd(fd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  auto setup = client_tls(tls);
  kj::Own<kj::AsyncIoStream> secure;
  const std::string server_name = tls.server_name.empty() ? host_of(address) : tls.server_name;
  try {
    // From the clock, not the timer's idea of now: that is the time the loop last ran, which
    // for a thread that has not waited on it lately is long past (the deadline would be too).
    auto& timer = loop.io().provider->getTimer();
    auto timeout = timer.atTime(kj::systemPreciseMonotonicClock().now() + kTlsHandshakeTimeout)
                       .then([]() -> kj::Own<kj::AsyncIoStream> {
                         KJ_FAIL_REQUIRE("the server did not finish the TLS handshake in time");
                       });
    secure =
        setup->context->wrapClient(kj::mv(raw), server_name).exclusiveJoin(kj::mv(timeout)).wait(loop.wait_scope());
  } catch (const kj::Exception& e) {
    detail::rethrow_kj(e, ErrorKind::kConnectionError,
                       "TLS with the manager at " + address.substr(4) + " (as " + server_name + ") failed: ");
  }
  kj::Own<capnp::MessageStream> stream = kj::heap<capnp::AsyncIoMessageStream>(*secure);
  // Gone in this order: the message stream, the TLS stream, then its context.
  return stream.attach(kj::mv(secure)).attach(kj::mv(setup));
}

capnp::Capability::Client server_bootstrap(capnp::RpcSystem<capnp::rpc::twoparty::VatId>& system) {
  capnp::MallocMessageBuilder vat_id(8);
  vat_id.initRoot<capnp::rpc::twoparty::VatId>().setSide(capnp::rpc::twoparty::Side::SERVER);
  return system.bootstrap(vat_id.getRoot<capnp::rpc::twoparty::VatId>());
}

schema::Manager::Client log_in(capnp::Capability::Client bootstrap, const Endpoint& endpoint, kj::WaitScope& scope) {
  auto gate = bootstrap.castAs<schema::Gate>();
  auto challenge = gate.challengeRequest().send().wait(scope);
  auto nonce = challenge.getNonce();
  auto login = gate.loginRequest();
  if (endpoint.authkey) {
    std::string digest =
        hmac_sha256(*endpoint.authkey, std::string_view(reinterpret_cast<const char*>(nonce.begin()), nonce.size()));
    login.setDigest(kj::arrayPtr(reinterpret_cast<const kj::byte*>(digest.data()), digest.size()));
  }
  auto results = login.send().wait(scope);
  endpoint.instance.store(results.getInstance(), std::memory_order_relaxed);
  return results.getManager();
}

// This thread's connections by endpoint serial, one table per transport.
struct DirectConnections : std::map<uint64_t, std::unique_ptr<ClientConnection>> {};
struct EventLoopConnections : std::map<uint64_t, std::unique_ptr<ClientConnection>> {};

template <typename Table>
void forget_in(ThreadLoop& loop, const ObjectRef* ref) {
  auto* table = loop.find_slot<Table>();
  if (table == nullptr) return;
  auto it = table->find(ref->endpoint->serial);
  if (it != table->end()) it->second->forget(ref);
}

template <typename Table>
ClientConnection& find_or_connect(ThreadLoop& loop, const Endpoint& endpoint, Transport transport) {
  auto& table = loop.slot<Table>();
  auto& connection = table[endpoint.serial];
  if (!connection) {
    try {
      connection = std::make_unique<ClientConnection>(loop, endpoint, transport);
    } catch (...) {
      table.erase(endpoint.serial);
      throw;
    }
  }
  return *connection;
}

}  // namespace

// kj's RPC over a message stream (the socket, or TLS over it), for the event-loop transport.
struct ClientConnection::EventLoopRpc {
  explicit EventLoopRpc(kj::Own<capnp::MessageStream> stream_)
      : stream(kj::mv(stream_)),
        network(*stream, capnp::rpc::twoparty::Side::CLIENT, client_reader_options()),
        system(capnp::makeRpcClient(network)) {}
  kj::Own<capnp::MessageStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> system;
};

ClientConnection::ClientConnection(ThreadLoop& loop, const Endpoint& endpoint, Transport transport)
    : loop_(loop), manager_(nullptr) {
  Fd socket = connect_socket(endpoint.address);  // until a transport takes it
  fd_ = socket.get();
  loop_.own_fd(fd_);
  try {
    capnp::Capability::Client bootstrap(nullptr);
    if (endpoint.tls) {
      // Over TLS every call takes kj's RpcSystem: the blocking transport speaks plain sockets.
      event_loop_ =
          std::make_unique<EventLoopRpc>(tls_message_stream(loop, std::move(socket), *endpoint.tls, endpoint.address));
      bootstrap = server_bootstrap(event_loop_->system);
    } else if (transport == Transport::kDirect) {
      direct_ = std::make_shared<DirectSession>(std::move(socket), client_reader_options(), endpoint.spin);
      if (endpoint.shared_memory) {
        if (auto lane = request_lane(fd_, endpoint.authkey)) direct_->use_lane(std::move(*lane));
      }
      bootstrap = direct_->bootstrap();
    } else {
      event_loop_ = std::make_unique<EventLoopRpc>(socket_message_stream(loop.io().unixEventPort, socket.release()));
      bootstrap = server_bootstrap(event_loop_->system);
    }
    manager_ = log_in(kj::mv(bootstrap), endpoint, loop.wait_scope());
  } catch (const kj::Exception& e) {
    release_transport();
    rethrow_local(e);
  } catch (...) {
    release_transport();
    throw;
  }
}

ClientConnection::~ClientConnection() {
  cache_.clear();
  manager_ = nullptr;
  release_transport();
}

void ClientConnection::release_transport() noexcept {
  batches_.reset();
  loop_.disown_fd(fd_);
  // Whichever transport was made owns the socket and closes it.
  if (direct_) {
    direct_->close();  // capabilities someone still holds fail from now on
    direct_.reset();
  }
  event_loop_.reset();
}

capnp::Capability::Client ClientConnection::object(const std::shared_ptr<const ObjectRef>& ref) {
  auto it = cache_.find(ref.get());
  if (it != cache_.end()) {
    if (it->second.ref.lock() == ref) return it->second.capability;
    cache_.erase(it);  // a dead proxy's entry at a reused address
  }
  auto request = manager_.objectRequest();
  request.setId(ref->id);
  capnp::Capability::Client capability = request.send().getObject();
  remember(ref, capability);
  return capability;
}

CallBatches& ClientConnection::batches() {
  if (!batches_) batches_ = std::make_unique<CallBatches>();
  return *batches_;
}

void ClientConnection::remember(const std::shared_ptr<const ObjectRef>& ref, capnp::Capability::Client capability) {
  cache_.insert_or_assign(ref.get(), Cached{ref, kj::mv(capability)});
  if (cache_.size() >= sweep_at_) sweep();
}

void ClientConnection::sweep() {
  for (auto it = cache_.begin(); it != cache_.end();) {
    it = it->second.ref.expired() ? cache_.erase(it) : std::next(it);
  }
  sweep_at_ = std::max<size_t>(64, cache_.size() * 2);
}

ObjectRef::~ObjectRef() {
  ThreadLoop* loop = existing_thread_loop();  // none in a child that never called
  if (loop == nullptr || !endpoint) return;
  forget_in<DirectConnections>(*loop, this);
  forget_in<EventLoopConnections>(*loop, this);
}

ClientConnection& connection_for(const Endpoint& endpoint, Transport transport) {
  auto& loop = thread_loop();
  if (transport == Transport::kDirect) return find_or_connect<DirectConnections>(loop, endpoint, transport);
  return find_or_connect<EventLoopConnections>(loop, endpoint, transport);
}

bool has_connection(const Endpoint& endpoint) {
  const auto& table = thread_loop().slot<DirectConnections>();
  const auto found = table.find(endpoint.serial);
  return found != table.end() && found->second != nullptr;
}

void drop_connection(const Endpoint& endpoint) {
  auto& loop = thread_loop();
  loop.slot<DirectConnections>().erase(endpoint.serial);
  loop.slot<EventLoopConnections>().erase(endpoint.serial);
}

uint64_t instance_of(const Endpoint& endpoint) {
  if (uint64_t known = endpoint.instance.load(std::memory_order_relaxed)) return known;
  try {
    connection_for(endpoint);
  } catch (const kj::Exception& e) {
    rethrow_local(e);
  }
  return endpoint.instance.load(std::memory_order_relaxed);
}

}  // namespace xproc::rpc
