// ManagerServer: the process side of a Manager. Binds an address, then serves the
// Manager's objects over Cap'n Proto RPC until a client calls shutdown (or the process
// is told to stop). Manager's constructor runs one in a forked child; `xproc serve` runs
// one standalone, which is how clients on other machines reach it.
//
// User-defined objects (BaseManager.register's analogue): register a factory for your own
// Cap'n Proto interface before serving; any client obtains new instances with
// Manager::create<YourInterface>("TypeName").
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <capnp/capability.h>
#include <capnp/generated-header-support.h>

namespace xproc {

// Factories for user-defined interfaces, by type name.
class UserTypes {
 public:
  struct Type {
    uint64_t interface_id = 0;
    std::function<capnp::Capability::Client()> make;  // runs on the server's event loop
  };

  // `make` returns a new capability, e.g. [] { return kj::heap<CounterImpl>(); } converted
  // to Interface::Client.
  template <typename Interface>
  void add(std::string name, std::function<typename Interface::Client()> make) {
    types_[std::move(name)] = Type{capnp::typeId<Interface>(),
                                  [make = std::move(make)]() -> capnp::Capability::Client { return make(); }};
  }

  const Type* find(const std::string& name) const {
    auto it = types_.find(name);
    return it == types_.end() ? nullptr : &it->second;
  }

 private:
  std::map<std::string, Type> types_;
};

struct ServerOptions {
  // "unix:/path", "/path", or "tcp:host:port" / "host:port" (port 0 picks one).
  std::string address;
  // Required for TCP. Without one (unix sockets only), login accepts any digest and the
  // socket's file permissions are the only guard.
  std::optional<std::string> authkey;
  UserTypes types;
  // After each call the server keeps polling its sockets this long before it sleeps: a
  // client calling again within the window is served without a wake-up (~20 µs on these
  // machines). Zero never spins.
  std::chrono::microseconds spin{50};
  // Told of each client connection opening and closing ("connection 3 opened from
  // 127.0.0.1:51234", "connection 3 closed"); runs on the server's thread. Empty: silent.
  std::function<void(const std::string&)> log;
};

class ManagerServer {
 public:
  // Binds and listens now. ValueError for a TCP address without authkey; OSError /
  // ConnectionError when the address cannot be bound.
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
