// A call of any method of manager.capnp, built from the schema at run time. It is how
// every client of the Manager reaches it: the C++ proxies (manager_proxies.cpp) name the
// method and pass their arguments, the Python binding fills the parameters from Python
// objects, and an operation added to the schema is callable from both without another
// line of client code.
//
// The parameter conventions of manager.capnp that the call applies (documented there):
//   - `owner :UInt64` is filled with the calling thread's tag unless given;
//   - a parameter `x` with a Bool `hasX` beside it is optional: giving `x` sets `hasX`;
//   - `timeout :Float64` is seconds, -1 for none (Timeout: nullopt), never negative
//     otherwise (ValueError, as Python's queue module says).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <capnp/dynamic.h>

#include "xproc/manager.capnp.h"
#include "xproc/manager_proxies.h"  // Slice
#include "xproc/rpc/call_batches.h"
#include "xproc/rpc/client_connection.h"
#include "xproc/rpc/method_plan.h"
#include "xproc/timeout.h"
#include "xproc/value.h"

namespace xproc::rpc {

// The interface of the shared objects of `kind` (Dict, SharedList, ...). TypeError for
// Kind::USER, whose interface only its user knows.
capnp::InterfaceSchema interface_of(schema::Kind kind);

// The calling thread's tag, which tells its lock holdings apart from other threads' (an
// rlock is per thread).
uint64_t owner_tag();

// Seconds on the wire: -1 waits forever; ValueError for a negative timeout.
double wire_timeout(const Timeout& timeout);

// C++ arguments as parameters.
void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, const Value& value);
void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, const Value::List& values);
void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, const ValueMap& items);
void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, const Slice& slice);
void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, std::string_view text);
void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, const Timeout& timeout);
void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, bool flag);
void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, int64_t number);
void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, uint64_t number);
inline void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, const char* text) {
  set_param(params, field, std::string_view(text));
}
inline void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field, const std::string& text) {
  set_param(params, field, std::string_view(text));
}
template <typename Integer>
requires std::is_integral_v<Integer> &&
    (!std::is_same_v<Integer, bool>)void set_param(capnp::DynamicStruct::Builder params, const PlannedField& field,
                                                   Integer number) {
  if constexpr (std::is_signed_v<Integer>) {
    set_param(params, field, static_cast<int64_t>(number));
  } else {
    set_param(params, field, static_cast<uint64_t>(number));
  }
}

class DynamicCall {
 public:
  // A call of `plan`'s method on `ref`'s object, on this thread's connection to its
  // manager (over `transport`: kEventLoop for a call sent with send_async()).
  DynamicCall(const std::shared_ptr<const ObjectRef>& ref, const MethodPlan& plan,
              Transport transport = Transport::kDirect);
  // A call of `method` of `interface` on `ref`'s object. AttributeError when the interface
  // has no such method.
  DynamicCall(const std::shared_ptr<const ObjectRef>& ref, capnp::InterfaceSchema interface, std::string_view method)
      : DynamicCall(ref, plan_of(interface, method)) {}
  // A call of the Manager's own method `method` (a factory, lookup, names ...).
  DynamicCall(const Endpoint& endpoint, std::string_view method);

  DynamicCall(DynamicCall&&) = default;
  DynamicCall& operator=(DynamicCall&&) = delete;

  const MethodPlan& plan() const { return plan_; }
  capnp::DynamicStruct::Builder params() { return params_; }

  // Sets `parameter` from a C++ argument (see set_param above), and its `hasX` flag if it
  // has one.
  template <typename Arg>
  DynamicCall& set(const PlannedField& parameter, const Arg& arg) {
    set_param(params_, parameter, arg);
    given(parameter);
    return *this;
  }
  template <typename Arg>
  DynamicCall& set(std::string_view parameter, const Arg& arg) {
    return set(plan_.parameter_named(parameter), arg);
  }
  // Records that `parameter` was given (sets its `hasX` flag, if it has one), for a caller
  // that filled params() itself.
  void given(const PlannedField& parameter) {
    KJ_IF_MAYBE (flag, parameter.flag) {
      params_.set(*flag, true);
    }
  }

  // Sends the call and waits for the reply (polling within the endpoint's spin first);
  // remote errors as xproc errors, a dropped connection as ConnectionError (the next call
  // reconnects). The results live as long as this call.
  capnp::DynamicStruct::Reader send();
  // Sends the call without waiting (made with Transport::kEventLoop): the reply comes
  // when this thread's loop runs. Read it as plan().results_schema; a failure is a remote
  // error (rethrow_local) or, for a dropped connection, DISCONNECTED — then
  // drop_connection() before the next call. A call that answers at once leaves at the
  // loop's next turn, batched with the other calls to its object (call_batches.h).
  kj::Promise<capnp::Response<capnp::AnyPointer>> send_async();

 private:
  DynamicCall(const Endpoint& endpoint, const MethodPlan& plan, capnp::Capability::Client target);
  // A call in the batch of `ref`'s object on `connection`.
  DynamicCall(const Endpoint& endpoint, const MethodPlan& plan, CallBatches& batches, uint64_t object_id,
              capnp::Capability::Client& target);
  static DynamicCall on_object(const std::shared_ptr<const ObjectRef>& ref, const MethodPlan& plan,
                               Transport transport);

  const Endpoint& endpoint_;
  const MethodPlan& plan_;
  std::optional<capnp::Request<capnp::AnyPointer, capnp::AnyPointer>> request_;  // sent on its own
  std::optional<kj::Promise<capnp::Response<capnp::AnyPointer>>> batched_;       // or in a batch
  capnp::DynamicStruct::Builder params_;
  std::optional<capnp::Response<capnp::AnyPointer>> response_;
};

// Sets `field` from a Value, converted to the field's type (a list for List(Value), a dict
// for List(Value.Entry), None or seconds for a timeout ...): TypeError when it does not
// fit. For callers that pass every argument as a Value (Proxy::call_async).
void set_param_from(capnp::DynamicStruct::Builder params, const PlannedField& field, const Value& value);

// A reply as one Value: None for a method that answers nothing, its only field, or a tuple
// of its fields in order.
Value results_as_value(capnp::DynamicStruct::Reader results, const MethodPlan& plan);

// The reply's fields as C++ values.
Value value_of(capnp::DynamicValue::Reader field);
Value::List values_of(capnp::DynamicValue::Reader field);
std::vector<std::pair<Value, Value>> entries_of(capnp::DynamicValue::Reader field);

// The Manager's factory of `kind` ("dict", "queue" ...): manager.capnp gives each kind's
// factory the ordinal of the kind.
std::string_view factory_of(schema::Kind kind);

// Kinds by their Python names: the schema's enumerants in snake case ("joinable_queue");
// kind_named throws ValueError for a name that is no kind.
std::string kind_name(schema::Kind kind);
schema::Kind kind_named(std::string_view name);

// Sends `factory_call` (a call of factory_of(kind), its parameters filled) and returns a
// reference to the object it made, whose capability is cached on this thread's connection.
std::shared_ptr<const ObjectRef> make_object(const std::shared_ptr<const Endpoint>& endpoint, schema::Kind kind,
                                             DynamicCall factory_call);

// An object of a user type the server registered, made by Manager.create from the
// constructor's arguments (the one named `name` if not empty), checked to answer
// `interface_id` (TypeError otherwise). Defined in manager.cpp.
std::shared_ptr<const ObjectRef> create_user_object(const std::shared_ptr<const Endpoint>& endpoint,
                                                    std::string_view type_name, std::string_view name,
                                                    uint64_t interface_id, const std::vector<Value>& args,
                                                    const ValueMap& kwargs);

// A call sent, and its reply's fields.
class Reply {
 public:
  explicit Reply(DynamicCall call) : call_(std::move(call)), results_(call_.send()) {}
  capnp::DynamicValue::Reader operator[](std::string_view field) const;
  capnp::DynamicValue::Reader operator[](const PlannedField& field) const { return results_.get(field.field); }
  // The reply's only field, a Value, read without the schema (what most calls answer).
  Value value() const;
  const std::vector<PlannedField>& fields() const { return call_.plan().results; }
  // The only field of the reply (most methods have one).
  capnp::DynamicValue::Reader only() const;

 private:
  DynamicCall call_;
  capnp::DynamicStruct::Reader results_;
};

// Calls `method` of `ref`'s object (an `Interface` of manager.capnp) with `args` given in
// order (std::nullopt for an optional parameter left out) and returns the reply.
template <typename Interface, typename... Args>
Reply call(const std::shared_ptr<const ObjectRef>& ref, std::string_view method, const Args&... args) {
  DynamicCall request(ref, capnp::Schema::from<Interface>(), method);
  const auto& fields = request.plan().positional;
  if (sizeof...(Args) > fields.size()) throw TypeError(std::string(method) + "() given too many arguments");
  [[maybe_unused]] size_t i = 0;
  [[maybe_unused]] auto give = [&](const auto& arg) {
    using Arg = std::decay_t<decltype(arg)>;
    if constexpr (requires { arg.has_value(); } && !std::is_same_v<Arg, Timeout>) {
      if (arg) request.set(fields[i], *arg);
    } else {
      request.set(fields[i], arg);
    }
    ++i;
  };
  (give(args), ...);
  return Reply(std::move(request));
}

// Makes an object of `kind` through its factory: `name` ("" for an anonymous object), then
// `args` in order.
template <typename... Args>
std::shared_ptr<const ObjectRef> make_object(const std::shared_ptr<const Endpoint>& endpoint, schema::Kind kind,
                                             std::string_view name, const Args&... args) {
  DynamicCall request(*endpoint, factory_of(kind));
  const auto& fields = request.plan().positional;  // registeredName, then the object's own
  if (sizeof...(Args) + 1 > fields.size())
    throw TypeError(std::string(factory_of(kind)) + "() given too many arguments");
  request.set(fields[0], name);
  [[maybe_unused]] size_t i = 1;
  (request.set(fields[i++], args), ...);
  return make_object(endpoint, kind, std::move(request));
}

}  // namespace xproc::rpc
