// Proxies: what a Manager hands out for its shared objects. Each one is a small copyable
// handle naming an object on the server; every method is one synchronous RPC.
//
// Proxies are safe to use from several threads (each thread talks over its own
// connection) and in forked children (the child connects on first use). An object lives
// while some proxy in some process holds it, or while it has a name. Printing a proxy
// prints the remote object's repr, as Python does.
//
// For pipelining, client() gives the Cap'n Proto capability on the calling thread's
// connection and Manager::wait_scope() the loop to wait on: send many requests, then wait.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <kj/async.h>

#include "xproc/manager.capnp.h"
#include "xproc/timeout.h"
#include "xproc/value.h"

namespace xproc {

namespace rpc {
struct ObjectRef;
}

// Python's slice(start, stop, step): a missing bound is std::nullopt.
struct Slice {
  std::optional<int64_t> start;
  std::optional<int64_t> stop;
  int64_t step = 1;
};

// What every proxy has: the object's id, its Value form and its repr. Copies name the same
// object; the object lives while some proxy or container holds it, or it has a name.
class Proxy {
 public:
  // Proxies come from a Manager's factories.
  explicit Proxy(std::shared_ptr<const rpc::ObjectRef> ref) : ref_(std::move(ref)) {}

  // The object's number on its server: what Manager::attach takes in another process.
  uint64_t id() const noexcept;
  // This proxy as a Value (a ProxyRef): stored in a container of the same Manager, it
  // keeps the object alive while the container holds it, and comes back as its id, to
  // attach to (Manager::attach). Connects first if this process has not.
  Value as_value() const;
  // The object's repr, fetched from the server.
  std::string repr() const;
  friend std::ostream& operator<<(std::ostream& out, const Proxy& proxy) { return out << proxy.repr(); }

  // Any method of the object's interface, by its name in manager.capnp ("getItem",
  // "increment" ...), without waiting: the promise resolves as this thread's loop runs
  // (Manager::wait). `args` go to the method's parameters in order, each converted to
  // the parameter's type. The result is the reply's only field as a Value (None when it
  // answers nothing, a tuple when it answers several); a failure is the remote error,
  // raised as an xproc error by Manager::wait.
  //
  // Calls that answer at once, made before the loop next runs, leave together: one
  // message per object, run by the server in the order made (docs/guide.md, "Event
  // loops"). A call that may wait (one with a timeout) goes on its own, after the
  // object's earlier calls. Dropping the promise before the loop runs cancels the call.
  // TypeError for a proxy of a user's own interface (use client()).
  //
  //   kj::Vector<kj::Promise<Value>> replies;
  //   for (const auto& key : keys) replies.add(d.call_async("getItem", {key}));
  //   kj::Array<Value> values = manager.wait(kj::joinPromises(replies.releaseAsArray()));
  kj::Promise<Value> call_async(std::string_view method, std::vector<Value> args = {}) const;

 protected:
  capnp::Capability::Client capability() const;  // on this thread's connection

  std::shared_ptr<const rpc::ObjectRef> ref_;
};

// A proxy of an object with `Interface` of manager.capnp.
template <typename Interface>
class ProxyOf : public Proxy {
 public:
  using Proxy::Proxy;
  // The object's capability on this thread's connection, for pipelined calls.
  typename Interface::Client client() const { return capability().template castAs<Interface>(); }
};

// manager.dict(): Python's dict, plus atomic compound operations.
class DictProxy : public ProxyOf<schema::Dict> {
 public:
  using ProxyOf::ProxyOf;

  Value operator[](const Value& key) const;  // KeyError when missing
  Value get(const Value& key, const Value& fallback = nullptr) const;
  void set(const Value& key, const Value& value) const;
  void del(const Value& key) const;  // del d[key]; KeyError when missing
  bool contains(const Value& key) const;
  size_t size() const;
  std::vector<Value> keys() const;
  std::vector<Value> values() const;
  std::vector<std::pair<Value, Value>> items() const;
  void update(const ValueMap& items) const;
  Value pop(const Value& key) const;  // KeyError when missing
  Value pop(const Value& key, const Value& fallback) const;
  std::pair<Value, Value> popitem() const;  // the last inserted; KeyError when empty
  Value setdefault(const Value& key, const Value& fallback = nullptr) const;
  void clear() const;
  ValueMap copy() const;  // a snapshot

  // d[key] = d.get(key, 0) + delta, atomically; returns the new value.
  Value increment(const Value& key, const Value& delta = 1) const;
  // Sets d[key] = value if d[key] == expected (nullopt: if key is missing). Returns
  // whether it did and the value there now (nullopt: missing).
  struct CasResult {
    bool swapped;
    std::optional<Value> current;
  };
  CasResult compare_and_set(const Value& key, const std::optional<Value>& expected, const Value& value) const;
  // Many reads or writes in one round trip; a missing key reads as nullopt.
  std::vector<std::optional<Value>> get_many(const std::vector<Value>& keys) const;
  void set_many(const ValueMap& items) const;
};

// manager.list(): Python's list.
class ListProxy : public ProxyOf<schema::SharedList> {
 public:
  using ProxyOf::ProxyOf;

  Value operator[](int64_t index) const;  // negative from the end; IndexError
  void set(int64_t index, const Value& value) const;
  void del(int64_t index) const;
  Value::List slice(const Slice& slice) const;
  void set_slice(const Slice& slice, const Value::List& values) const;
  void del_slice(const Slice& slice) const;
  void append(const Value& value) const;
  void extend(const Value::List& values) const;
  void insert(int64_t index, const Value& value) const;
  Value pop() const;
  Value pop(int64_t index) const;
  void remove(const Value& value) const;  // ValueError when absent
  int64_t index(const Value& value, int64_t start = 0, std::optional<int64_t> stop = std::nullopt) const;
  size_t count(const Value& value) const;
  bool contains(const Value& value) const;
  void reverse() const;
  void sort(bool reverse = false) const;  // TypeError for values Python cannot order
  size_t size() const;
  Value::List copy() const;
  void multiply(int64_t times) const;  // l *= times
};

// manager.Namespace(): attributes by name.
class NamespaceProxy : public ProxyOf<schema::Namespace> {
 public:
  using ProxyOf::ProxyOf;

  Value get(const std::string& name) const;  // AttributeError when missing
  void set(const std::string& name, const Value& value) const;
  void del(const std::string& name) const;
  std::vector<std::pair<std::string, Value>> items() const;
};

// manager.Value(typecode, value).
class ValueProxy : public ProxyOf<schema::ValueCell> {
 public:
  using ProxyOf::ProxyOf;

  Value get() const;
  void set(const Value& value) const;
  std::string typecode() const;
  Value increment(const Value& delta = 1) const;  // atomic value += delta
};

// manager.Array(typecode, sequence): fixed length, items checked against the typecode.
class ArrayProxy : public ProxyOf<schema::Array> {
 public:
  using ProxyOf::ProxyOf;

  size_t size() const;
  Value operator[](int64_t index) const;
  void set(int64_t index, const Value& value) const;
  Value::List slice(const Slice& slice) const;
  void set_slice(const Slice& slice, const Value::List& values) const;  // same length
  std::string typecode() const;
};

// manager.Queue(maxsize): Python's queue.Queue held by the server.
class QueueProxy : public ProxyOf<schema::Queue> {
 public:
  using ProxyOf::ProxyOf;

  void put(const Value& value, bool block = true, Timeout timeout = {}) const;  // Full
  Value get(bool block = true, Timeout timeout = {}) const;                     // Empty
  void put_nowait(const Value& value) const { put(value, false); }
  Value get_nowait() const { return get(false); }
  size_t qsize() const;
  bool empty() const;
  bool full() const;
};

class JoinableQueueProxy : public QueueProxy {
 public:
  using QueueProxy::QueueProxy;

  void task_done() const;  // ValueError when called too often
  // Until every item put has been marked done; false when the timeout runs out.
  bool join(Timeout timeout = {}) const;

  schema::JoinableQueue::Client client() const { return capability().castAs<schema::JoinableQueue>(); }
};

// manager.Lock() and manager.RLock(). Also BasicLockable, for std::lock_guard. Released by
// the server when the holding thread's connection drops (the thread or process exits).
class LockProxy : public ProxyOf<schema::Lock> {
 public:
  using ProxyOf::ProxyOf;

  // As Python's: true once held; false when not `blocking` and it is held elsewhere, or
  // when `timeout` runs out.
  bool acquire(bool blocking = true, Timeout timeout = {}) const;
  void release() const;  // RuntimeError when not held
  bool locked() const;
  void lock() const { acquire(); }
  void unlock() const { release(); }
  bool try_lock() const { return acquire(false); }
};

// manager.Semaphore(value) and manager.BoundedSemaphore(value).
class SemaphoreProxy : public ProxyOf<schema::Semaphore> {
 public:
  using ProxyOf::ProxyOf;

  // As Python's: true once a unit is taken; false when not `blocking` and none is free,
  // or when `timeout` runs out.
  bool acquire(bool blocking = true, Timeout timeout = {}) const;
  void release(uint32_t n = 1) const;  // ValueError past a bounded semaphore's value
  int64_t value() const;
};

// manager.Event().
class EventProxy : public ProxyOf<schema::Event> {
 public:
  using ProxyOf::ProxyOf;

  void set() const;
  void clear() const;
  bool is_set() const;
  bool wait(Timeout timeout = {}) const;  // the flag at return
};

// manager.Condition(lock).
class ConditionProxy : public ProxyOf<schema::Condition> {
 public:
  using ProxyOf::ProxyOf;

  bool acquire(bool blocking = true, Timeout timeout = {}) const;
  void release() const;
  void lock() const { acquire(); }
  void unlock() const { release(); }
  // Releases the lock, waits for notify (false on timeout), reacquires it.
  bool wait(Timeout timeout = {}) const;
  // Waits until predicate() holds (checked with the lock held); returns its last value.
  bool wait_for(const std::function<bool()>& predicate, Timeout timeout = {}) const;
  void notify(uint32_t n = 1) const;
  void notify_all() const;
};

// manager.Barrier(parties, timeout).
class BarrierProxy : public ProxyOf<schema::Barrier> {
 public:
  using ProxyOf::ProxyOf;

  uint32_t wait(Timeout timeout = {}) const;  // BrokenBarrierError
  void reset() const;
  void abort() const;
  uint32_t parties() const;
  uint32_t n_waiting() const;
  bool broken() const;
};

// An object of a type registered from Python (xproc.managers.BaseManager.register), or of
// any server type answering manager.capnp's Dynamic interface: methods called by name.
//
//   auto maths = manager.create_dynamic("Maths");
//   Value seven = maths.call("add", {3, 4});
class DynamicProxy : public ProxyOf<schema::Dynamic> {
 public:
  using ProxyOf::ProxyOf;

  // object.method(*args, **kwargs) on the server (kwargs: text keys). What the method
  // raises arrives as the xproc error of its name (KeyError, ValueError ...); others as
  // Error with the server's text ("ZeroDivisionError: division by zero").
  Value call(std::string_view method, std::vector<Value> args = {}, const ValueMap& kwargs = {}) const;
  // For a method registered to return a shared object (method_to_typeid): a proxy of
  // that object. TypeError for a method that returns a Value (use call()); call() refuses
  // these methods the same way.
  DynamicProxy call_for_object(std::string_view method, std::vector<Value> args = {},
                               const ValueMap& kwargs = {}) const;
  // The methods call() accepts.
  std::vector<std::string> exposed() const;
};

// An object of a user's own interface. Calls go through client() on this thread's
// connection; Manager::wait() waits for a reply the way proxies do (mapping errors).
template <typename Interface>
class UserProxy : public ProxyOf<Interface> {
 public:
  using ProxyOf<Interface>::ProxyOf;
};

}  // namespace xproc
