// The proxies' methods: each names its method of manager.capnp and passes its arguments;
// rpc::call (dynamic_call.h) builds the request from the schema on this thread's
// connection and waits for the reply.
#include "xproc/manager_proxies.h"

#include <chrono>

#include "xproc/errors.h"
#include "xproc/rpc/client_connection.h"
#include "xproc/rpc/dynamic_call.h"

namespace xproc {

using rpc::call;

// ---- Proxy -------------------------------------------------------------------------

uint64_t Proxy::id() const noexcept { return ref_->id; }

Value Proxy::as_value() const { return Value(ProxyRef{rpc::instance_of(*ref_->endpoint), ref_->id, nullptr}); }

std::string Proxy::repr() const { return call<schema::Object>(ref_, "repr").only().as<capnp::Text>().cStr(); }

capnp::Capability::Client Proxy::capability() const {
  return rpc::connection_for(*ref_->endpoint, rpc::Transport::kEventLoop).object(ref_);
}

kj::Promise<Value> Proxy::call_async(std::string_view method, std::vector<Value> args) const {
  const auto& plan = rpc::plan_of(rpc::interface_of(ref_->kind), method);
  if (args.size() > plan.positional.size()) {
    throw TypeError(std::string(method) + "() takes " + std::to_string(plan.positional.size()) + " arguments, " +
                    std::to_string(args.size()) + " given");
  }
  rpc::DynamicCall request(ref_, plan, rpc::Transport::kEventLoop);
  for (size_t i = 0; i < args.size(); ++i) {
    rpc::set_param_from(request.params(), plan.positional[i], args[i]);
    request.given(plan.positional[i]);
  }
  return request.send_async().then([&plan](capnp::Response<capnp::AnyPointer>&& reply) {
    return rpc::results_as_value(reply.getAs<capnp::DynamicStruct>(plan.results_schema), plan);
  });
}

// ---- DictProxy ---------------------------------------------------------------------

Value DictProxy::operator[](const Value& key) const { return call<schema::Dict>(ref_, "getItem", key).value(); }
Value DictProxy::get(const Value& key, const Value& fallback) const {
  return call<schema::Dict>(ref_, "get", key, fallback).value();
}
void DictProxy::set(const Value& key, const Value& value) const { call<schema::Dict>(ref_, "setItem", key, value); }
void DictProxy::del(const Value& key) const { call<schema::Dict>(ref_, "delItem", key); }
bool DictProxy::contains(const Value& key) const { return call<schema::Dict>(ref_, "contains", key).only().as<bool>(); }
size_t DictProxy::size() const { return call<schema::Dict>(ref_, "len").only().as<uint64_t>(); }
std::vector<Value> DictProxy::keys() const { return rpc::values_of(call<schema::Dict>(ref_, "keys").only()); }
std::vector<Value> DictProxy::values() const { return rpc::values_of(call<schema::Dict>(ref_, "values").only()); }
std::vector<std::pair<Value, Value>> DictProxy::items() const {
  return rpc::entries_of(call<schema::Dict>(ref_, "items").only());
}
void DictProxy::update(const ValueMap& items) const { call<schema::Dict>(ref_, "update", items); }
Value DictProxy::pop(const Value& key) const { return call<schema::Dict>(ref_, "pop", key).value(); }
Value DictProxy::pop(const Value& key, const Value& fallback) const {
  return call<schema::Dict>(ref_, "pop", key, fallback).value();
}
std::pair<Value, Value> DictProxy::popitem() const {
  auto reply = call<schema::Dict>(ref_, "popitem");
  return {rpc::value_of(reply["key"]), rpc::value_of(reply["value"])};
}
Value DictProxy::setdefault(const Value& key, const Value& fallback) const {
  return call<schema::Dict>(ref_, "setdefault", key, fallback).value();
}
void DictProxy::clear() const { call<schema::Dict>(ref_, "clear"); }
ValueMap DictProxy::copy() const {
  Value copied = call<schema::Dict>(ref_, "copy").value();
  return copied.is_map() ? std::move(copied.as_map()) : ValueMap();
}
Value DictProxy::increment(const Value& key, const Value& delta) const {
  return call<schema::Dict>(ref_, "increment", key, delta).value();
}

DictProxy::CasResult DictProxy::compare_and_set(const Value& key, const std::optional<Value>& expected,
                                                const Value& value) const {
  rpc::DynamicCall request(ref_, capnp::Schema::from<schema::Dict>(), "compareAndSet");
  request.set("key", key).set("expectMissing", !expected).set("value", value);
  if (expected) request.set("expected", *expected);
  rpc::Reply reply(std::move(request));
  CasResult result{reply["swapped"].as<bool>(), std::nullopt};
  if (reply["present"].as<bool>()) result.current = rpc::value_of(reply["current"]);
  return result;
}

std::vector<std::optional<Value>> DictProxy::get_many(const std::vector<Value>& keys) const {
  auto reply = call<schema::Dict>(ref_, "getMany", keys);
  auto values = reply["values"].as<capnp::List<schema::Value>>();
  auto present = reply["present"].as<capnp::List<bool>>();
  std::vector<std::optional<Value>> result;
  result.reserve(values.size());
  for (unsigned i = 0; i < values.size(); ++i) {
    result.push_back(i < present.size() && present[i] ? std::optional(Value::from_capnp(values[i])) : std::nullopt);
  }
  return result;
}

void DictProxy::set_many(const ValueMap& items) const { call<schema::Dict>(ref_, "setMany", items); }

// ---- ListProxy ---------------------------------------------------------------------

Value ListProxy::operator[](int64_t index) const { return call<schema::SharedList>(ref_, "getItem", index).value(); }
void ListProxy::set(int64_t index, const Value& value) const {
  call<schema::SharedList>(ref_, "setItem", index, value);
}
void ListProxy::del(int64_t index) const { call<schema::SharedList>(ref_, "delItem", index); }
Value::List ListProxy::slice(const Slice& slice) const {
  return rpc::values_of(call<schema::SharedList>(ref_, "getSlice", slice).only());
}
void ListProxy::set_slice(const Slice& slice, const Value::List& values) const {
  call<schema::SharedList>(ref_, "setSlice", slice, values);
}
void ListProxy::del_slice(const Slice& slice) const { call<schema::SharedList>(ref_, "delSlice", slice); }
void ListProxy::append(const Value& value) const { call<schema::SharedList>(ref_, "append", value); }
void ListProxy::extend(const Value::List& values) const { call<schema::SharedList>(ref_, "extend", values); }
void ListProxy::insert(int64_t index, const Value& value) const {
  call<schema::SharedList>(ref_, "insert", index, value);
}
Value ListProxy::pop() const { return call<schema::SharedList>(ref_, "pop").value(); }
Value ListProxy::pop(int64_t index) const { return call<schema::SharedList>(ref_, "pop", index).value(); }
void ListProxy::remove(const Value& value) const { call<schema::SharedList>(ref_, "remove", value); }
int64_t ListProxy::index(const Value& value, int64_t start, std::optional<int64_t> stop) const {
  return call<schema::SharedList>(ref_, "index", value, start, stop).only().as<int64_t>();
}
size_t ListProxy::count(const Value& value) const {
  return call<schema::SharedList>(ref_, "count", value).only().as<uint64_t>();
}
bool ListProxy::contains(const Value& value) const {
  return call<schema::SharedList>(ref_, "contains", value).only().as<bool>();
}
void ListProxy::reverse() const { call<schema::SharedList>(ref_, "reverse"); }
void ListProxy::sort(bool reverse) const { call<schema::SharedList>(ref_, "sort", reverse); }
size_t ListProxy::size() const { return call<schema::SharedList>(ref_, "len").only().as<uint64_t>(); }
Value::List ListProxy::copy() const { return rpc::values_of(call<schema::SharedList>(ref_, "copy").only()); }
void ListProxy::multiply(int64_t times) const { call<schema::SharedList>(ref_, "multiply", times); }

// ---- NamespaceProxy ----------------------------------------------------------------

Value NamespaceProxy::get(const std::string& name) const {
  return call<schema::Namespace>(ref_, "getAttr", name).value();
}
void NamespaceProxy::set(const std::string& name, const Value& value) const {
  call<schema::Namespace>(ref_, "setAttr", name, value);
}
void NamespaceProxy::del(const std::string& name) const { call<schema::Namespace>(ref_, "delAttr", name); }
std::vector<std::pair<std::string, Value>> NamespaceProxy::items() const {
  std::vector<std::pair<std::string, Value>> result;
  for (auto& [name, value] : rpc::entries_of(call<schema::Namespace>(ref_, "items").only())) {
    result.emplace_back(name.as_text(), std::move(value));
  }
  return result;
}

// ---- ValueProxy, ArrayProxy --------------------------------------------------------

Value ValueProxy::get() const { return call<schema::ValueCell>(ref_, "get").value(); }
void ValueProxy::set(const Value& value) const { call<schema::ValueCell>(ref_, "set", value); }
std::string ValueProxy::typecode() const {
  return call<schema::ValueCell>(ref_, "typecode").only().as<capnp::Text>().cStr();
}
Value ValueProxy::increment(const Value& delta) const {
  return call<schema::ValueCell>(ref_, "increment", delta).value();
}

size_t ArrayProxy::size() const { return call<schema::Array>(ref_, "len").only().as<uint64_t>(); }
Value ArrayProxy::operator[](int64_t index) const { return call<schema::Array>(ref_, "getItem", index).value(); }
void ArrayProxy::set(int64_t index, const Value& value) const { call<schema::Array>(ref_, "setItem", index, value); }
Value::List ArrayProxy::slice(const Slice& slice) const {
  return rpc::values_of(call<schema::Array>(ref_, "getSlice", slice).only());
}
void ArrayProxy::set_slice(const Slice& slice, const Value::List& values) const {
  call<schema::Array>(ref_, "setSlice", slice, values);
}
std::string ArrayProxy::typecode() const {
  return call<schema::Array>(ref_, "typecode").only().as<capnp::Text>().cStr();
}

// ---- Queues ------------------------------------------------------------------------

void QueueProxy::put(const Value& value, bool block, Timeout timeout) const {
  call<schema::Queue>(ref_, "put", value, block, timeout);
}
Value QueueProxy::get(bool block, Timeout timeout) const {
  return call<schema::Queue>(ref_, "get", block, timeout).value();
}
size_t QueueProxy::qsize() const { return call<schema::Queue>(ref_, "qsize").only().as<uint64_t>(); }
bool QueueProxy::empty() const { return call<schema::Queue>(ref_, "empty").only().as<bool>(); }
bool QueueProxy::full() const { return call<schema::Queue>(ref_, "full").only().as<bool>(); }

void JoinableQueueProxy::task_done() const { call<schema::JoinableQueue>(ref_, "taskDone"); }
bool JoinableQueueProxy::join(Timeout timeout) const {
  return call<schema::JoinableQueue>(ref_, "join", timeout).only().as<bool>();
}

// ---- Locks, semaphores, events, conditions, barriers -------------------------------

bool LockProxy::acquire(bool blocking, Timeout timeout) const {
  return call<schema::Lock>(ref_, "acquire", blocking, timeout).only().as<bool>();
}
void LockProxy::release() const { call<schema::Lock>(ref_, "release"); }
bool LockProxy::locked() const { return call<schema::Lock>(ref_, "locked").only().as<bool>(); }

bool SemaphoreProxy::acquire(bool blocking, Timeout timeout) const {
  return call<schema::Semaphore>(ref_, "acquire", blocking, timeout).only().as<bool>();
}
void SemaphoreProxy::release(uint32_t n) const { call<schema::Semaphore>(ref_, "release", n); }
int64_t SemaphoreProxy::value() const { return call<schema::Semaphore>(ref_, "value").only().as<int64_t>(); }

void EventProxy::set() const { call<schema::Event>(ref_, "set"); }
void EventProxy::clear() const { call<schema::Event>(ref_, "clear"); }
bool EventProxy::is_set() const { return call<schema::Event>(ref_, "isSet").only().as<bool>(); }
bool EventProxy::wait(Timeout timeout) const { return call<schema::Event>(ref_, "wait", timeout).only().as<bool>(); }

bool ConditionProxy::acquire(bool blocking, Timeout timeout) const {
  return call<schema::Condition>(ref_, "acquire", blocking, timeout).only().as<bool>();
}
void ConditionProxy::release() const { call<schema::Condition>(ref_, "release"); }
bool ConditionProxy::wait(Timeout timeout) const {
  return call<schema::Condition>(ref_, "wait", timeout).only().as<bool>();
}

bool ConditionProxy::wait_for(const std::function<bool()>& predicate, Timeout timeout) const {
  // Python's Condition.wait_for: recheck after every wake, until the deadline.
  using Clock = std::chrono::steady_clock;
  rpc::wire_timeout(timeout);  // a negative one is refused before anything waits
  std::optional<Clock::time_point> deadline;
  if (timeout) deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(*timeout);
  bool result = predicate();
  while (!result) {
    Timeout remaining;
    if (deadline) {
      auto left = std::chrono::duration<double>(*deadline - Clock::now());
      if (left.count() <= 0) break;
      remaining = left;
    }
    wait(remaining);
    result = predicate();
  }
  return result;
}

void ConditionProxy::notify(uint32_t n) const { call<schema::Condition>(ref_, "notify", n); }
void ConditionProxy::notify_all() const { call<schema::Condition>(ref_, "notifyAll"); }

uint32_t BarrierProxy::wait(Timeout timeout) const {
  return call<schema::Barrier>(ref_, "wait", timeout).only().as<uint32_t>();
}
void BarrierProxy::reset() const { call<schema::Barrier>(ref_, "reset"); }
void BarrierProxy::abort() const { call<schema::Barrier>(ref_, "abort"); }
uint32_t BarrierProxy::parties() const { return call<schema::Barrier>(ref_, "parties").only().as<uint32_t>(); }
uint32_t BarrierProxy::n_waiting() const { return call<schema::Barrier>(ref_, "nWaiting").only().as<uint32_t>(); }
bool BarrierProxy::broken() const { return call<schema::Barrier>(ref_, "broken").only().as<bool>(); }

Value DynamicProxy::call(std::string_view method, std::vector<Value> args, const ValueMap& kwargs) const {
  auto reply = rpc::call<schema::Dynamic>(ref_, "call", std::string(method), args, kwargs);
  std::string shared_as(reply["sharedAs"].as<capnp::Text>().cStr());
  if (!shared_as.empty()) {
    // The object is made and dropped again, unclaimed objects expire: nothing is held.
    throw TypeError(std::string(method) + "() returns a shared " + shared_as +
                    " object: call it with call_for_object()");
  }
  return rpc::value_of(reply["result"]);
}

DynamicProxy DynamicProxy::call_for_object(std::string_view method, std::vector<Value> args,
                                           const ValueMap& kwargs) const {
  auto reply = rpc::call<schema::Dynamic>(ref_, "call", std::string(method), args, kwargs);
  std::string shared_as(reply["sharedAs"].as<capnp::Text>().cStr());
  if (shared_as.empty()) throw TypeError(std::string(method) + "() returns a Value: call it with call()");
  Value claim = rpc::value_of(reply["result"]);
  return DynamicProxy(rpc::create_user_object(ref_->endpoint, shared_as, {}, capnp::typeId<schema::Dynamic>(), {},
                                              ValueMap{{"#claim", claim}}));
}
std::vector<std::string> DynamicProxy::exposed() const {
  auto reply = rpc::call<schema::Dynamic>(ref_, "exposed");  // the names live in the reply
  std::vector<std::string> names;
  for (auto name : reply.only().as<capnp::List<capnp::Text>>()) names.emplace_back(name.cStr());
  return names;
}

}  // namespace xproc
