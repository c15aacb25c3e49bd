#include "xproc/rpc/dynamic_call.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cctype>

#include "xproc/errors.h"
#include "xproc/kj_errors_internal.h"
#include "xproc/rpc/value_ops.h"

namespace xproc::rpc {
namespace {

// Runs `body` on this thread's connection to `endpoint`: kj's errors as xproc's, and a
// dropped connection forgotten so that the next call reconnects.
template <typename Body>
auto on_connection(const Endpoint& endpoint, Transport transport, Body&& body) {
  try {
    return body(connection_for(endpoint, transport));
  } catch (const kj::Exception& e) {
    if (e.getType() == kj::Exception::Type::DISCONNECTED) drop_connection(endpoint);
    rethrow_local(e);
  }
}

// The first segment of a request: room for the call's header and small parameters. Larger
// parameters grow the message; without a hint it would start at 2 KiB, zeroed per call.
constexpr capnp::MessageSize kRequestWords{32, 0};

std::string_view name_of(capnp::StructSchema::Field field) {
  const auto name = field.getProto().getName();
  return {name.begin(), name.size()};
}

// A parameter given a C++ argument of another type than its own.
void expect_shape(const PlannedField& field, FieldShape shape) {
  if (field.shape != shape) throw TypeError("parameter '" + field.name + "' has another type");
}

// Sets `field` from a DynamicValue, with Cap'n Proto's range check as ValueError.
void set_checked(capnp::DynamicStruct::Builder params, capnp::StructSchema::Field field,
                 capnp::DynamicValue::Reader value) {
  try {
    params.set(field, value);
  } catch (const kj::Exception& e) {
    detail::rethrow_kj(e, ErrorKind::kValueError, "argument '" + std::string(name_of(field)) + "': ");
  }
}

}  // namespace

capnp::InterfaceSchema interface_of(schema::Kind kind) {
  switch (kind) {
    case schema::Kind::DICT: return capnp::Schema::from<schema::Dict>();
    case schema::Kind::LIST: return capnp::Schema::from<schema::SharedList>();
    case schema::Kind::NAMESPACE: return capnp::Schema::from<schema::Namespace>();
    case schema::Kind::VALUE: return capnp::Schema::from<schema::ValueCell>();
    case schema::Kind::ARRAY: return capnp::Schema::from<schema::Array>();
    case schema::Kind::QUEUE: return capnp::Schema::from<schema::Queue>();
    case schema::Kind::JOINABLE_QUEUE: return capnp::Schema::from<schema::JoinableQueue>();
    case schema::Kind::LOCK:
    case schema::Kind::RLOCK: return capnp::Schema::from<schema::Lock>();
    case schema::Kind::SEMAPHORE:
    case schema::Kind::BOUNDED_SEMAPHORE: return capnp::Schema::from<schema::Semaphore>();
    case schema::Kind::EVENT: return capnp::Schema::from<schema::Event>();
    case schema::Kind::CONDITION: return capnp::Schema::from<schema::Condition>();
    case schema::Kind::BARRIER: return capnp::Schema::from<schema::Barrier>();
    case schema::Kind::USER: break;
  }
  throw TypeError("an object of a user's own interface has no interface in manager.capnp");
}

uint64_t owner_tag() {
  thread_local const auto tid = static_cast<uint64_t>(::syscall(SYS_gettid));
  return tid;
}

double wire_timeout(const Timeout& timeout) {
  if (!timeout) return -1.0;
  if (timeout->count() < 0) throw ValueError("'timeout' must be a non-negative number");
  return timeout->count();
}

DynamicCall::DynamicCall(const Endpoint& endpoint, const MethodPlan& plan, capnp::Capability::Client target)
    : endpoint_(endpoint),
      plan_(plan),
      request_(target.typelessRequest(plan.interface_id, plan.ordinal, kRequestWords)) {
  params_ =
      request_->initAsAnyStruct(plan.params_size.data, plan.params_size.pointers).as<capnp::DynamicStruct>(plan.params);
  KJ_IF_MAYBE (owner, plan.owner) {
    params_.set(*owner, owner_tag());
  }
}

DynamicCall::DynamicCall(const Endpoint& endpoint, const MethodPlan& plan, CallBatches& batches, uint64_t object_id,
                         capnp::Capability::Client& target)
    : endpoint_(endpoint), plan_(plan) {
  auto added = batches.add(object_id, target, plan);
  params_ = added.params;
  batched_.emplace(kj::mv(added.reply));
  KJ_IF_MAYBE (owner, plan.owner) {
    params_.set(*owner, owner_tag());
  }
}

DynamicCall DynamicCall::on_object(const std::shared_ptr<const ObjectRef>& ref, const MethodPlan& plan,
                                   Transport transport) {
  return on_connection(*ref->endpoint, transport, [&](ClientConnection& connection) {
    auto target = connection.object(ref);
    if (transport != Transport::kEventLoop) return DynamicCall(*ref->endpoint, plan, kj::mv(target));
    auto& batches = connection.batches();
    if (batchable(plan, ref->kind)) return DynamicCall(*ref->endpoint, plan, batches, ref->id, target);
    batches.flush(ref->id);  // so that this call cannot overtake earlier ones to the object
    return DynamicCall(*ref->endpoint, plan, kj::mv(target));
  });
}

DynamicCall::DynamicCall(const std::shared_ptr<const ObjectRef>& ref, const MethodPlan& plan, Transport transport)
    : DynamicCall(on_object(ref, plan, transport)) {}

DynamicCall::DynamicCall(const Endpoint& endpoint, std::string_view method)
    : DynamicCall(
          endpoint, plan_of(capnp::Schema::from<schema::Manager>(), method),
          on_connection(endpoint, Transport::kDirect, [](ClientConnection& connection) -> capnp::Capability::Client {
            return connection.manager();
          })) {}

capnp::DynamicStruct::Reader DynamicCall::send() {
  if (!request_) throw RuntimeError(plan_.name + "() travels in a batch: send it with send_async()");
  auto& loop = thread_loop();
  try {
    response_.emplace(request_->send().wait(loop.wait_scope()));
    return response_->getAs<capnp::DynamicStruct>(plan_.results_schema);
  } catch (const kj::Exception& e) {
    if (e.getType() == kj::Exception::Type::DISCONNECTED) drop_connection(endpoint_);
    rethrow_local(e);
  }
}

kj::Promise<capnp::Response<capnp::AnyPointer>> DynamicCall::send_async() {
  if (batched_) return kj::mv(*batched_);
  return request_->send();
}

void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, const Value& value) {
  expect_shape(field, FieldShape::kValue);
  value.to_capnp(field_pointer(params, field).initAs<schema::Value>());
}

void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, const Value::List& values) {
  expect_shape(field, FieldShape::kValueList);
  write_values(field_pointer(params, field).initAs<capnp::List<schema::Value>>(static_cast<unsigned>(values.size())),
               values);
}

void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, const ValueMap& items) {
  expect_shape(field, FieldShape::kEntryList);
  write_entries(
      field_pointer(params, field).initAs<capnp::List<schema::Value::Entry>>(static_cast<unsigned>(items.size())),
      items);
}

void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, const Slice& slice) {
  expect_shape(field, FieldShape::kSlice);
  auto builder = field_pointer(params, field).initAs<schema::Slice>();
  builder.setHasStart(slice.start.has_value());
  builder.setStart(slice.start.value_or(0));
  builder.setHasStop(slice.stop.has_value());
  builder.setStop(slice.stop.value_or(0));
  builder.setStep(slice.step);
}

void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, std::string_view text) {
  expect_shape(field, FieldShape::kText);
  // Text is NUL-terminated on the wire; initAs reserves the terminator.
  auto out = field_pointer(params, field).initAs<capnp::Text>(static_cast<unsigned>(text.size()));
  std::copy(text.begin(), text.end(), out.begin());
}

void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, const Timeout& timeout) {
  expect_shape(field, FieldShape::kTimeout);
  set_checked(params, field.field, wire_timeout(timeout));
}

void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, bool flag) {
  set_checked(params, field.field, flag);
}

void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, int64_t number) {
  set_checked(params, field.field, number);
}

void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, uint64_t number) {
  set_checked(params, field.field, number);
}

void set_param_from(capnp::DynamicStruct::Builder params, const PlannedField& field, const Value& value) {
  switch (field.shape) {
    case FieldShape::kValue: return set_param(params, field, value);
    case FieldShape::kValueList: return set_param(params, field, value.as_list());
    case FieldShape::kEntryList: return set_param(params, field, value.as_map());
    case FieldShape::kText: return set_param(params, field, std::string_view(value.as_text()));
    case FieldShape::kBool: return set_param(params, field, value.as_bool());
    case FieldShape::kSigned: return set_param(params, field, value.as_int());
    case FieldShape::kUnsigned:
      if (value.as_int() < 0) throw ValueError("argument '" + field.name + "' cannot be negative");
      return set_param(params, field, static_cast<uint64_t>(value.as_int()));
    case FieldShape::kFloat: return set_checked(params, field.field, value.as_float());
    case FieldShape::kTimeout:
      return set_param(params, field,
                       value.is_null() ? Timeout{} : Timeout(std::chrono::duration<double>(value.as_float())));
    default: throw TypeError("parameter '" + field.name + "' cannot be given as a Value");
  }
}

namespace {

Value result_value(capnp::DynamicStruct::Reader results, const PlannedField& field) {
  switch (field.shape) {
    case FieldShape::kValue: return Value::from_capnp(field_pointer(results, field).getAs<schema::Value>());
    case FieldShape::kValueList: return Value(values_of(results.get(field.field)));
    case FieldShape::kEntryList: {
      Value::List pairs;
      for (auto& [key, item] : entries_of(results.get(field.field))) {
        pairs.push_back(Value::tuple({std::move(key), std::move(item)}));
      }
      return Value(std::move(pairs));
    }
    case FieldShape::kText: return Value(std::string(results.get(field.field).as<capnp::Text>().cStr()));
    case FieldShape::kBool: return Value(results.get(field.field).as<bool>());
    case FieldShape::kSigned: return Value(static_cast<long long>(results.get(field.field).as<int64_t>()));
    case FieldShape::kUnsigned: return Value(static_cast<unsigned long long>(results.get(field.field).as<uint64_t>()));
    case FieldShape::kFloat: return Value(results.get(field.field).as<double>());
    default: throw TypeError("result '" + field.name + "' cannot be read as a Value");
  }
}

}  // namespace

Value results_as_value(capnp::DynamicStruct::Reader results, const MethodPlan& plan) {
  if (plan.results.empty()) return Value();
  if (plan.results.size() == 1) return result_value(results, plan.results[0]);
  Value::List fields;
  for (const auto& field : plan.results) fields.push_back(result_value(results, field));
  return Value::tuple(std::move(fields));
}

Value value_of(capnp::DynamicValue::Reader field) { return Value::from_capnp(field.as<schema::Value>()); }

Value::List values_of(capnp::DynamicValue::Reader field) { return read_values(field.as<capnp::List<schema::Value>>()); }

std::vector<std::pair<Value, Value>> entries_of(capnp::DynamicValue::Reader field) {
  auto entries = field.as<capnp::List<schema::Value::Entry>>();
  std::vector<std::pair<Value, Value>> out;
  out.reserve(entries.size());
  for (auto entry : entries) out.emplace_back(Value::from_capnp(entry.getKey()), Value::from_capnp(entry.getValue()));
  return out;
}

std::string_view factory_of(schema::Kind kind) {
  static_assert(static_cast<unsigned>(schema::Kind::USER) == 14, "a new kind needs its factory in step");
  // USER's is create: a registered type's object, made from the type name and arguments.
  const auto name =
      capnp::Schema::from<schema::Manager>().getMethods()[static_cast<unsigned>(kind)].getProto().getName();
  return {name.begin(), name.size()};
}

namespace {

std::string snake_case(std::string_view camel) {
  std::string out;
  for (char c : camel) {
    if (std::isupper(static_cast<unsigned char>(c))) {
      out += '_';
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string kind_name(schema::Kind kind) {
  const auto enumerants = capnp::Schema::from<schema::Kind>().getEnumerants();
  const auto index = static_cast<unsigned>(kind);
  return index < enumerants.size() ? snake_case(enumerants[index].getProto().getName().cStr()) : "user";
}

schema::Kind kind_named(std::string_view name) {
  const auto enumerants = capnp::Schema::from<schema::Kind>().getEnumerants();
  for (unsigned i = 0; i < enumerants.size(); ++i) {
    if (snake_case(enumerants[i].getProto().getName().cStr()) == name) return static_cast<schema::Kind>(i);
  }
  throw ValueError("no kind of shared object is called '" + std::string(name) + "'");
}

std::shared_ptr<const ObjectRef> make_object(const std::shared_ptr<const Endpoint>& endpoint, schema::Kind kind,
                                             DynamicCall factory_call) {
  Reply reply(std::move(factory_call));
  const auto& fields = reply.fields();
  // Each factory answers the object's capability first, then its id.
  auto answered = reply[fields[0]];
  // Manager kinds answer their own interface; create answers a bare Capability.
  capnp::Capability::Client capability = answered.getType() == capnp::DynamicValue::ANY_POINTER
                                             ? answered.as<capnp::AnyPointer>().getAs<capnp::Capability>()
                                             : answered.as<capnp::DynamicCapability>();
  // A user's object says which interface it answers (create's interfaceId).
  const uint64_t interface_id = kind == schema::Kind::USER ? reply["interfaceId"].as<uint64_t>() : 0;
  auto ref = std::make_shared<const ObjectRef>(ObjectRef{endpoint, reply["id"].as<uint64_t>(), kind, interface_id});
  on_connection(*endpoint, Transport::kDirect, [&](ClientConnection& connection) {
    connection.remember(ref, kj::mv(capability));
    return 0;
  });
  return ref;
}

capnp::DynamicValue::Reader Reply::operator[](std::string_view field) const {
  for (const auto& result : fields()) {
    if (result.name == field) return results_.get(result.field);
  }
  throw TypeError(call_.plan().name + "() has no result '" + std::string(field) + "'");
}

Value Reply::value() const {
  const auto& results = fields();
  if (results.size() != 1 || results[0].shape != FieldShape::kValue) {
    throw TypeError(call_.plan().name + "() does not answer one Value");
  }
  return Value::from_capnp(field_pointer(results_, results[0]).getAs<schema::Value>());
}

capnp::DynamicValue::Reader Reply::only() const {
  const auto& results = fields();
  if (results.size() != 1) throw TypeError("the reply has " + std::to_string(results.size()) + " fields, not one");
  return results_.get(results[0].field);
}

}  // namespace xproc::rpc
