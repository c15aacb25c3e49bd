// The client side of the Manager: connections per (thread, manager), made on first use
// in that thread and process, logged in through the Gate; and the call helper proxies use.
//
// Why per thread: a call blocks its caller, and a kj event loop belongs to one thread, so
// each thread talks over its own connections (as Python's proxies do). A forked child
// inherits none of them: thread_loop() gives it a fresh loop and it reconnects.
//
// Two transports. The blocking proxy calls use a DirectSession (direct_session.h): the
// same protocol without kj's RPC machinery, several microseconds cheaper per call. What
// needs the event loop — the promise API (Proxy::client()), capabilities the caller
// serves itself (Manager::publish) — uses kj's RpcSystem on a second connection, made
// only when first needed. They are two sessions to the server: a lock taken through one
// is held by that connection.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include <capnp/rpc-twoparty.h>

#include "xproc/manager.capnp.h"
#include "xproc/rpc/remote_error.h"
#include "xproc/rpc/thread_loop.h"
#include "xproc/tls_options.h"

namespace xproc::rpc {

// Where a manager is and how to log in; shared by all its proxies.
struct Endpoint {
  uint64_t serial = 0;  // tells managers apart in the per-thread connection table
  std::string address;
  std::optional<std::string> authkey;
  std::chrono::microseconds spin{50};  // how long a caller polls for a reply before sleeping
  bool shared_memory = true;           // blocking calls ask for a lane on a unix socket
  // Set for a "tls:" address: every call goes over kj's RpcSystem on a TLS stream.
  std::optional<TlsClientOptions> tls;
  // The server's instance number, learned at the first login (0 until then).
  mutable std::atomic<uint64_t> instance{0};
};

// A shared object as proxies know it: enough to reach it from any thread or process.
// When the last proxy copy goes, the capability cached for it on this thread's
// connection goes too, so the server can free the object (other threads' caches let go
// of theirs at their next sweep).
struct ObjectRef {
  ~ObjectRef();

  std::shared_ptr<const Endpoint> endpoint;
  uint64_t id = 0;
  schema::Kind kind = schema::Kind::DICT;
  uint64_t interface_id = 0;
};

enum class Transport {
  kDirect,     // blocking calls, no event loop
  kEventLoop,  // kj's RpcSystem: promises, pipelining, serving capabilities
};

class DirectSession;
class CallBatches;

class ClientConnection {
 public:
  // Connects and logs in, blocking. ConnectionError when nobody listens;
  // AuthenticationError for a wrong authkey.
  ClientConnection(ThreadLoop& loop, const Endpoint& endpoint, Transport transport);
  ~ClientConnection();
  KJ_DISALLOW_COPY(ClientConnection);

  schema::Manager::Client& manager() noexcept { return manager_; }
  // The socket: readable when a reply may have come (for a caller that drives this
  // thread's loop from another event loop, as the Python package's asyncio calls do).
  int fileno() const noexcept { return fd_; }

  // The capability for `ref` on this connection: cached, or fetched by id (pipelined, so
  // it costs no extra round trip).
  capnp::Capability::Client object(const std::shared_ptr<const ObjectRef>& ref);
  // Caches the capability a factory call returned for `ref`.
  void remember(const std::shared_ptr<const ObjectRef>& ref, capnp::Capability::Client capability);
  // Drops what is cached for `ref`.
  void forget(const ObjectRef* ref) { cache_.erase(ref); }
  // The calls waiting for this thread's next loop turn to leave in batches (an event-loop
  // connection's; call_batches.h).
  CallBatches& batches();

 private:
  struct Cached {
    std::weak_ptr<const ObjectRef> ref;
    capnp::Capability::Client capability;
  };
  struct EventLoopRpc;
  void release_transport() noexcept;  // closes the socket, whichever transport has it
  void sweep();                       // forgets capabilities whose proxies are all gone, so the server can free them

  ThreadLoop& loop_;
  int fd_ = -1;                               // the socket; the transport owns it
  std::shared_ptr<DirectSession> direct_;     // kDirect
  std::unique_ptr<EventLoopRpc> event_loop_;  // kEventLoop
  std::unique_ptr<CallBatches> batches_;      // on event_loop_'s connection, gone before it
  schema::Manager::Client manager_;
  std::unordered_map<const ObjectRef*, Cached> cache_;
  size_t sweep_at_ = 64;
};

// This thread's connection to `endpoint` over `transport`, connecting if there is none.
ClientConnection& connection_for(const Endpoint& endpoint, Transport transport = Transport::kDirect);
// Whether this thread is connected to `endpoint` (for blocking calls), so that a call
// would not connect first: a caller holding a lock others wait for (Python's GIL) keeps it
// for a call that cannot block before it sends.
bool has_connection(const Endpoint& endpoint);
// Forgets this thread's connections to `endpoint` (after one broke): the next call
// reconnects.
void drop_connection(const Endpoint& endpoint);
// The server's instance number, connecting (and logging in) first if this process has not.
uint64_t instance_of(const Endpoint& endpoint);

template <typename Results>
capnp::Response<Results> wait_reply(capnp::RemotePromise<Results>&& reply, kj::WaitScope& scope,
                                    std::chrono::microseconds spin) {
  kj::Promise<capnp::Response<Results>> promise = kj::mv(reply);
  return wait_spinning(kj::mv(promise), scope, spin);
}

// Calls send(connection), which sends a request and returns its RemotePromise, then waits
// for the reply (polling for endpoint.spin first) and returns it. Remote errors become
// xproc errors; a dropped connection becomes ConnectionError (and the next call
// reconnects).
template <typename Send>
auto call_manager(const Endpoint& endpoint, Send&& send, Transport transport = Transport::kDirect) {
  auto& loop = thread_loop();
  try {
    auto& connection = connection_for(endpoint, transport);
    // A direct call has waited for its reply inside send(): its promise is fulfilled. (Over
    // TLS the connection is kj's RpcSystem, and the call sleeps until its reply: polling the
    // loop within the spin window made sequential calls slower, 95-138 us against 64.)
    if (transport == Transport::kDirect) return send(connection).wait(loop.wait_scope());
    return wait_reply(send(connection), loop.wait_scope(), endpoint.spin);
  } catch (const kj::Exception& e) {
    if (e.getType() == kj::Exception::Type::DISCONNECTED) drop_connection(endpoint);
    rethrow_local(e);
  }
}

}  // namespace xproc::rpc
