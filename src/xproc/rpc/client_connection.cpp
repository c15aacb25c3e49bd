// See client_connection.h.
#include "xproc/rpc/client_connection.h"

#include <unistd.h>

#include <map>

#include "xproc/auth.h"
#include "xproc/errors.h"
#include "xproc/listener.h"
#include "xproc/rpc/buffered_stream.h"
#include "xproc/rpc/socket_stream.h"

namespace xproc::rpc {
namespace {

capnp::ReaderOptions client_reader_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = uint64_t{64} * 1024 * 1024;  // 512 MiB: a 50 MB dict's copy()
  options.nestingLimit = 128;
  return options;
}

// Connects with the library's own Client (addresses parsed once, in one place) and takes
// the socket from it.
int connect_socket(const std::string& address) {
  ByteConnection connection = Client(address);
  return retry_syscall("dup", [&] { return ::dup(connection.fileno()); });
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
  return login.send().wait(scope).getManager();
}

using ConnectionTable = std::map<uint64_t, std::unique_ptr<ClientConnection>>;

}  // namespace

ClientConnection::ClientConnection(ThreadLoop& loop, const Endpoint& endpoint)
    : loop_(loop),
      fd_(connect_socket(endpoint.address)),
      stream_(kj::heap<BufferedStream>(wrap_socket(loop.io().unixEventPort, fd_))),
      network_(*stream_, capnp::rpc::twoparty::Side::CLIENT, client_reader_options()),
      system_(capnp::makeRpcClient(network_)),
      manager_(nullptr) {
  loop_.own_fd(fd_);
  try {
    manager_ = log_in(server_bootstrap(system_), endpoint, loop.wait_scope());
  } catch (const kj::Exception& e) {
    loop_.disown_fd(fd_);
    rethrow_local(e);
  }
}

ClientConnection::~ClientConnection() { loop_.disown_fd(fd_); }

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
  auto* table = loop->find_slot<ConnectionTable>();
  if (table == nullptr) return;
  auto it = table->find(endpoint->serial);
  if (it != table->end()) it->second->forget(this);
}

ClientConnection& connection_for(const Endpoint& endpoint) {
  auto& loop = thread_loop();
  auto& table = loop.slot<ConnectionTable>();
  auto& connection = table[endpoint.serial];
  if (!connection) {
    try {
      connection = std::make_unique<ClientConnection>(loop, endpoint);
    } catch (...) {
      table.erase(endpoint.serial);
      throw;
    }
  }
  return *connection;
}

void drop_connection(const Endpoint& endpoint) { thread_loop().slot<ConnectionTable>().erase(endpoint.serial); }

}  // namespace xproc::rpc
