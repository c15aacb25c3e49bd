// Registry, sessions, wait lists: see server_core.h.
#include "xproc/rpc/server_core.h"

#include <cmath>

#include "xproc/errors.h"

namespace xproc::rpc {
namespace {
// The server is single-threaded.
uint64_t g_calls = 0;
kj::Own<kj::PromiseFulfiller<void>> g_next_call;
}  // namespace

uint64_t calls_dispatched() noexcept { return g_calls; }

void count_call() noexcept {
  ++g_calls;
  if (g_next_call) {
    g_next_call->fulfill();
    g_next_call = nullptr;
  }
}

kj::Promise<void> next_call() {
  auto paf = kj::newPromiseAndFulfiller<void>();
  g_next_call = kj::mv(paf.fulfiller);
  return kj::mv(paf.promise);
}

SharedObject::SharedObject(Runtime& runtime, schema::Kind kind, uint64_t interface_id)
    : runtime_(runtime), registry_(runtime.registry), kind_(kind), interface_id_(interface_id) {
  id_ = registry_.add(*this);
}

SharedObject::~SharedObject() { registry_.remove(id_); }

Registry::~Registry() {
  // Containers holding proxies may form cycles that no reference count ends: empty every
  // live object first. Emptying one may end others, so each is looked up again, and held
  // while it empties (it may hold the last reference to itself).
  std::vector<uint64_t> ids;
  ids.reserve(objects_.size());
  for (const auto& [id, object] : objects_) ids.push_back(id);
  for (uint64_t id : ids) {
    if (SharedObject* object = find(id)) {
      kj::Own<SharedObject> held = kj::addRef(*object);
      held->drop_contents();
    }
  }
  // The objects we own leave the id map as they go, so drop them while it exists.
  pinned_.clear();
  names_.clear();
}

Value Runtime::read(schema::Value::Reader reader) const {
  return Value::from_capnp(reader, {}, [this](ProxyRef& proxy) {
    if (proxy.manager != instance) {
      throw ValueError("a proxy of another manager cannot be stored here (instance " + std::to_string(proxy.manager) +
                       ", this server is " + std::to_string(instance) + ")");
    }
    SharedObject* object = registry.find(proxy.id);
    if (object == nullptr) throw KeyError("no object with id " + std::to_string(proxy.id) + " (it is gone)");
    proxy.keep_alive = std::make_shared<kj::Own<SharedObject>>(kj::addRef(*object));
  });
}

std::vector<Value> Runtime::read(capnp::List<schema::Value>::Reader values) const {
  std::vector<Value> result;
  result.reserve(values.size());
  for (auto v : values) result.push_back(read(v));
  return result;
}

uint64_t Registry::add(SharedObject& object) {
  uint64_t id = next_id_++;
  objects_.emplace(id, &object);
  return id;
}

void Registry::remove(uint64_t id) noexcept { objects_.erase(id); }

SharedObject* Registry::find(uint64_t id) const {
  auto it = objects_.find(id);
  return it == objects_.end() ? nullptr : it->second;
}

SharedObject* Registry::find_name(const std::string& name) {
  auto it = names_.find(name);
  return it == names_.end() ? nullptr : it->second.get();
}

void Registry::bind_name(const std::string& name, kj::Own<SharedObject> object) {
  names_.insert_or_assign(name, kj::mv(object));
}

kj::Own<SharedObject> Registry::unbind_name(const std::string& name) {
  auto it = names_.find(name);
  if (it == names_.end()) throw KeyError("'" + name + "'");
  auto object = kj::mv(it->second);
  names_.erase(it);
  return object;
}

std::vector<std::string> Registry::names() const {
  std::vector<std::string> result;
  result.reserve(names_.size());
  for (const auto& [name, object] : names_) result.push_back(name);
  return result;
}

void Session::track(SharedObject& object) {
  if (!tracked_.contains(object.id())) tracked_.emplace(object.id(), kj::addRef(object));
}

void Session::close() {
  closed_ = true;
  auto tracked = kj::mv(tracked_);
  tracked_.clear();
  for (auto& [id, object] : tracked) object->session_closed(id_);
}

kj::Promise<void> WaitList::next_wake() {
  KJ_IF_MAYBE (forked, forked_) {
    return forked->addBranch();
  }
  auto paf = kj::newPromiseAndFulfiller<void>();
  fulfiller_ = kj::mv(paf.fulfiller);
  auto& forked = forked_.emplace(paf.promise.fork());
  return forked.addBranch();
}

void WaitList::wake_all() {
  if (forked_ == nullptr) return;
  fulfiller_->fulfill();
  fulfiller_ = nullptr;
  forked_ = nullptr;
}

kj::Duration seconds(double s) {
  if (!(s > 0)) return 0 * kj::NANOSECONDS;
  if (s > 1e9) s = 1e9;  // ~31 years: forever, without overflowing int64 nanoseconds
  return static_cast<int64_t>(std::llround(s * 1e9)) * kj::NANOSECONDS;
}

kj::Maybe<kj::TimePoint> deadline_after(kj::Timer& timer, double timeout_seconds) {
  if (timeout_seconds < 0 || std::isnan(timeout_seconds)) return nullptr;
  return timer.now() + seconds(timeout_seconds);
}

namespace {

kj::Promise<bool> retry_loop(kj::Timer& timer, WaitList& list, kj::Maybe<kj::TimePoint> deadline,
                             kj::Function<bool()> attempt) {
  if (attempt()) return true;
  kj::Promise<bool> woken = list.next_wake().then([] { return true; });
  KJ_IF_MAYBE (d, deadline) {
    if (timer.now() >= *d) return false;
    woken = woken.exclusiveJoin(timer.atTime(*d).then([] { return false; }));
  }
  return woken.then([&timer, &list, deadline, attempt = kj::mv(attempt)](bool was_woken) mutable -> kj::Promise<bool> {
    if (!was_woken) return attempt();  // the deadline: one last look
    return retry_loop(timer, list, deadline, kj::mv(attempt));
  });
}

}  // namespace

kj::Promise<bool> retry_until(kj::Timer& timer, WaitList& list, bool blocking, double timeout_seconds,
                              kj::Function<bool()> attempt) {
  if (!blocking) return attempt();
  return retry_loop(timer, list, deadline_after(timer, timeout_seconds), kj::mv(attempt));
}

}  // namespace xproc::rpc
