// Gate (challenge, login) and the Manager service: factories, names, ids, shutdown.
#include "xproc/rpc/manager_service.h"

#include <capnp/dynamic.h>

#include "xproc/auth.h"
#include "xproc/errors.h"
#include "xproc/rpc/objects.h"
#include "xproc/rpc/value_ops.h"

namespace xproc::rpc {
namespace {

constexpr size_t kNonceBytes = 32;

class ManagerService final : public Served<schema::Manager::Server> {
 public:
  ManagerService(Runtime& runtime, const ServiceConfig& config, kj::Own<Session> session)
      : runtime_(runtime), config_(config), session_(kj::mv(session)) {}

 protected:
  kj::Promise<void> dict(DictContext context) override {
    auto params = context.getParams();
    return answer(context, schema::Kind::DICT, [&] { return make_dict(runtime_, runtime_.read(params.getInitial())); });
  }

  kj::Promise<void> list(ListContext context) override {
    auto params = context.getParams();
    return answer(context, schema::Kind::LIST, [&] { return make_list(runtime_, runtime_.read(params.getInitial())); });
  }

  kj::Promise<void> namespace_(NamespaceContext context) override {
    return answer(context, schema::Kind::NAMESPACE, [&] { return make_namespace(runtime_); });
  }

  kj::Promise<void> value(ValueContext context) override {
    auto params = context.getParams();
    return answer(context, schema::Kind::VALUE, [&] {
      return make_value_cell(runtime_, params.getTypecode().cStr(), runtime_.read(params.getInitial()));
    });
  }

  kj::Promise<void> array(ArrayContext context) override {
    auto params = context.getParams();
    return answer(context, schema::Kind::ARRAY, [&] {
      return make_array(runtime_, params.getTypecode().cStr(), runtime_.read(params.getInitial()));
    });
  }

  kj::Promise<void> queue(QueueContext context) override {
    auto params = context.getParams();
    return answer(context, schema::Kind::QUEUE, [&] { return make_queue(runtime_, params.getMaxsize(), false); });
  }

  kj::Promise<void> joinableQueue(JoinableQueueContext context) override {
    auto params = context.getParams();
    return answer(context, schema::Kind::JOINABLE_QUEUE,
                  [&] { return make_queue(runtime_, params.getMaxsize(), true); });
  }

  kj::Promise<void> lock(LockContext context) override {
    return answer(context, schema::Kind::LOCK, [&] { return make_lock(runtime_, false); });
  }

  kj::Promise<void> rlock(RlockContext context) override {
    return answer(context, schema::Kind::RLOCK, [&] { return make_lock(runtime_, true); });
  }

  kj::Promise<void> semaphore(SemaphoreContext context) override {
    auto params = context.getParams();
    return answer(context, schema::Kind::SEMAPHORE, [&] { return make_semaphore(runtime_, params.getValue(), false); });
  }

  kj::Promise<void> boundedSemaphore(BoundedSemaphoreContext context) override {
    auto params = context.getParams();
    return answer(context, schema::Kind::BOUNDED_SEMAPHORE,
                  [&] { return make_semaphore(runtime_, params.getValue(), true); });
  }

  kj::Promise<void> event(EventContext context) override {
    return answer(context, schema::Kind::EVENT, [&] { return make_event(runtime_); });
  }

  kj::Promise<void> condition(ConditionContext context) override {
    auto params = context.getParams();
    return answer(context, schema::Kind::CONDITION, [&] {
      uint64_t lock_id = params.getLock();
      if (lock_id == 0) return make_condition(runtime_, make_lock(runtime_, true));
      SharedObject* lock = runtime_.registry.find(lock_id);
      if (lock == nullptr) throw KeyError("no object with id " + std::to_string(lock_id));
      return make_condition(runtime_, kj::addRef(*lock));
    });
  }

  kj::Promise<void> barrier(BarrierContext context) override {
    auto params = context.getParams();
    return answer(context, schema::Kind::BARRIER,
                  [&] { return make_barrier(runtime_, params.getParties(), params.getTimeout()); });
  }

  kj::Promise<void> create(CreateContext context) override {
    auto params = context.getParams();
    std::string type_name = params.getTypeName().cStr();
    const UserTypes::Type* type = config_.types.find(type_name);
    if (type == nullptr) throw KeyError("no type registered as " + Value(type_name).repr());
    auto object = obtain(params.getRegisteredName(), schema::Kind::USER, [&] {
      CreateArguments arguments{params.getArgs(), params.getKwargs()};
      return make_user_object(runtime_, type->make(arguments), type->interface_id);
    });
    if (params.getRegisteredName().size() == 0) pinned_anonymous(*object);
    auto results = context.getResults();
    results.setObject(object->client(*session_));
    results.setId(object->id());
    results.setInterfaceId(object->interface_id());
    return kj::READY_NOW;
  }

  kj::Promise<void> publish(PublishContext context) override {
    auto params = context.getParams();
    std::string name = params.getRegisteredName().cStr();
    if (name.empty()) throw ValueError("a published object needs a name");
    if (runtime_.registry.find_name(name)) throw ValueError("the name " + Value(name).repr() + " is taken");
    auto object = make_user_object(runtime_, params.getObject(), params.getInterfaceId());
    context.getResults().setId(object->id());
    runtime_.registry.bind_name(name, kj::mv(object));
    return kj::READY_NOW;
  }

  kj::Promise<void> lookup(LookupContext context) override {
    std::string name = context.getParams().getRegisteredName().cStr();
    SharedObject* object = runtime_.registry.find_name(name);
    if (object == nullptr) throw KeyError(Value(name).repr());
    auto results = context.getResults();
    results.setObject(object->client(*session_));
    results.setKind(object->kind());
    results.setId(object->id());
    results.setInterfaceId(object->interface_id());
    return kj::READY_NOW;
  }

  kj::Promise<void> object(ObjectContext context) override {
    uint64_t id = context.getParams().getId();
    SharedObject* object = runtime_.registry.find(id);
    if (object == nullptr) throw KeyError("no object with id " + std::to_string(id) + " (all its holders released it)");
    auto results = context.getResults();
    results.setObject(object->client(*session_));
    results.setKind(object->kind());
    results.setInterfaceId(object->interface_id());
    return kj::READY_NOW;
  }

  kj::Promise<void> names(NamesContext context) override {
    auto names = runtime_.registry.names();
    auto out = context.getResults().initNames(static_cast<unsigned>(names.size()));
    for (unsigned i = 0; i < names.size(); ++i) out.set(i, names[i]);
    return kj::READY_NOW;
  }

  kj::Promise<void> unregister(UnregisterContext context) override {
    runtime_.registry.unbind_name(context.getParams().getRegisteredName().cStr());
    return kj::READY_NOW;
  }

  kj::Promise<void> shutdown(ShutdownContext) override {
    config_.stop();
    return kj::READY_NOW;
  }

 private:
  // The named object (made by `make` if the name is new) or a new anonymous one, which
  // lives on only while a capability the caller gets holds it.
  template <typename Make>
  kj::Own<SharedObject> obtain(capnp::Text::Reader name_reader, schema::Kind kind, Make&& make) {
    std::string name = name_reader.cStr();
    if (name.empty()) return make();
    if (SharedObject* existing = runtime_.registry.find_name(name)) {
      if (existing->kind() != kind)
        throw ValueError("the name " + Value(name).repr() + " holds an object of another kind");
      return kj::addRef(*existing);
    }
    auto made = make();
    runtime_.registry.bind_name(name, kj::addRef(*made));
    return made;
  }

  // A factory's answer: the object registered under the call's name (made by `make` if
  // the name is new) or a new anonymous one, as the results' capability (their first
  // field, typed by the schema) and its id.
  template <typename Context, typename Make>
  kj::Promise<void> answer(Context& context, schema::Kind kind, Make&& make) {
    auto object = obtain(context.getParams().getRegisteredName(), kind, make);
    capnp::DynamicStruct::Builder results = capnp::toDynamic(context.getResults());
    const auto capability = results.getSchema().getFields()[0];
    results.set(capability, object->client(*session_).template castAs<capnp::DynamicCapability>(
                                capability.getType().asInterface()));
    results.set("id", object->id());
    return kj::READY_NOW;
  }

  // A user's object is the user's capability, which does not hold our record of it:
  // anonymous ones are kept until the server stops, so that their id stays valid.
  void pinned_anonymous(SharedObject& object) { runtime_.registry.pin(kj::addRef(object)); }

  Runtime& runtime_;
  const ServiceConfig& config_;
  kj::Own<Session> session_;
};

class Gate final : public Served<schema::Gate::Server> {
 public:
  Gate(Runtime& runtime, const ServiceConfig& config, kj::Own<Session> session)
      : runtime_(runtime), config_(config), session_(kj::mv(session)) {}

 protected:
  kj::Promise<void> challenge(ChallengeContext context) override {
    nonce_ = random_bytes(kNonceBytes);
    context.getResults().setNonce(kj::arrayPtr(reinterpret_cast<const kj::byte*>(nonce_.data()), nonce_.size()));
    return kj::READY_NOW;
  }

  kj::Promise<void> login(LoginContext context) override {
    auto digest = context.getParams().getDigest();
    std::string nonce = std::move(nonce_);  // each challenge answers one login attempt
    nonce_.clear();
    if (config_.authkey) {
      const char* failure = nullptr;
      if (nonce.empty()) {
        failure = "login needs a challenge first";
      } else {
        std::string expected = hmac_sha256(*config_.authkey, nonce);
        std::string_view received(reinterpret_cast<const char*>(digest.begin()), digest.size());
        if (!equal_constant_time(expected, received)) failure = "digest received was wrong";
      }
      if (failure != nullptr) {
        // The server closes the connection: one guess per connection, and the error is the
        // last thing the client hears.
        config_.login_result(session_->id(), false);
        throw AuthenticationError(failure);
      }
    }
    config_.login_result(session_->id(), true);
    auto results = context.getResults();
    results.setManager(kj::heap<ManagerService>(runtime_, config_, kj::addRef(*session_)));
    results.setInstance(runtime_.instance);
    return kj::READY_NOW;
  }

 private:
  Runtime& runtime_;
  const ServiceConfig& config_;
  kj::Own<Session> session_;
  std::string nonce_;
};

}  // namespace

schema::Gate::Client make_gate(Runtime& runtime, const ServiceConfig& config, kj::Own<Session> session) {
  return kj::heap<Gate>(runtime, config, kj::mv(session));
}

}  // namespace xproc::rpc
