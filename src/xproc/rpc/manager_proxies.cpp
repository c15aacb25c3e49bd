// The proxies' methods: each builds one request on this thread's connection and waits
// for the reply (rpc::call_manager).
#include "xproc/manager_proxies.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>

#include "xproc/errors.h"
#include "xproc/rpc/client_connection.h"
#include "xproc/rpc/value_ops.h"

namespace xproc {
namespace {

// Sends build(capability) for `ref`'s object and waits for the reply.
template <typename Interface, typename Build>
auto invoke(const std::shared_ptr<const rpc::ObjectRef>& ref, Build&& build) {
  return rpc::call_manager(*ref->endpoint, [&](rpc::ClientConnection& connection) {
    auto capability = connection.object(ref).castAs<Interface>();
    return build(capability);
  });
}

// multiprocessing's timeout: none waits forever (-1 on the wire); negative means 0.
double timeout_seconds(const Timeout& timeout) { return timeout ? std::max(0.0, timeout->count()) : -1.0; }

// Tells this thread's lock holdings apart from other threads' (an rlock is per thread).
uint64_t owner_tag() {
  thread_local const auto tid = static_cast<uint64_t>(::syscall(SYS_gettid));
  return tid;
}

void write_slice(schema::Slice::Builder builder, const Slice& slice) {
  builder.setHasStart(slice.start.has_value());
  builder.setStart(slice.start.value_or(0));
  builder.setHasStop(slice.stop.has_value());
  builder.setStop(slice.stop.value_or(0));
  builder.setStep(slice.step);
}

}  // namespace

// ---- Proxy -------------------------------------------------------------------------

uint64_t Proxy::id() const noexcept { return ref_->id; }

Value Proxy::as_value() const { return Value(ProxyRef{rpc::instance_of(*ref_->endpoint), ref_->id, nullptr}); }

std::string Proxy::repr() const {
  auto reply = invoke<schema::Object>(ref_, [](auto& o) { return o.reprRequest().send(); });
  return reply.getText().cStr();
}

capnp::Capability::Client Proxy::capability() const {
  return rpc::connection_for(*ref_->endpoint, rpc::Transport::kEventLoop).object(ref_);
}

// ---- DictProxy ---------------------------------------------------------------------

Value DictProxy::operator[](const Value& key) const {
  auto reply = invoke<schema::Dict>(ref_, [&](auto& d) {
    auto request = d.getItemRequest();
    key.to_capnp(request.initKey());
    return request.send();
  });
  return Value::from_capnp(reply.getValue());
}

Value DictProxy::get(const Value& key, const Value& fallback) const {
  auto reply = invoke<schema::Dict>(ref_, [&](auto& d) {
    auto request = d.getRequest();
    key.to_capnp(request.initKey());
    fallback.to_capnp(request.initDefault());
    return request.send();
  });
  return Value::from_capnp(reply.getValue());
}

void DictProxy::set(const Value& key, const Value& value) const {
  invoke<schema::Dict>(ref_, [&](auto& d) {
    auto request = d.setItemRequest();
    key.to_capnp(request.initKey());
    value.to_capnp(request.initValue());
    return request.send();
  });
}

void DictProxy::del(const Value& key) const {
  invoke<schema::Dict>(ref_, [&](auto& d) {
    auto request = d.delItemRequest();
    key.to_capnp(request.initKey());
    return request.send();
  });
}

bool DictProxy::contains(const Value& key) const {
  return invoke<schema::Dict>(ref_,
                              [&](auto& d) {
                                auto request = d.containsRequest();
                                key.to_capnp(request.initKey());
                                return request.send();
                              })
      .getResult();
}

size_t DictProxy::size() const {
  return invoke<schema::Dict>(ref_, [](auto& d) { return d.lenRequest().send(); }).getLength();
}

std::vector<Value> DictProxy::keys() const {
  return rpc::read_values(invoke<schema::Dict>(ref_, [](auto& d) { return d.keysRequest().send(); }).getKeys());
}

std::vector<Value> DictProxy::values() const {
  return rpc::read_values(invoke<schema::Dict>(ref_, [](auto& d) { return d.valuesRequest().send(); }).getValues());
}

std::vector<std::pair<Value, Value>> DictProxy::items() const {
  auto reply = invoke<schema::Dict>(ref_, [](auto& d) { return d.itemsRequest().send(); });
  std::vector<std::pair<Value, Value>> result;
  result.reserve(reply.getItems().size());
  for (auto item : reply.getItems())
    result.emplace_back(Value::from_capnp(item.getKey()), Value::from_capnp(item.getValue()));
  return result;
}

void DictProxy::update(const ValueMap& items) const {
  invoke<schema::Dict>(ref_, [&](auto& d) {
    auto request = d.updateRequest();
    rpc::write_entries(request.initItems(static_cast<unsigned>(items.size())), items);
    return request.send();
  });
}

Value DictProxy::pop(const Value& key) const {
  auto reply = invoke<schema::Dict>(ref_, [&](auto& d) {
    auto request = d.popRequest();
    key.to_capnp(request.initKey());
    return request.send();
  });
  return Value::from_capnp(reply.getValue());
}

Value DictProxy::pop(const Value& key, const Value& fallback) const {
  auto reply = invoke<schema::Dict>(ref_, [&](auto& d) {
    auto request = d.popRequest();
    key.to_capnp(request.initKey());
    fallback.to_capnp(request.initDefault());
    request.setHasDefault(true);
    return request.send();
  });
  return Value::from_capnp(reply.getValue());
}

std::pair<Value, Value> DictProxy::popitem() const {
  auto reply = invoke<schema::Dict>(ref_, [](auto& d) { return d.popitemRequest().send(); });
  return {Value::from_capnp(reply.getKey()), Value::from_capnp(reply.getValue())};
}

Value DictProxy::setdefault(const Value& key, const Value& fallback) const {
  auto reply = invoke<schema::Dict>(ref_, [&](auto& d) {
    auto request = d.setdefaultRequest();
    key.to_capnp(request.initKey());
    fallback.to_capnp(request.initDefault());
    return request.send();
  });
  return Value::from_capnp(reply.getValue());
}

void DictProxy::clear() const {
  invoke<schema::Dict>(ref_, [](auto& d) { return d.clearRequest().send(); });
}

ValueMap DictProxy::copy() const {
  auto reply = invoke<schema::Dict>(ref_, [](auto& d) { return d.copyRequest().send(); });
  Value copied = Value::from_capnp(reply.getDict());
  return copied.is_map() ? std::move(copied.as_map()) : ValueMap();
}

Value DictProxy::increment(const Value& key, const Value& delta) const {
  auto reply = invoke<schema::Dict>(ref_, [&](auto& d) {
    auto request = d.incrementRequest();
    key.to_capnp(request.initKey());
    delta.to_capnp(request.initDelta());
    return request.send();
  });
  return Value::from_capnp(reply.getValue());
}

DictProxy::CasResult DictProxy::compare_and_set(const Value& key, const std::optional<Value>& expected,
                                                const Value& value) const {
  auto reply = invoke<schema::Dict>(ref_, [&](auto& d) {
    auto request = d.compareAndSetRequest();
    key.to_capnp(request.initKey());
    if (expected) expected->to_capnp(request.initExpected());
    request.setExpectMissing(!expected);
    value.to_capnp(request.initValue());
    return request.send();
  });
  CasResult result{reply.getSwapped(), std::nullopt};
  if (reply.getPresent()) result.current = Value::from_capnp(reply.getCurrent());
  return result;
}

std::vector<std::optional<Value>> DictProxy::get_many(const std::vector<Value>& keys) const {
  auto reply = invoke<schema::Dict>(ref_, [&](auto& d) {
    auto request = d.getManyRequest();
    rpc::write_values(request.initKeys(static_cast<unsigned>(keys.size())), keys);
    return request.send();
  });
  std::vector<std::optional<Value>> result;
  auto values = reply.getValues();
  auto present = reply.getPresent();
  result.reserve(values.size());
  for (unsigned i = 0; i < values.size(); ++i) {
    if (present[i])
      result.emplace_back(Value::from_capnp(values[i]));
    else
      result.emplace_back(std::nullopt);
  }
  return result;
}

void DictProxy::set_many(const ValueMap& items) const {
  invoke<schema::Dict>(ref_, [&](auto& d) {
    auto request = d.setManyRequest();
    rpc::write_entries(request.initItems(static_cast<unsigned>(items.size())), items);
    return request.send();
  });
}

schema::Dict::Client DictProxy::client() const { return capability().castAs<schema::Dict>(); }

// ---- ListProxy ---------------------------------------------------------------------

Value ListProxy::operator[](int64_t index) const {
  auto reply = invoke<schema::SharedList>(ref_, [&](auto& l) {
    auto request = l.getItemRequest();
    request.setIndex(index);
    return request.send();
  });
  return Value::from_capnp(reply.getValue());
}

void ListProxy::set(int64_t index, const Value& value) const {
  invoke<schema::SharedList>(ref_, [&](auto& l) {
    auto request = l.setItemRequest();
    request.setIndex(index);
    value.to_capnp(request.initValue());
    return request.send();
  });
}

void ListProxy::del(int64_t index) const {
  invoke<schema::SharedList>(ref_, [&](auto& l) {
    auto request = l.delItemRequest();
    request.setIndex(index);
    return request.send();
  });
}

Value::List ListProxy::slice(const Slice& slice) const {
  auto reply = invoke<schema::SharedList>(ref_, [&](auto& l) {
    auto request = l.getSliceRequest();
    write_slice(request.initSlice(), slice);
    return request.send();
  });
  return rpc::read_values(reply.getValues());
}

void ListProxy::set_slice(const Slice& slice, const Value::List& values) const {
  invoke<schema::SharedList>(ref_, [&](auto& l) {
    auto request = l.setSliceRequest();
    write_slice(request.initSlice(), slice);
    rpc::write_values(request.initValues(static_cast<unsigned>(values.size())), values);
    return request.send();
  });
}

void ListProxy::del_slice(const Slice& slice) const {
  invoke<schema::SharedList>(ref_, [&](auto& l) {
    auto request = l.delSliceRequest();
    write_slice(request.initSlice(), slice);
    return request.send();
  });
}

void ListProxy::append(const Value& value) const {
  invoke<schema::SharedList>(ref_, [&](auto& l) {
    auto request = l.appendRequest();
    value.to_capnp(request.initValue());
    return request.send();
  });
}

void ListProxy::extend(const Value::List& values) const {
  invoke<schema::SharedList>(ref_, [&](auto& l) {
    auto request = l.extendRequest();
    rpc::write_values(request.initValues(static_cast<unsigned>(values.size())), values);
    return request.send();
  });
}

void ListProxy::insert(int64_t index, const Value& value) const {
  invoke<schema::SharedList>(ref_, [&](auto& l) {
    auto request = l.insertRequest();
    request.setIndex(index);
    value.to_capnp(request.initValue());
    return request.send();
  });
}

Value ListProxy::pop() const {
  auto reply = invoke<schema::SharedList>(ref_, [](auto& l) { return l.popRequest().send(); });
  return Value::from_capnp(reply.getValue());
}

Value ListProxy::pop(int64_t index) const {
  auto reply = invoke<schema::SharedList>(ref_, [&](auto& l) {
    auto request = l.popRequest();
    request.setIndex(index);
    request.setHasIndex(true);
    return request.send();
  });
  return Value::from_capnp(reply.getValue());
}

void ListProxy::remove(const Value& value) const {
  invoke<schema::SharedList>(ref_, [&](auto& l) {
    auto request = l.removeRequest();
    value.to_capnp(request.initValue());
    return request.send();
  });
}

int64_t ListProxy::index(const Value& value, int64_t start, std::optional<int64_t> stop) const {
  return invoke<schema::SharedList>(ref_,
                                    [&](auto& l) {
                                      auto request = l.indexRequest();
                                      value.to_capnp(request.initValue());
                                      request.setStart(start);
                                      request.setHasStop(stop.has_value());
                                      request.setStop(stop.value_or(0));
                                      return request.send();
                                    })
      .getIndex();
}

size_t ListProxy::count(const Value& value) const {
  return invoke<schema::SharedList>(ref_,
                                    [&](auto& l) {
                                      auto request = l.countRequest();
                                      value.to_capnp(request.initValue());
                                      return request.send();
                                    })
      .getCount();
}

bool ListProxy::contains(const Value& value) const {
  return invoke<schema::SharedList>(ref_,
                                    [&](auto& l) {
                                      auto request = l.containsRequest();
                                      value.to_capnp(request.initValue());
                                      return request.send();
                                    })
      .getResult();
}

void ListProxy::reverse() const {
  invoke<schema::SharedList>(ref_, [](auto& l) { return l.reverseRequest().send(); });
}

void ListProxy::sort(bool reverse) const {
  invoke<schema::SharedList>(ref_, [&](auto& l) {
    auto request = l.sortRequest();
    request.setReverse(reverse);
    return request.send();
  });
}

size_t ListProxy::size() const {
  return invoke<schema::SharedList>(ref_, [](auto& l) { return l.lenRequest().send(); }).getLength();
}

Value::List ListProxy::copy() const {
  return rpc::read_values(invoke<schema::SharedList>(ref_, [](auto& l) { return l.copyRequest().send(); }).getList());
}

void ListProxy::multiply(int64_t times) const {
  invoke<schema::SharedList>(ref_, [&](auto& l) {
    auto request = l.multiplyRequest();
    request.setTimes(times);
    return request.send();
  });
}

schema::SharedList::Client ListProxy::client() const { return capability().castAs<schema::SharedList>(); }

// ---- NamespaceProxy ----------------------------------------------------------------

Value NamespaceProxy::get(const std::string& name) const {
  auto reply = invoke<schema::Namespace>(ref_, [&](auto& n) {
    auto request = n.getAttrRequest();
    request.setAttribute(name);
    return request.send();
  });
  return Value::from_capnp(reply.getValue());
}

void NamespaceProxy::set(const std::string& name, const Value& value) const {
  invoke<schema::Namespace>(ref_, [&](auto& n) {
    auto request = n.setAttrRequest();
    request.setAttribute(name);
    value.to_capnp(request.initValue());
    return request.send();
  });
}

void NamespaceProxy::del(const std::string& name) const {
  invoke<schema::Namespace>(ref_, [&](auto& n) {
    auto request = n.delAttrRequest();
    request.setAttribute(name);
    return request.send();
  });
}

std::vector<std::pair<std::string, Value>> NamespaceProxy::items() const {
  auto reply = invoke<schema::Namespace>(ref_, [](auto& n) { return n.itemsRequest().send(); });
  std::vector<std::pair<std::string, Value>> result;
  for (auto item : reply.getItems()) {
    result.emplace_back(Value::from_capnp(item.getKey()).as_text(), Value::from_capnp(item.getValue()));
  }
  return result;
}

schema::Namespace::Client NamespaceProxy::client() const { return capability().castAs<schema::Namespace>(); }

// ---- ValueProxy, ArrayProxy --------------------------------------------------------

Value ValueProxy::get() const {
  return Value::from_capnp(invoke<schema::ValueCell>(ref_, [](auto& v) { return v.getRequest().send(); }).getValue());
}

void ValueProxy::set(const Value& value) const {
  invoke<schema::ValueCell>(ref_, [&](auto& v) {
    auto request = v.setRequest();
    value.to_capnp(request.initValue());
    return request.send();
  });
}

std::string ValueProxy::typecode() const {
  return invoke<schema::ValueCell>(ref_, [](auto& v) { return v.typecodeRequest().send(); }).getTypecode().cStr();
}

Value ValueProxy::increment(const Value& delta) const {
  auto reply = invoke<schema::ValueCell>(ref_, [&](auto& v) {
    auto request = v.incrementRequest();
    delta.to_capnp(request.initDelta());
    return request.send();
  });
  return Value::from_capnp(reply.getValue());
}

schema::ValueCell::Client ValueProxy::client() const { return capability().castAs<schema::ValueCell>(); }

size_t ArrayProxy::size() const {
  return invoke<schema::Array>(ref_, [](auto& a) { return a.lenRequest().send(); }).getLength();
}

Value ArrayProxy::operator[](int64_t index) const {
  auto reply = invoke<schema::Array>(ref_, [&](auto& a) {
    auto request = a.getItemRequest();
    request.setIndex(index);
    return request.send();
  });
  return Value::from_capnp(reply.getValue());
}

void ArrayProxy::set(int64_t index, const Value& value) const {
  invoke<schema::Array>(ref_, [&](auto& a) {
    auto request = a.setItemRequest();
    request.setIndex(index);
    value.to_capnp(request.initValue());
    return request.send();
  });
}

Value::List ArrayProxy::slice(const Slice& slice) const {
  auto reply = invoke<schema::Array>(ref_, [&](auto& a) {
    auto request = a.getSliceRequest();
    write_slice(request.initSlice(), slice);
    return request.send();
  });
  return rpc::read_values(reply.getValues());
}

void ArrayProxy::set_slice(const Slice& slice, const Value::List& values) const {
  invoke<schema::Array>(ref_, [&](auto& a) {
    auto request = a.setSliceRequest();
    write_slice(request.initSlice(), slice);
    rpc::write_values(request.initValues(static_cast<unsigned>(values.size())), values);
    return request.send();
  });
}

std::string ArrayProxy::typecode() const {
  return invoke<schema::Array>(ref_, [](auto& a) { return a.typecodeRequest().send(); }).getTypecode().cStr();
}

schema::Array::Client ArrayProxy::client() const { return capability().castAs<schema::Array>(); }

// ---- Queues ------------------------------------------------------------------------

void QueueProxy::put(const Value& value, bool block, Timeout timeout) const {
  invoke<schema::Queue>(ref_, [&](auto& q) {
    auto request = q.putRequest();
    value.to_capnp(request.initValue());
    request.setBlock(block);
    request.setTimeout(timeout_seconds(timeout));
    return request.send();
  });
}

Value QueueProxy::get(bool block, Timeout timeout) const {
  auto reply = invoke<schema::Queue>(ref_, [&](auto& q) {
    auto request = q.getRequest();
    request.setBlock(block);
    request.setTimeout(timeout_seconds(timeout));
    return request.send();
  });
  return Value::from_capnp(reply.getValue());
}

size_t QueueProxy::qsize() const {
  return invoke<schema::Queue>(ref_, [](auto& q) { return q.qsizeRequest().send(); }).getSize();
}

bool QueueProxy::empty() const {
  return invoke<schema::Queue>(ref_, [](auto& q) { return q.emptyRequest().send(); }).getResult();
}

bool QueueProxy::full() const {
  return invoke<schema::Queue>(ref_, [](auto& q) { return q.fullRequest().send(); }).getResult();
}

schema::Queue::Client QueueProxy::client() const { return capability().castAs<schema::Queue>(); }

void JoinableQueueProxy::task_done() const {
  invoke<schema::JoinableQueue>(ref_, [](auto& q) { return q.taskDoneRequest().send(); });
}

bool JoinableQueueProxy::join(Timeout timeout) const {
  return invoke<schema::JoinableQueue>(ref_,
                                       [&](auto& q) {
                                         auto request = q.joinRequest();
                                         request.setTimeout(timeout_seconds(timeout));
                                         return request.send();
                                       })
      .getDone();
}

schema::JoinableQueue::Client JoinableQueueProxy::client() const {
  return capability().castAs<schema::JoinableQueue>();
}

// ---- Locks, semaphores, events -----------------------------------------------------

bool LockProxy::acquire(bool blocking, Timeout timeout) const {
  return invoke<schema::Lock>(ref_,
                              [&](auto& l) {
                                auto request = l.acquireRequest();
                                request.setBlocking(blocking);
                                request.setTimeout(timeout_seconds(timeout));
                                request.setOwner(owner_tag());
                                return request.send();
                              })
      .getAcquired();
}

void LockProxy::release() const {
  invoke<schema::Lock>(ref_, [&](auto& l) {
    auto request = l.releaseRequest();
    request.setOwner(owner_tag());
    return request.send();
  });
}

bool LockProxy::locked() const {
  return invoke<schema::Lock>(ref_, [](auto& l) { return l.lockedRequest().send(); }).getResult();
}

schema::Lock::Client LockProxy::client() const { return capability().castAs<schema::Lock>(); }

bool SemaphoreProxy::acquire(bool blocking, Timeout timeout) const {
  return invoke<schema::Semaphore>(ref_,
                                   [&](auto& s) {
                                     auto request = s.acquireRequest();
                                     request.setBlocking(blocking);
                                     request.setTimeout(timeout_seconds(timeout));
                                     return request.send();
                                   })
      .getAcquired();
}

void SemaphoreProxy::release(uint32_t n) const {
  invoke<schema::Semaphore>(ref_, [&](auto& s) {
    auto request = s.releaseRequest();
    request.setN(n);
    return request.send();
  });
}

int64_t SemaphoreProxy::value() const {
  return invoke<schema::Semaphore>(ref_, [](auto& s) { return s.valueRequest().send(); }).getValue();
}

schema::Semaphore::Client SemaphoreProxy::client() const { return capability().castAs<schema::Semaphore>(); }

void EventProxy::set() const {
  invoke<schema::Event>(ref_, [](auto& e) { return e.setRequest().send(); });
}

void EventProxy::clear() const {
  invoke<schema::Event>(ref_, [](auto& e) { return e.clearRequest().send(); });
}

bool EventProxy::is_set() const {
  return invoke<schema::Event>(ref_, [](auto& e) { return e.isSetRequest().send(); }).getResult();
}

bool EventProxy::wait(Timeout timeout) const {
  return invoke<schema::Event>(ref_,
                               [&](auto& e) {
                                 auto request = e.waitRequest();
                                 request.setTimeout(timeout_seconds(timeout));
                                 return request.send();
                               })
      .getResult();
}

schema::Event::Client EventProxy::client() const { return capability().castAs<schema::Event>(); }

// ---- ConditionProxy, BarrierProxy --------------------------------------------------

bool ConditionProxy::acquire(bool blocking, Timeout timeout) const {
  return invoke<schema::Condition>(ref_,
                                   [&](auto& c) {
                                     auto request = c.acquireRequest();
                                     request.setBlocking(blocking);
                                     request.setTimeout(timeout_seconds(timeout));
                                     request.setOwner(owner_tag());
                                     return request.send();
                                   })
      .getAcquired();
}

void ConditionProxy::release() const {
  invoke<schema::Condition>(ref_, [&](auto& c) {
    auto request = c.releaseRequest();
    request.setOwner(owner_tag());
    return request.send();
  });
}

bool ConditionProxy::wait(Timeout timeout) const {
  return invoke<schema::Condition>(ref_,
                                   [&](auto& c) {
                                     auto request = c.waitRequest();
                                     request.setTimeout(timeout_seconds(timeout));
                                     request.setOwner(owner_tag());
                                     return request.send();
                                   })
      .getNotified();
}

bool ConditionProxy::wait_for(const std::function<bool()>& predicate, Timeout timeout) const {
  // Python's Condition.wait_for: recheck after every wake, until the deadline.
  using Clock = std::chrono::steady_clock;
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

void ConditionProxy::notify(uint32_t n) const {
  invoke<schema::Condition>(ref_, [&](auto& c) {
    auto request = c.notifyRequest();
    request.setN(n);
    request.setOwner(owner_tag());
    return request.send();
  });
}

void ConditionProxy::notify_all() const {
  invoke<schema::Condition>(ref_, [&](auto& c) {
    auto request = c.notifyAllRequest();
    request.setOwner(owner_tag());
    return request.send();
  });
}

schema::Condition::Client ConditionProxy::client() const { return capability().castAs<schema::Condition>(); }

uint32_t BarrierProxy::wait(Timeout timeout) const {
  return invoke<schema::Barrier>(ref_,
                                 [&](auto& b) {
                                   auto request = b.waitRequest();
                                   request.setTimeout(timeout_seconds(timeout));
                                   return request.send();
                                 })
      .getIndex();
}

void BarrierProxy::reset() const {
  invoke<schema::Barrier>(ref_, [](auto& b) { return b.resetRequest().send(); });
}

void BarrierProxy::abort() const {
  invoke<schema::Barrier>(ref_, [](auto& b) { return b.abortRequest().send(); });
}

uint32_t BarrierProxy::parties() const {
  return invoke<schema::Barrier>(ref_, [](auto& b) { return b.partiesRequest().send(); }).getParties();
}

uint32_t BarrierProxy::n_waiting() const {
  return invoke<schema::Barrier>(ref_, [](auto& b) { return b.nWaitingRequest().send(); }).getWaiting();
}

bool BarrierProxy::broken() const {
  return invoke<schema::Barrier>(ref_, [](auto& b) { return b.brokenRequest().send(); }).getResult();
}

schema::Barrier::Client BarrierProxy::client() const { return capability().castAs<schema::Barrier>(); }

}  // namespace xproc
