// Manager: starts or connects to a server, and makes the proxies of its objects.
#include "xproc/manager.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "xproc/auth.h"
#include "xproc/errors.h"
#include "xproc/manager_directory.h"
#include "xproc/process.h"
#include "xproc/rpc/client_connection.h"
#include "xproc/rpc/dynamic_call.h"
#include "xproc/rpc/value_ops.h"

namespace xproc {
namespace {

constexpr size_t kAuthkeyBytes = 32;

uint64_t next_endpoint_serial() {
  static std::atomic<uint64_t> serial{1};
  return serial.fetch_add(1);
}

std::string make_private_directory() {
  std::string pattern = (std::filesystem::temp_directory_path() / "xproc-manager-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw_os_error("mkdtemp", errno);  // mode 0700
  return pattern;
}

std::string text(std::string_view s) { return std::string(s); }

}  // namespace

void rethrow_manager_error(const kj::Exception& error) { rpc::rethrow_local(error); }

Manager::Manager(ManagerOptions options) {
  std::string address = options.address;
  if (address.empty()) {
    socket_dir_ = make_private_directory();
    address = "unix:" + socket_dir_ + "/manager.sock";
  }
  std::string authkey = options.authkey ? *options.authkey : random_bytes(kAuthkeyBytes);
  try {
    ServerOptions server_options;
    server_options.address = address;
    server_options.authkey = authkey;
    server_options.types = std::move(options.types);
    server_options.spin = options.server_spin;
    auto server = std::make_shared<ManagerServer>(std::move(server_options));
    auto endpoint = std::make_shared<rpc::Endpoint>();
    endpoint->serial = next_endpoint_serial();
    endpoint->address = server->address();
    endpoint->authkey = authkey;
    endpoint->spin = options.client_spin;
    endpoint->shared_memory = options.shared_memory;
    endpoint_ = std::move(endpoint);

    // The socket is bound before the fork, so clients may connect at once: the kernel
    // queues them until the server accepts.
    server_ = std::make_unique<Process>([server] { server->serve_forever(); },
                                        ProcessOptions{.name = "SyncManager", .daemon = true});
    server_->start();
    owner_pid_ = getpid();
    server->close_unserved();
  } catch (...) {
    if (!socket_dir_.empty()) std::filesystem::remove_all(socket_dir_);
    throw;
  }
}

Manager::Manager(Connected) {}

Manager Manager::connect(const std::string& address, std::optional<std::string> authkey,
                         std::chrono::microseconds client_spin) {
  return connect(address, std::move(authkey), ConnectOptions{.client_spin = client_spin});
}

Manager Manager::connect(const std::string& address, std::optional<std::string> authkey,
                         const ConnectOptions& options) {
  auto endpoint = std::make_shared<rpc::Endpoint>();
  endpoint->serial = next_endpoint_serial();
  endpoint->address = address;
  endpoint->authkey = std::move(authkey);
  endpoint->spin = options.client_spin;
  endpoint->shared_memory = options.shared_memory;
  if (address.starts_with("tls:")) endpoint->tls = options.tls;
  Manager manager{Connected{}};
  manager.endpoint_ = std::move(endpoint);
  try {
    rpc::connection_for(*manager.endpoint_);  // fail now, not at the first call
  } catch (const kj::Exception& e) {
    rpc::rethrow_local(e);
  }
  return manager;
}

Manager::Manager(Manager&& other) noexcept = default;

Manager& Manager::operator=(Manager&& other) noexcept {
  if (this != &other) {
    shutdown();
    endpoint_ = std::move(other.endpoint_);
    server_ = std::move(other.server_);
    owner_pid_ = std::exchange(other.owner_pid_, 0);
    socket_dir_ = std::move(other.socket_dir_);
    other.socket_dir_.clear();
  }
  return *this;
}

Manager::~Manager() { shutdown(); }

void Manager::shutdown() {
  if (!server_ || owner_pid_ != getpid()) return;
  if (endpoint_) rpc::drop_connection(*endpoint_);
  server_->terminate();
  server_->join(std::chrono::seconds(1));
  if (server_->is_alive()) {
    server_->kill();
    server_->join();
  }
  remove_manager_entries_of(server_->pid());  // ended by a signal: its entry is left to us
  server_.reset();
  if (!socket_dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(socket_dir_, ignored);
    socket_dir_.clear();
  }
}

const std::string& Manager::address() const noexcept { return endpoint_->address; }
const std::optional<std::string>& Manager::authkey() const noexcept { return endpoint_->authkey; }
pid_t Manager::pid() const noexcept { return server_ ? server_->pid() : 0; }

uint64_t Manager::instance() const { return rpc::instance_of(*endpoint_); }

using rpc::make_object;

DictProxy Manager::dict(const ValueMap& initial, std::string_view name) {
  return DictProxy(make_object(endpoint_, schema::Kind::DICT, name, Value(initial)));
}
ListProxy Manager::list(const Value::List& initial, std::string_view name) {
  return ListProxy(make_object(endpoint_, schema::Kind::LIST, name, Value(initial)));
}
NamespaceProxy Manager::namespace_(std::string_view name) {
  return NamespaceProxy(make_object(endpoint_, schema::Kind::NAMESPACE, name));
}
ValueProxy Manager::value(std::string_view typecode, const Value& initial, std::string_view name) {
  return ValueProxy(make_object(endpoint_, schema::Kind::VALUE, name, typecode, initial));
}
ArrayProxy Manager::array(std::string_view typecode, const Value::List& initial, std::string_view name) {
  return ArrayProxy(make_object(endpoint_, schema::Kind::ARRAY, name, typecode, initial));
}
QueueProxy Manager::queue(int64_t maxsize, std::string_view name) {
  return QueueProxy(make_object(endpoint_, schema::Kind::QUEUE, name, maxsize));
}
JoinableQueueProxy Manager::joinable_queue(int64_t maxsize, std::string_view name) {
  return JoinableQueueProxy(make_object(endpoint_, schema::Kind::JOINABLE_QUEUE, name, maxsize));
}
LockProxy Manager::lock(std::string_view name) { return LockProxy(make_object(endpoint_, schema::Kind::LOCK, name)); }
LockProxy Manager::rlock(std::string_view name) { return LockProxy(make_object(endpoint_, schema::Kind::RLOCK, name)); }
SemaphoreProxy Manager::semaphore(int64_t value, std::string_view name) {
  return SemaphoreProxy(make_object(endpoint_, schema::Kind::SEMAPHORE, name, value));
}
SemaphoreProxy Manager::bounded_semaphore(int64_t value, std::string_view name) {
  return SemaphoreProxy(make_object(endpoint_, schema::Kind::BOUNDED_SEMAPHORE, name, value));
}
EventProxy Manager::event(std::string_view name) {
  return EventProxy(make_object(endpoint_, schema::Kind::EVENT, name));
}
ConditionProxy Manager::condition(std::optional<LockProxy> lock, std::string_view name) {
  return ConditionProxy(make_object(endpoint_, schema::Kind::CONDITION, name, lock ? lock->id() : uint64_t{0}));
}
BarrierProxy Manager::barrier(uint32_t parties, Timeout timeout, std::string_view name) {
  return BarrierProxy(make_object(endpoint_, schema::Kind::BARRIER, name, parties, timeout));
}

std::shared_ptr<const rpc::ObjectRef> Manager::create_user(std::string_view type_name, std::string_view name,
                                                           uint64_t interface_id, const std::vector<Value>& args,
                                                           const ValueMap& kwargs) {
  return rpc::create_user_object(endpoint_, type_name, name, interface_id, args, kwargs);
}

namespace rpc {

std::shared_ptr<const ObjectRef> create_user_object(const std::shared_ptr<const Endpoint>& endpoint,
                                                    std::string_view type_name, std::string_view name,
                                                    uint64_t interface_id, const std::vector<Value>& args,
                                                    const ValueMap& kwargs) {
  auto response = call_manager(*endpoint, [&](ClientConnection& c) {
    auto request = c.manager().createRequest();
    request.setRegisteredName(text(name));
    request.setTypeName(text(type_name));
    write_values(request.initArgs(static_cast<unsigned>(args.size())), args);
    write_entries(request.initKwargs(static_cast<unsigned>(kwargs.size())), kwargs);
    return request.send();
  });
  if (response.getInterfaceId() != interface_id) {
    throw TypeError("type " + Value(text(type_name)).repr() + " implements another interface");
  }
  auto ref = std::make_shared<const ObjectRef>(ObjectRef{endpoint, response.getId(), schema::Kind::USER, interface_id});
  connection_for(*endpoint).remember(ref, response.getObject());
  return ref;
}

}  // namespace rpc

DynamicProxy Manager::create_dynamic(std::string_view type_name, std::vector<Value> args, const ValueMap& kwargs,
                                     std::string_view name) {
  return DynamicProxy(create_user(type_name, name, capnp::typeId<schema::Dynamic>(), args, kwargs));
}

std::shared_ptr<const rpc::ObjectRef> Manager::attach_ref(uint64_t id) const {
  // The kind is informative only: the server checks each call against the object.
  return std::make_shared<const rpc::ObjectRef>(rpc::ObjectRef{endpoint_, id, schema::Kind::USER, 0});
}

void set_call_interrupt_check(void (*check)(), std::chrono::milliseconds interval) {
  rpc::set_interrupt_check(check, interval);
}

std::shared_ptr<const rpc::ObjectRef> Manager::lookup_user(std::string_view name, uint64_t interface_id) {
  auto response = rpc::call_manager(*endpoint_, [&](rpc::ClientConnection& c) {
    auto request = c.manager().lookupRequest();
    request.setRegisteredName(text(name));
    return request.send();
  });
  if (response.getKind() != schema::Kind::USER || response.getInterfaceId() != interface_id) {
    throw TypeError("the object named " + Value(text(name)).repr() + " implements another interface");
  }
  auto ref = std::make_shared<const rpc::ObjectRef>(
      rpc::ObjectRef{endpoint_, response.getId(), schema::Kind::USER, interface_id});
  rpc::connection_for(*endpoint_).remember(ref, response.getObject());
  return ref;
}

Manager::Attached Manager::attach_held(uint64_t id) {
  auto response = rpc::call_manager(*endpoint_, [&](rpc::ClientConnection& c) {
    auto request = c.manager().objectRequest();
    request.setId(id);
    return request.send();
  });
  auto ref = std::make_shared<const rpc::ObjectRef>(
      rpc::ObjectRef{endpoint_, id, response.getKind(), response.getInterfaceId()});
  rpc::connection_for(*endpoint_).remember(ref, response.getObject());
  return {response.getKind(), std::move(ref)};
}

void Manager::publish_user(std::string_view name, capnp::Capability::Client object, uint64_t interface_id) {
  rpc::call_manager(
      *endpoint_,
      [&](rpc::ClientConnection& c) {
        auto request = c.manager().publishRequest();
        request.setRegisteredName(text(name));
        request.setObject(kj::mv(object));
        request.setInterfaceId(interface_id);
        return request.send();
      },
      rpc::Transport::kEventLoop);  // the server calls the object back through this connection
}

std::vector<std::string> Manager::names() {
  auto response =
      rpc::call_manager(*endpoint_, [&](rpc::ClientConnection& c) { return c.manager().namesRequest().send(); });
  std::vector<std::string> result;
  for (auto name : response.getNames()) result.emplace_back(name.cStr());
  return result;
}

void Manager::unregister(std::string_view name) {
  rpc::call_manager(*endpoint_, [&](rpc::ClientConnection& c) {
    auto request = c.manager().unregisterRequest();
    request.setRegisteredName(text(name));
    return request.send();
  });
}

schema::Manager::Client Manager::client() {
  return rpc::connection_for(*endpoint_, rpc::Transport::kEventLoop).manager();
}

kj::WaitScope& Manager::wait_scope() { return rpc::thread_loop().wait_scope(); }

void Manager::poll_within_spin(bool (*ready)(void*), void* context) {
  rpc::ready_within_spin(endpoint_->spin, [&] { return ready(context); });
}

}  // namespace xproc
