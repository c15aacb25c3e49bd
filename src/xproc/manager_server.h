// ManagerServer: the process side of a Manager. Binds an address, then serves the
// Manager's objects over Cap'n Proto RPC until a client calls shutdown (or the process
// is told to stop). Manager's constructor runs one in a forked child; `xproc serve` runs
// one standalone, which is how clients on other machines reach it.
//
// User-defined objects (BaseManager.register's analogue): register a factory for your own
// Cap'n Proto interface before serving; any client obtains new instances with
// Manager::create<YourInterface>("TypeName"). Types registered from Python
// (xproc.managers.BaseManager.register) answer the Dynamic interface of manager.capnp.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <capnp/capability.h>
#include <capnp/generated-header-support.h>

#include "xproc/tls_options.h"
#include "xproc/value.capnp.h"

namespace xproc {

// What a client passed to Manager.create besides the type's name: the constructor's
// arguments (schema/xproc/manager.capnp). Readers into the request, valid while the
// factory runs.
struct CreateArguments {
  capnp::List<schema::Value>::Reader args;
  capnp::List<schema::Value::Entry>::Reader kwargs;
  bool empty() const { return args.size() == 0 && kwargs.size() == 0; }
};

// Factories for user-defined interfaces, by type name.
class UserTypes {
 public:
  // A registered type: the interface its objects implement, and how to make one.
  struct Type {
    uint64_t interface_id = 0;
    // Runs on the server's event loop; what it throws fails the client's create().
    std::function<capnp::Capability::Client(const CreateArguments&)> make;
  };

  // `make` returns a new capability, e.g. [] { return kj::heap<CounterImpl>(); } converted
  // to Interface::Client. The type takes no constructor arguments (TypeError if given).
  template <typename Interface>
  void add(std::string name, std::function<typename Interface::Client()> make) {
    add_with_arguments<Interface>(
        name, [make = std::move(make), name](const CreateArguments& arguments) -> typename Interface::Client {
          if (!arguments.empty()) refuse_arguments(name);
          return make();
        });
  }

  // A type whose factory reads the arguments the client passed.
  template <typename Interface>
  void add_with_arguments(std::string name, std::function<typename Interface::Client(const CreateArguments&)> make) {
    types_[std::move(name)] =
        Type{capnp::typeId<Interface>(),
             [make = std::move(make)](const CreateArguments& arguments) -> capnp::Capability::Client {
               return make(arguments);
             }};
  }

  // The type registered under `name`, owned by this table; nullptr when there is none.
  const Type* find(const std::string& name) const {
    auto it = types_.find(name);
    return it == types_.end() ? nullptr : &it->second;
  }

 private:
  [[noreturn]] static void refuse_arguments(const std::string& name);

  std::map<std::string, Type> types_;
};

// What one client connection may make the server hold once it has logged in. Before the
// login a connection may send only a few small messages (the login's), and must log in
// within ServerOptions::login_timeout. A client over a limit is disconnected, with the
// limit's name in the error it receives; other clients do not notice.
struct ConnectionLimits {
  // The largest message a client may send (a call's parameters: a large value put).
  size_t max_message_bytes = 64u << 20;
  // Calls a client may have open at once (sent, and not yet finished with).
  size_t max_outstanding_calls = 4096;
  // Bytes of replies the server may hold for a client that does not read them.
  size_t max_queued_reply_bytes = 128u << 20;
};

struct ServerOptions {
  // "unix:/path", "/path", "tcp:host:port" / "host:port", or "tls:host:port" (port 0
  // picks one). Use tls: for anything that leaves the machine: tcp: carries every call in
  // clear text.
  std::string address;
  // Required for TCP and TLS. Without one (unix sockets only), login accepts any digest
  // and the peer-credential check and the socket's file permissions are the guards.
  std::optional<std::string> authkey;
  // Required for a tls: address.
  std::optional<TlsServerOptions> tls;
  // Unix sockets: besides the server's own user and root, the users and groups whose
  // processes may connect (checked with SO_PEERCRED; others are refused and logged).
  std::vector<uid_t> allowed_uids;
  std::vector<gid_t> allowed_gids;
  // Connections served at once; 0: a quarter of the process's descriptor limit. At the
  // limit, a new connection displaces the oldest one that has not logged in, else the one
  // idle longest (for at least idle_reap_after), else it is refused.
  size_t max_connections = 0;
  std::chrono::seconds idle_reap_after{60};
  // A connection must have logged in this long after it was accepted (TLS handshake and
  // lane request included), or it is closed.
  std::chrono::milliseconds login_timeout{10000};
  ConnectionLimits limits;
  UserTypes types;
  // After each call the server keeps polling its sockets this long before it sleeps: a
  // client calling again within the window is served without a wake-up (~20 µs on these
  // machines). Zero never spins.
  std::chrono::microseconds spin{50};
  // Told of each client connection opening and closing ("connection 3 opened from
  // 127.0.0.1:51234", "connection 3 closed"), of failed logins, refusals and clients
  // disconnected over a limit; runs on the server's thread. Empty: silent.
  std::function<void(const std::string&)> log;
};

class ManagerServer {
 public:
  // Binds and listens now. ValueError for a TCP or TLS address without authkey, or TLS
  // without certificate and key; OSError / ConnectionError when the address cannot be
  // bound.
  explicit ManagerServer(ServerOptions options);
  ManagerServer(ManagerServer&&) noexcept;
  ManagerServer& operator=(ManagerServer&&) noexcept;
  ~ManagerServer();

  // The bound address, as clients pass it to Manager::connect (TCP with the real port).
  const std::string& address() const noexcept;

  // Serves on the calling thread until a client calls shutdown. The thread must not run
  // a kj event loop of its own.
  void serve_forever();

  // Closes this process's copy of the listening socket, leaving the socket file to the
  // process that serves it (after fork).
  void close_unserved() noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace xproc
