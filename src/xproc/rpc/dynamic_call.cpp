#include "xproc/rpc/dynamic_call.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cctype>

#include "xproc/errors.h"
#include "xproc/kj_errors_internal.h"
#include "xproc/rpc/value_ops.h"

namespace xproc::rpc {
namespace {

capnp::InterfaceSchema::Method method_named(capnp::InterfaceSchema interface, std::string_view name) {
  const std::string text(name);
  KJ_IF_MAYBE (method, interface.findMethodByName(text.c_str())) {
    return *method;
  }
  throw AttributeError("'" + std::string(interface.getShortDisplayName().cStr()) + "' has no method '" + text + "'");
}

// Runs `body` on this thread's connection to `endpoint`: kj's errors as xproc's, and a
// dropped connection forgotten so that the next call reconnects.
template <typename Body>
auto on_connection(const Endpoint& endpoint, Body&& body) {
  try {
    return body(connection_for(endpoint));
  } catch (const kj::Exception& e) {
    if (e.getType() == kj::Exception::Type::DISCONNECTED) drop_connection(endpoint);
    rethrow_local(e);
  }
}

capnp::Request<capnp::DynamicStruct, capnp::DynamicStruct> object_request(const std::shared_ptr<const ObjectRef>& ref,
                                                                          capnp::InterfaceSchema interface,
                                                                          std::string_view method) {
  const auto schema_method = method_named(interface, method);
  return on_connection(*ref->endpoint, [&](ClientConnection& connection) {
    return connection.object(ref).castAs<capnp::DynamicCapability>(interface).newRequest(schema_method);
  });
}

capnp::Request<capnp::DynamicStruct, capnp::DynamicStruct> manager_request(const Endpoint& endpoint,
                                                                           std::string_view method) {
  const auto interface = capnp::Schema::from<schema::Manager>();
  const auto schema_method = method_named(interface, method);
  return on_connection(endpoint, [&](ClientConnection& connection) {
    return connection.manager().castAs<capnp::DynamicCapability>(interface).newRequest(schema_method);
  });
}

std::string_view name_of(capnp::StructSchema::Field field) {
  const auto name = field.getProto().getName();
  return {name.begin(), name.size()};
}

// The `hasX` flag of parameter `x`, if the schema has one.
kj::Maybe<capnp::StructSchema::Field> flag_of(capnp::StructSchema params, capnp::StructSchema::Field field) {
  std::string flag = "has" + std::string(name_of(field));
  flag[3] = static_cast<char>(std::toupper(static_cast<unsigned char>(flag[3])));
  return params.findFieldByName(flag.c_str());
}

// Sets `field` from a DynamicValue, with Cap'n Proto's range check as ValueError.
void set_checked(capnp::DynamicStruct::Builder params, capnp::StructSchema::Field field,
                 capnp::DynamicValue::Reader value) {
  detail::translating_kj(ErrorKind::kValueError,
                         "argument '" + std::string(name_of(field)) + "': ", [&] { params.set(field, value); });
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

DynamicCall::DynamicCall(const std::shared_ptr<const ObjectRef>& ref, capnp::InterfaceSchema interface,
                         std::string_view method)
    : endpoint_(*ref->endpoint), request_(object_request(ref, interface, method)) {
  params_schema_ = request_.getSchema();
}

DynamicCall::DynamicCall(const Endpoint& endpoint, std::string_view method)
    : endpoint_(endpoint), request_(manager_request(endpoint, method)) {
  params_schema_ = request_.getSchema();
}

std::vector<capnp::StructSchema::Field> DynamicCall::positional() const {
  std::vector<capnp::StructSchema::Field> out;
  for (auto field : params_schema_.getFields()) {
    const std::string_view name = name_of(field);
    if (name == "owner") continue;
    if (name.size() > 3 && name.starts_with("has") && std::isupper(static_cast<unsigned char>(name[3]))) {
      std::string flagged(name.substr(3));
      flagged[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(flagged[0])));
      if (params_schema_.findFieldByName(flagged.c_str()) != nullptr) continue;
    }
    out.push_back(field);
  }
  return out;
}

capnp::StructSchema::Field DynamicCall::field_named(std::string_view name) const {
  const std::string text(name);
  KJ_IF_MAYBE (field, params_schema_.findFieldByName(text.c_str())) {
    return *field;
  }
  throw TypeError("no parameter '" + std::string(name) + "'");
}

void DynamicCall::mark_given(capnp::StructSchema::Field field) {
  KJ_IF_MAYBE (flag, flag_of(params_schema_, field)) {
    request_.set(*flag, true);
  }
}

void DynamicCall::fill_owner() {
  KJ_IF_MAYBE (owner, params_schema_.findFieldByName("owner")) {
    if (request_.get(*owner).as<uint64_t>() == 0) request_.set(*owner, owner_tag());
  }
}

capnp::DynamicStruct::Reader DynamicCall::send() {
  fill_owner();
  auto& loop = thread_loop();
  try {
    response_.emplace(request_.send().wait(loop.wait_scope()));
  } catch (const kj::Exception& e) {
    if (e.getType() == kj::Exception::Type::DISCONNECTED) drop_connection(endpoint_);
    rethrow_local(e);
  }
  return *response_;
}

void set_param(capnp::DynamicStruct::Builder params, capnp::StructSchema::Field field, const Value& value) {
  value.to_capnp(params.init(field).as<schema::Value>());
}

void set_param(capnp::DynamicStruct::Builder params, capnp::StructSchema::Field field, const Value::List& values) {
  write_values(params.init(field, static_cast<unsigned>(values.size())).as<capnp::List<schema::Value>>(), values);
}

void set_param(capnp::DynamicStruct::Builder params, capnp::StructSchema::Field field, const ValueMap& items) {
  write_entries(params.init(field, static_cast<unsigned>(items.size())).as<capnp::List<schema::Value::Entry>>(), items);
}

void set_param(capnp::DynamicStruct::Builder params, capnp::StructSchema::Field field, const Slice& slice) {
  auto builder = params.init(field).as<schema::Slice>();
  builder.setHasStart(slice.start.has_value());
  builder.setStart(slice.start.value_or(0));
  builder.setHasStop(slice.stop.has_value());
  builder.setStop(slice.stop.value_or(0));
  builder.setStep(slice.step);
}

void set_param(capnp::DynamicStruct::Builder params, capnp::StructSchema::Field field, std::string_view text) {
  const std::string terminated(text);  // Cap'n Proto's Text is NUL-terminated
  set_checked(params, field, capnp::Text::Reader(terminated.c_str(), terminated.size()));
}

void set_param(capnp::DynamicStruct::Builder params, capnp::StructSchema::Field field, const Timeout& timeout) {
  set_checked(params, field, wire_timeout(timeout));
}

void set_param(capnp::DynamicStruct::Builder params, capnp::StructSchema::Field field, bool flag) {
  set_checked(params, field, flag);
}

void set_param(capnp::DynamicStruct::Builder params, capnp::StructSchema::Field field, int64_t number) {
  set_checked(params, field, number);
}

void set_param(capnp::DynamicStruct::Builder params, capnp::StructSchema::Field field, uint64_t number) {
  set_checked(params, field, number);
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
  static_assert(static_cast<unsigned>(schema::Kind::BARRIER) == 13, "a new kind needs its factory in step");
  if (kind == schema::Kind::USER) throw TypeError("objects of a user's own interface come from Manager.create");
  const auto name =
      capnp::Schema::from<schema::Manager>().getMethods()[static_cast<unsigned>(kind)].getProto().getName();
  return {name.begin(), name.size()};
}

std::shared_ptr<const ObjectRef> make_object(const std::shared_ptr<const Endpoint>& endpoint, schema::Kind kind,
                                             DynamicCall factory_call) {
  Reply reply(std::move(factory_call));
  const auto fields = reply.fields();
  // Each factory answers the object's capability first, then its id.
  auto capability = reply[fields[0]].as<capnp::DynamicCapability>();
  auto ref = std::make_shared<const ObjectRef>(ObjectRef{endpoint, reply["id"].as<uint64_t>(), kind, 0});
  on_connection(*endpoint, [&](ClientConnection& connection) {
    connection.remember(ref, kj::mv(capability));
    return 0;
  });
  return ref;
}

capnp::DynamicValue::Reader Reply::only() const {
  auto fields = results_.getSchema().getFields();
  if (fields.size() != 1) throw TypeError("the reply has " + std::to_string(fields.size()) + " fields, not one");
  return results_.get(fields[0]);
}

}  // namespace xproc::rpc
