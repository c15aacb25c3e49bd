// What every object a Manager server holds is built on: the runtime (timer and object
// registry), the per-connection session, the base of shared objects and the wrapper that
// gives every server method Python-named errors.
//
// Ownership: a shared object is kj::Refcounted. Each capability a client holds owns a
// reference (directly, or through a per-session facade for the objects that must know
// their caller); a name registered with the Manager owns one more. The registry maps ids
// to objects without owning them: an object leaves it when its last reference goes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include <capnp/capability.h>
#include <capnp/schema.h>
#include <kj/async.h>
#include <kj/function.h>
#include <kj/refcount.h>
#include <kj/timer.h>

#include "xproc/manager.capnp.h"
#include "xproc/rpc/remote_error.h"
#include "xproc/value.h"

namespace xproc::rpc {

class Session;
class Registry;

// Counts calls: the serve loop keeps spinning while calls keep coming, and sleeps on
// next_call() when they stop.
uint64_t calls_dispatched() noexcept;
void count_call() noexcept;
kj::Promise<void> next_call();

// The ordinal of Object.batch in manager.capnp.
inline constexpr uint16_t kBatchMethod = 1;

// Runs an Object.batch call (manager.capnp): each call it carries goes to `server`'s own
// dispatchCall in order, each answered in its own BatchedReturn. `serves` is the interface
// `server` implements, which tells the methods that may wait (refused).
kj::Promise<void> run_batch(capnp::Capability::Server& server, capnp::InterfaceSchema serves,
                            capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer> context);

// Wraps a generated Server class: counts each call and turns what a method throws into a
// remote error that keeps its Python name. A shared object's class (one that serves
// Object) also answers Object.batch.
template <typename GeneratedServer>
class Served : public GeneratedServer {
 public:
  using GeneratedServer::GeneratedServer;
  static constexpr uint64_t kReplyWords = 32;

  capnp::Capability::Server::DispatchCallResult dispatchCall(
      uint64_t interfaceId, uint16_t methodId,
      capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer> context) override {
    if constexpr (std::is_base_of_v<schema::Object::Server, GeneratedServer>) {
      if (interfaceId == capnp::typeId<schema::Object>() && methodId == kBatchMethod) {
        count_call();
        return {run_batch(*this, capnp::Schema::from<typename GeneratedServer::Serves>(), context), false};
      }
    }
    count_call();
    try {
      // Sizes the reply's first segment for the usual small result. Without a hint the RPC
      // system gives every reply 8 KiB of zeroed memory; a larger result just grows more
      // segments.
      context.getResults(capnp::MessageSize{kReplyWords, 0});
      return GeneratedServer::dispatchCall(interfaceId, methodId, context);
    } catch (...) {
      return {to_remote(std::current_exception()), false};
    }
  }
};

// The server's shared services, one per server.
struct Runtime {
  kj::Timer& timer;
  Registry& registry;
  // This server's random instance number (Gate.login returns it; Value.Proxy carries it).
  uint64_t instance = 0;

  // A Value a client sent, with every proxy in it checked to name a live object of this
  // server and holding that object alive while the Value lives: ValueError for a proxy of
  // another server, KeyError for an object that is gone.
  Value read(schema::Value::Reader reader) const;
  std::vector<Value> read(capnp::List<schema::Value>::Reader values) const;
};

// A shared object: has an id, a kind, and hands out capabilities to itself.
class SharedObject : public kj::Refcounted {
 public:
  SharedObject(Runtime& runtime, schema::Kind kind, uint64_t interface_id = 0);
  virtual ~SharedObject();
  KJ_DISALLOW_COPY(SharedObject);

  uint64_t id() const noexcept { return id_; }
  schema::Kind kind() const noexcept { return kind_; }
  uint64_t interface_id() const noexcept { return interface_id_; }

  // A capability to this object for a client of `session`.
  virtual capnp::Capability::Client client(Session& session) = 0;

  // The connection of `session` dropped: give back what it held. Most objects hold
  // nothing per client.
  virtual void session_closed(uint64_t session_id) { (void)session_id; }

  // The server stops: let go of the Values this object holds, whose proxies may keep
  // other objects (or this one: a list appended to itself) alive in a cycle.
  virtual void drop_contents() {}

 protected:
  Runtime& runtime_;

 private:
  // The registry outlives its objects, but the Runtime naming it may not: a registry's
  // destructor drops the named objects after the Runtime on the same stack has gone.
  Registry& registry_;
  uint64_t id_;
  schema::Kind kind_;
  uint64_t interface_id_;
};

// Ids and names of the live objects.
class Registry {
 public:
  Registry() = default;
  ~Registry();
  KJ_DISALLOW_COPY(Registry);
  uint64_t add(SharedObject& object);
  void remove(uint64_t id) noexcept;
  // nullptr once the object is gone.
  SharedObject* find(uint64_t id) const;

  SharedObject* find_name(const std::string& name);
  void bind_name(const std::string& name, kj::Own<SharedObject> object);
  kj::Own<SharedObject> unbind_name(const std::string& name);  // KeyError when missing
  std::vector<std::string> names() const;
  size_t live_objects() const noexcept { return objects_.size(); }
  size_t named_objects() const noexcept { return names_.size(); }
  // Keeps `object` until the server stops.
  void pin(kj::Own<SharedObject> object) { pinned_.push_back(kj::mv(object)); }

 private:
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, SharedObject*> objects_;
  std::map<std::string, kj::Own<SharedObject>> names_;
  std::vector<kj::Own<SharedObject>> pinned_;
};

// One client connection. Objects that track holders (locks, semaphores, barriers)
// remember the sessions that touched them and are told when a session closes.
class Session : public kj::Refcounted {
 public:
  explicit Session(uint64_t id) : id_(id) {}
  uint64_t id() const noexcept { return id_; }

  // `object` holds something for this session; it will hear session_closed().
  void track(SharedObject& object);
  // The connection dropped. A closed session takes nothing more.
  void close();
  bool closed() const noexcept { return closed_; }

 private:
  uint64_t id_;
  bool closed_ = false;
  std::unordered_map<uint64_t, kj::Own<SharedObject>> tracked_;  // by object id
};

// Parked callers of one object, woken all at once: each rechecks its condition, so a
// caller that timed out or disconnected in between loses nobody a wake-up.
class WaitList {
 public:
  kj::Promise<void> next_wake();
  void wake_all();

 private:
  kj::Maybe<kj::ForkedPromise<void>> forked_;
  kj::Own<kj::PromiseFulfiller<void>> fulfiller_;
};

// A timeout in seconds as multiprocessing takes it: negative waits forever.
kj::Maybe<kj::TimePoint> deadline_after(kj::Timer& timer, double timeout_seconds);

// Runs `attempt` now and after each wake of `list` until it succeeds (resolves to true)
// or the deadline passes (resolves to false after one last attempt). With
// blocking = false, one attempt.
// allow_cancellation_note: Cap'n Proto 0.9 finishes a server call even after its client
// cancelled it, unless the method calls context.allowCancellation(). The blocking
// methods whose effect happens only at the end (queue put/get/join, lock and semaphore
// acquire, event wait) allow it, so a client that gives up (Ctrl-C, a dropped proxy
// call) leaves no phantom waiter behind to take an item or a lock nobody receives.
// Condition and barrier waits do not: their waiting itself changes shared state
// (a released lock, a counted party), which the call must see through to the end.
kj::Promise<bool> retry_until(kj::Timer& timer, WaitList& list, bool blocking, double timeout_seconds,
                              kj::Function<bool()> attempt);

// `s` seconds as a kj::Duration (0 for negative or NaN, capped far in the future).
kj::Duration seconds(double s);

}  // namespace xproc::rpc
