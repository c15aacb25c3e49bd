// xproc::Manager: multiprocessing's Manager() over Cap'n Proto RPC. A server process holds
// shared objects (dict, list, namespace, value, array, queues, locks, semaphores, events,
// conditions, barriers, and objects of users' own interfaces); proxies reach them from
// any thread, forked child or, through manager.capnp, any language.
//
//   xproc::Manager manager;                       // forks the server
//   auto d = manager.dict();                      // a DictProxy
//   xproc::Process([d] { d.set("x", 1); }).start().join();
//   std::cout << d << "\n";                       // {'x': 1}
//
// The server listens on a unix socket in a private 0700 directory with a fresh random
// authkey; it exits when the Manager that started it shuts down or leaves scope, or when
// the starting process dies. Manager::connect reaches a server started elsewhere
// (another Manager, or `xproc serve`). When the server is gone every call fails with
// ConnectionError at once; nothing hangs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <capnp/capability.h>
#include <kj/async.h>

#include "xproc/manager_proxies.h"
#include "xproc/manager_server.h"

namespace xproc {

class Process;
namespace rpc {
struct Endpoint;
}

struct ManagerOptions {
  // Default: "unix:<fresh private directory>/manager.sock". A TCP address
  // ("tcp:host:port") needs an authkey.
  std::string address;
  // Default: 32 random bytes.
  std::optional<std::string> authkey;
  // Factories for user-defined interfaces (see manager_server.h).
  UserTypes types;
  // How long the server polls after a call, and a client after sending one, before
  // sleeping: a round trip within the window costs no wake-up (~20 µs each). Zero never
  // spins (least CPU).
  std::chrono::microseconds server_spin{50};
  std::chrono::microseconds client_spin{50};
  // Blocking proxy calls over a unix socket move their bytes through a shared-memory lane
  // the server hands out (docs/protocol.md, "Manager lanes"): no system call per call
  // while both sides spin. false keeps them on the socket.
  bool shared_memory = true;
};

// How a client reaches a server started elsewhere (Manager::connect).
struct ConnectOptions {
  // How long a caller polls for a reply before it sleeps (see ManagerOptions::client_spin).
  std::chrono::microseconds client_spin{50};
  // Over a unix socket, blocking calls move their bytes through a shared-memory lane.
  bool shared_memory = true;
  // For a "tls:host:port" address: how the server's certificate is checked, and the
  // client's own certificate, if any.
  TlsClientOptions tls;
};

// [[noreturn]]: the xproc error a failed Manager call (kj::Exception) stands for.
[[noreturn]] void rethrow_manager_error(const kj::Exception& error);

// For language bindings that must stay responsive while a proxy call waits (the Python
// package turns Ctrl-C into KeyboardInterrupt this way): `check` is called every
// `interval` while a reply is awaited; an exception it throws cancels the call (the
// server drops it) and reaches the caller. nullptr turns it off. Process-wide.
void set_call_interrupt_check(void (*check)(), std::chrono::milliseconds interval);

class Manager {
 public:
  // Starts a server process (Python's Manager()). OSError when it cannot.
  explicit Manager(ManagerOptions options = {});
  // A client of a server started elsewhere; it does not own the server. ConnectionError
  // when nobody listens there or the TLS handshake fails (an untrusted certificate, another
  // server name), AuthenticationError for a wrong authkey. Addresses as ServerOptions'.
  static Manager connect(const std::string& address, std::optional<std::string> authkey,
                         std::chrono::microseconds client_spin = std::chrono::microseconds(50));
  static Manager connect(const std::string& address, std::optional<std::string> authkey, const ConnectOptions& options);

  // Move-only: one Manager owns the server it started.
  Manager(Manager&& other) noexcept;
  Manager& operator=(Manager&& other) noexcept;
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;
  // Shuts down a server this process started (as `with Manager() as m:` does).
  ~Manager();

  // Stops the server this Manager started (no-op for a connected one, or twice): its
  // process is terminated, its socket directory removed. Proxies fail afterwards with
  // ConnectionError.
  void shutdown();

  // Where the server listens and the key clients log in with: what Manager::connect takes
  // in another process (or `xproc serve`'s clients).
  const std::string& address() const noexcept;
  const std::optional<std::string>& authkey() const noexcept;
  // The server's pid; 0 for a connected Manager or after shutdown.
  pid_t pid() const noexcept;
  // The server's random instance number, which the ProxyRefs of its objects carry.
  uint64_t instance() const;

  // Factories, as Python's. `name` non-empty: the object registered under that name,
  // made (from the other arguments) only if the name is new; ValueError if it names an
  // object of another kind.
  DictProxy dict(const ValueMap& initial = {}, std::string_view name = {});
  ListProxy list(const Value::List& initial = {}, std::string_view name = {});
  NamespaceProxy namespace_(std::string_view name = {});
  ValueProxy value(std::string_view typecode, const Value& initial, std::string_view name = {});
  ArrayProxy array(std::string_view typecode, const Value::List& initial, std::string_view name = {});
  QueueProxy queue(int64_t maxsize = 0, std::string_view name = {});
  JoinableQueueProxy joinable_queue(int64_t maxsize = 0, std::string_view name = {});
  LockProxy lock(std::string_view name = {});
  LockProxy rlock(std::string_view name = {});
  SemaphoreProxy semaphore(int64_t value = 1, std::string_view name = {});
  SemaphoreProxy bounded_semaphore(int64_t value = 1, std::string_view name = {});
  EventProxy event(std::string_view name = {});
  // Over `lock` (a lock or rlock of this manager); without one, a fresh rlock.
  ConditionProxy condition(std::optional<LockProxy> lock = std::nullopt, std::string_view name = {});
  BarrierProxy barrier(uint32_t parties, Timeout timeout = {}, std::string_view name = {});

  // An object of a user type the server registered (ManagerOptions::types), checked to be
  // of `Interface`. KeyError for an unknown type name, TypeError for another interface.
  template <typename Interface>
  UserProxy<Interface> create(std::string_view type_name, std::string_view name = {}) {
    return UserProxy<Interface>(create_user(type_name, name, capnp::typeId<Interface>()));
  }

  // An object of a type registered from Python (BaseManager.register), made on the
  // server by its callable as callable(*args, **kwargs); with `name`, the one registered
  // under it (made if new). KeyError for an unknown type name, TypeError for a type that
  // is not Dynamic; what the callable raises, as DynamicProxy::call's errors.
  DynamicProxy create_dynamic(std::string_view type_name, std::vector<Value> args = {}, const ValueMap& kwargs = {},
                              std::string_view name = {});

  // The object of a user's interface registered under `name` (created by name, or
  // published). KeyError when there is none, TypeError when it has another interface.
  template <typename Interface>
  UserProxy<Interface> lookup(std::string_view name) {
    return UserProxy<Interface>(lookup_user(name, capnp::typeId<Interface>()));
  }

  // Registers a capability this process implements under `name`, for other clients to
  // look up; their calls are served while this thread runs its loop (waits on
  // wait_scope()). Make `object` on this thread after its first Manager call.
  template <typename Interface>
  void publish(std::string_view name, typename Interface::Client object) {
    publish_user(name, kj::mv(object), capnp::typeId<Interface>());
  }

  // The proxy of type P for the object `id` (another proxy's id(), for instance sent by
  // another process). The object must still exist: calls raise KeyError otherwise.
  template <typename P>
  P attach(uint64_t id) {
    return P(attach_ref(id));
  }

  // Object `id`, whatever its kind, for a ProxyRef read from a container that may drop
  // it at any moment: one call fetches its kind and a capability that holds it while
  // `ref` (or a proxy made from it, P(ref)) lives. KeyError once it is gone.
  struct Attached {
    schema::Kind kind;
    std::shared_ptr<const rpc::ObjectRef> ref;
  };
  Attached attach_held(uint64_t id);

  // Where the server is and how to log in, for a binding that calls the Manager through
  // rpc::DynamicCall (the Python package does).
  const std::shared_ptr<const rpc::Endpoint>& endpoint() const noexcept { return endpoint_; }

  // The names registered on the server, sorted; and removing one (KeyError if absent).
  std::vector<std::string> names();
  void unregister(std::string_view name);

  // For the asynchronous API: the Manager capability on this thread's connection, and
  // the loop to wait on. Promises must be waited on from the same thread.
  schema::Manager::Client client();
  kj::WaitScope& wait_scope();
  // Waits for a reply (or any promise of this thread's loop, such as several replies
  // joined), turning failures into xproc errors. As a blocking proxy call does, it first
  // polls for up to the client spin window: replies that come back within it cost no
  // sleep and no wake-up.
  template <typename Results>
  capnp::Response<Results> wait(capnp::RemotePromise<Results>&& reply) {
    return wait(kj::Promise<capnp::Response<Results>>(kj::mv(reply)));
  }
  template <typename T>
  T wait(kj::Promise<T>&& promise) {
    try {
      auto& scope = wait_scope();
      struct Poll {
        kj::Promise<T>& promise;
        kj::WaitScope& scope;
        static bool ready(void* self) {
          auto* poll = static_cast<Poll*>(self);
          return poll->promise.poll(poll->scope);
        }
      } poll{promise, scope};
      poll_within_spin(&Poll::ready, &poll);
      return promise.wait(scope);
    } catch (const kj::Exception& e) {
      rethrow_manager_error(e);
    }
  }

 private:
  // Calls `ready(context)` until it is true, for up to the client spin window.
  void poll_within_spin(bool (*ready)(void*), void* context);

  struct Connected {};
  explicit Manager(Connected);
  std::shared_ptr<const rpc::ObjectRef> create_user(std::string_view type_name, std::string_view name,
                                                    uint64_t interface_id, const std::vector<Value>& args = {},
                                                    const ValueMap& kwargs = {});
  std::shared_ptr<const rpc::ObjectRef> attach_ref(uint64_t id) const;
  std::shared_ptr<const rpc::ObjectRef> lookup_user(std::string_view name, uint64_t interface_id);
  void publish_user(std::string_view name, capnp::Capability::Client object, uint64_t interface_id);

  std::shared_ptr<const rpc::Endpoint> endpoint_;
  std::unique_ptr<Process> server_;  // when this process started the server
  pid_t owner_pid_ = 0;              // the process that started it
  std::string socket_dir_;           // the private directory to remove at shutdown
};

}  // namespace xproc
