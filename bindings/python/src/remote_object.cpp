// _xproc.RemoteObject: a Manager's shared object, called by the names of manager.capnp.
// One method, call(), reaches every operation of every kind: its parameters are filled
// from Python objects by their schema types and its results read back the same way, so an
// operation added to the schema is callable from Python with no change here. The xproc
// package's proxy classes (managers.py) give them multiprocessing's Python API.
//
// Parameters, in schema order (or by their schema names as keywords):
//   Value -> any object xproc encodes;  List(Value) -> an iterable;  List(Value.Entry) ->
//   a mapping or an iterable of pairs;  Slice -> a slice;  Text -> str;  Data -> bytes;
//   Bool, integers, floats as themselves. `timeout` may be None (no limit). An optional
//   parameter (one with a `hasX` flag) is sent only when given. `owner` is this thread's.
// Results: none -> None; one field -> its value; several -> a tuple in schema order. A
// Value named `key`/`keys`, or an entry's key, comes back hashable (lists as tuples).
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bindings.h"
#include "python_values.h"
#include "remote_object.h"
#include "xproc/errors.h"
#include "xproc/rpc/dynamic_call.h"

namespace xproc::python {
namespace {

// A list parameter of `count` elements, the Value or Entry elements written by `write`.
template <typename Element, typename Write>
void fill_list(capnp::DynamicStruct::Builder params, const rpc::PlannedField& field, nb::handle items, Write&& write) {
  nb::list sequence = nb::list(items);
  auto list = rpc::field_pointer(params, field).initAs<capnp::List<Element>>(static_cast<unsigned>(nb::len(sequence)));
  unsigned i = 0;
  for (nb::handle item : sequence) write(list[i++], item);
}

void set_from_python(capnp::DynamicStruct::Builder params, const rpc::PlannedField& field, nb::handle object) {
  switch (field.shape) {
    case rpc::FieldShape::kValue:
      write_value(object, rpc::field_pointer(params, field).initAs<schema::Value>());
      return;
    case rpc::FieldShape::kSlice: {
      auto slice = rpc::field_pointer(params, field).initAs<schema::Slice>();
      nb::object start = object.attr("start"), stop = object.attr("stop"), step = object.attr("step");
      slice.setHasStart(!start.is_none());
      if (!start.is_none()) slice.setStart(nb::cast<int64_t>(start));
      slice.setHasStop(!stop.is_none());
      if (!stop.is_none()) slice.setStop(nb::cast<int64_t>(stop));
      if (!step.is_none()) slice.setStep(nb::cast<int64_t>(step));
      return;
    }
    case rpc::FieldShape::kValueList:
      fill_list<schema::Value>(params, field, object,
                               [](schema::Value::Builder out, nb::handle item) { write_value(item, out); });
      return;
    case rpc::FieldShape::kEntryList: {
      nb::object pairs = nb::isinstance<nb::dict>(object) ? nb::borrow<nb::dict>(object).items() : nb::borrow(object);
      fill_list<schema::Value::Entry>(params, field, pairs, [](schema::Value::Entry::Builder out, nb::handle pair) {
        nb::tuple kv = nb::tuple(pair);
        if (nb::len(kv) != 2) throw nb::type_error("expected (key, value) pairs");
        write_value(kv[0], out.initKey());
        write_value(kv[1], out.initValue());
      });
      return;
    }
    case rpc::FieldShape::kText: rpc::set_param(params, field, nb::cast<std::string>(object)); return;
    case rpc::FieldShape::kData: {
      nb::bytes bytes = nb::cast<nb::bytes>(object);
      rpc::field_pointer(params, field)
          .setAs<capnp::Data>(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(bytes.c_str()), bytes.size()));
      return;
    }
    case rpc::FieldShape::kBool: rpc::set_param(params, field, nb::cast<bool>(object)); return;
    case rpc::FieldShape::kSigned: rpc::set_param(params, field, nb::cast<int64_t>(object)); return;
    case rpc::FieldShape::kUnsigned: rpc::set_param(params, field, nb::cast<uint64_t>(object)); return;
    case rpc::FieldShape::kTimeout:
      rpc::set_param(params, field,
                     object.is_none() ? Timeout() : Timeout(std::chrono::duration<double>(nb::cast<double>(object))));
      return;
    case rpc::FieldShape::kFloat: params.set(field.field, nb::cast<double>(object)); return;
    default: break;
  }
  throw nb::type_error(("parameter '" + field.name + "' cannot be given from Python").c_str());
}

void fill(rpc::DynamicCall& call, const nb::tuple& args, const nb::dict& kwargs) {
  const auto& parameters = call.plan().positional;
  if (nb::len(args) > parameters.size()) throw nb::type_error("too many arguments");
  auto give = [&](const rpc::PlannedField& parameter, nb::handle object) {
    set_from_python(call.params(), parameter, object);
    call.given(parameter);
  };
  for (size_t i = 0; i < nb::len(args); ++i) give(parameters[i], args[i]);
  for (auto [key, object] : kwargs) give(call.plan().parameter_named(nb::cast<std::string>(key)), object);
}

nb::object to_python(capnp::DynamicValue::Reader value, bool as_key) {
  switch (value.getType()) {
    case capnp::DynamicValue::VOID: return nb::none();
    case capnp::DynamicValue::BOOL: return nb::bool_(value.as<bool>());
    case capnp::DynamicValue::INT: return nb::int_(value.as<int64_t>());
    case capnp::DynamicValue::UINT: return nb::int_(value.as<uint64_t>());
    case capnp::DynamicValue::FLOAT: return nb::float_(value.as<double>());
    case capnp::DynamicValue::TEXT: {
      auto text = value.as<capnp::Text>();
      return nb::str(text.cStr(), text.size());
    }
    case capnp::DynamicValue::DATA: {
      auto data = value.as<capnp::Data>();
      return nb::bytes(reinterpret_cast<const char*>(data.begin()), data.size());
    }
    case capnp::DynamicValue::ENUM: {
      KJ_IF_MAYBE (enumerant, value.as<capnp::DynamicEnum>().getEnumerant()) {
        return nb::str(enumerant->getProto().getName().cStr());
      }
      return nb::int_(value.as<capnp::DynamicEnum>().getRaw());
    }
    case capnp::DynamicValue::LIST: {
      nb::list out;
      for (auto item : value.as<capnp::DynamicList>()) out.append(to_python(item, as_key));
      return out;
    }
    default: break;
  }
  throw nb::type_error("a result Python cannot hold");
}

nb::object result_to_python(capnp::DynamicStruct::Reader results, const rpc::PlannedField& result) {
  switch (result.shape) {
    case rpc::FieldShape::kValue:
      return read_value(rpc::field_pointer(results, result).getAs<schema::Value>(), result.is_key);
    case rpc::FieldShape::kValueList: {
      nb::list out;
      for (auto item : rpc::field_pointer(results, result).getAs<capnp::List<schema::Value>>()) {
        out.append(read_value(item, result.is_key));
      }
      return out;
    }
    case rpc::FieldShape::kEntryList: {
      nb::list out;
      for (auto entry : rpc::field_pointer(results, result).getAs<capnp::List<schema::Value::Entry>>()) {
        out.append(nb::make_tuple(read_value(entry.getKey(), true), read_value(entry.getValue())));
      }
      return out;
    }
    default: return to_python(results.get(result.field), result.is_key);
  }
}

nb::object results_to_python(capnp::DynamicStruct::Reader reply, const std::vector<rpc::PlannedField>& results) {
  if (results.empty()) return nb::none();
  if (results.size() == 1) return result_to_python(reply, results[0]);
  nb::list out;
  for (const auto& result : results) out.append(result_to_python(reply, result));
  return nb::tuple(out);
}

// The Python spelling of a kind: the schema's enumerant in snake case ("joinable_queue").

// A call sent by RemoteObject.call_async and its outcome once the loop has run.
struct AsyncCall {
  std::shared_ptr<const rpc::Endpoint> endpoint;
  const rpc::MethodPlan* plan = nullptr;
  nb::object loop;                        // the asyncio loop whose future it settles
  nb::object future;                      // settled by settle_async_calls
  kj::Promise<void> in_flight = nullptr;  // dropped: the call is cancelled
  kj::Maybe<capnp::Response<capnp::AnyPointer>> response;
  kj::Maybe<kj::Exception> error;
};

// This thread's calls in flight, by token, and those settled since the last pump (a slot
// of the thread's loop: a forked child starts with none).
struct AsyncCalls {
  uint64_t next_token = 1;
  std::unordered_map<uint64_t, std::unique_ptr<AsyncCall>> calls;
  std::vector<uint64_t> settled;
};

// Runs this thread's loop without sleeping, then settles the futures of `loop` whose calls
// finished: results are set here; failures are listed as (future, token) for the caller
// to raise through async_result() (the error as the blocking call raises it). Calls of a
// loop since closed are dropped. Returns (failures, calls still in flight on this thread).
nb::tuple settle_async_calls(const nb::handle& loop) {
  auto& thread = rpc::thread_loop();
  {
    nb::gil_scoped_release unlocked;  // replies are read; nothing here touches Python
    thread.wait_scope().poll();
  }
  auto* table = thread.find_slot<AsyncCalls>();
  nb::list failures;
  if (table == nullptr) return nb::make_tuple(failures, 0);
  std::vector<uint64_t> later;  // settled calls of another loop, still open
  for (uint64_t token : std::exchange(table->settled, {})) {
    auto found = table->calls.find(token);
    if (found == table->calls.end()) continue;
    AsyncCall& call = *found->second;
    if (!call.loop.is(loop)) {
      if (nb::cast<bool>(call.loop.attr("is_closed")())) {
        table->calls.erase(found);
      } else {
        later.push_back(token);
      }
      continue;
    }
    if (nb::cast<bool>(call.future.attr("cancelled")())) {
      table->calls.erase(found);
      continue;
    }
    KJ_IF_MAYBE (response, call.response) {
      nb::object result =
          results_to_python(response->getAs<capnp::DynamicStruct>(call.plan->results_schema), call.plan->results);
      nb::object future = std::move(call.future);
      table->calls.erase(found);
      future.attr("set_result")(result);
    } else {
      failures.append(nb::make_tuple(call.future, token));
      call.future = nb::none();
    }
  }
  table->settled = std::move(later);
  return nb::make_tuple(failures, table->calls.size());
}

// A failed call's error raised (as the blocking call raises it), once settle_async_calls
// has listed it; KeyError for a token that is not a failed call of this thread.
void async_result(uint64_t token) {
  auto* table = rpc::thread_loop().find_slot<AsyncCalls>();
  auto it = table == nullptr ? decltype(table->calls)::iterator{} : table->calls.find(token);
  if (table == nullptr || it == table->calls.end()) throw KeyError("no call " + std::to_string(token));
  auto call = std::move(it->second);
  table->calls.erase(it);
  KJ_IF_MAYBE (error, call->error) {
    if (error->getType() == kj::Exception::Type::DISCONNECTED) rpc::drop_connection(*call->endpoint);
    rpc::rethrow_local(*error);
  }
  throw ValueError("call " + std::to_string(token) + " did not fail");
}

// Drops a call: one in flight is cancelled (the server drops it if it has not answered;
// see allow_cancellation_note in server_core.h), a settled one forgotten.
void cancel_async_call(uint64_t token) {
  auto* table = rpc::thread_loop().find_slot<AsyncCalls>();
  if (table == nullptr) return;
  table->calls.erase(token);
  std::erase(table->settled, token);
}

}  // namespace

nb::tuple RemoteObject::call_async(const std::string& method, const nb::tuple& args, const nb::dict& kwargs,
                                   const nb::object& loop, const nb::object& future) const {
  const auto& plan = rpc::plan_of(interface, method);
  rpc::DynamicCall request(ref, plan, rpc::Transport::kEventLoop);
  fill(request, args, kwargs);
  auto& table = rpc::thread_loop().slot<AsyncCalls>();
  const uint64_t token = table.next_token++;
  auto call = std::make_unique<AsyncCall>();
  call->endpoint = ref->endpoint;
  call->plan = &plan;
  call->loop = loop;
  call->future = future;
  AsyncCall* settling = call.get();
  call->in_flight = request.send_async()
                        .then(
                            [settling, token, &table](capnp::Response<capnp::AnyPointer>&& response) {
                              settling->response = kj::mv(response);
                              table.settled.push_back(token);
                            },
                            [settling, token, &table](kj::Exception&& error) {
                              settling->error = kj::mv(error);
                              table.settled.push_back(token);
                            })
                        .eagerlyEvaluate(nullptr);
  table.calls.emplace(token, std::move(call));
  const int fd = rpc::connection_for(*ref->endpoint, rpc::Transport::kEventLoop).fileno();
  return nb::make_tuple(token, rpc::batchable(plan, kind), fd);
}

int RemoteObject::async_fileno() const {
  try {
    return rpc::connection_for(*ref->endpoint, rpc::Transport::kEventLoop).fileno();
  } catch (const kj::Exception& e) {
    rpc::rethrow_local(e);
  }
}

nb::object remote_object(schema::Kind kind, std::shared_ptr<const rpc::ObjectRef> ref) {
  if (kind != schema::Kind::USER) return nb::cast(RemoteObject{std::move(ref), rpc::interface_of(kind), kind});
  // Of users' interfaces, Python calls the Dynamic one (types registered from Python).
  if (ref->interface_id != capnp::typeId<schema::Dynamic>()) return nb::none();
  return nb::cast(RemoteObject{std::move(ref), capnp::Schema::from<schema::Dynamic>(), kind});
}

nb::object RemoteObject::call(const std::string& method, const nb::tuple& args, const nb::dict& kwargs) const {
  std::optional<rpc::DynamicCall> request;
  const auto& plan = rpc::plan_of(interface, method);
  if (rpc::has_connection(*ref->endpoint)) {
    request.emplace(ref, plan);
  } else {
    nb::gil_scoped_release unlocked;  // connects first
    request.emplace(ref, plan);
  }
  fill(*request, args, kwargs);
  capnp::DynamicStruct::Reader results;
  {
    nb::gil_scoped_release unlocked;
    results = request->send();
  }
  return results_to_python(results, request->plan().results);
}

void fill_call(rpc::DynamicCall& call, const nb::tuple& args, const nb::dict& kwargs) { fill(call, args, kwargs); }

void register_remote_objects(nb::module_& m) {
  m.def("settle_async_calls", &settle_async_calls, nb::arg("loop"),
        "Runs this thread's event loop without sleeping and sets the results of `loop`'s calls that "
        "finished; returns (failures as (future, token) pairs for async_result(), calls in flight).");
  m.def("async_result", &async_result, nb::arg("token"),
        "Raises a failed call's error, as RemoteObject.call() raises it.");
  m.def("cancel_async_call", &cancel_async_call, nb::arg("token"),
        "Drops a call: one in flight is cancelled, a settled one forgotten.");
  nb::class_<RemoteObject>(m, "RemoteObject",
                           "A Manager's shared object; call() reaches its methods by their names in "
                           "schema/xproc/manager.capnp.")
      .def(
          "call",
          [](const RemoteObject& self, const std::string& method, nb::args args, nb::kwargs kwargs) {
            return self.call(method, args, kwargs);
          },
          nb::arg("method"), nb::arg("args"), nb::arg("kwargs"),
          "Calls `method` (its schema name, as 'getItem') with parameters in schema order or by "
          "schema name; the result's one field, a tuple of several, or None.")
      .def("call_async", &RemoteObject::call_async, nb::arg("method"), nb::arg("args"), nb::arg("kwargs"),
           nb::arg("loop"), nb::arg("future"),
           "Sends `method` as call() would, on this thread's event-loop connection, without waiting; "
           "settle_async_calls(loop) settles `future`. Returns (token, batched, the connection's socket): "
           "a batched call leaves with the others of its loop turn and runs even if cancelled afterwards.")
      .def("async_fileno", &RemoteObject::async_fileno,
           "The socket of this thread's event-loop connection to the object's manager: readable "
           "when replies may have come.")
      .def("has_method",
           [](const RemoteObject& self, const std::string& method) {
             return self.interface.findMethodByName(method.c_str()) != nullptr;
           })
      .def_prop_ro(
          "id", [](const RemoteObject& self) { return self.ref->id; },
          "The object's id on its manager (what attach() takes).")
      .def_prop_ro("kind", [](const RemoteObject& self) { return kind_name(self.kind); })
      .def_prop_ro(
          "manager_instance",
          [](const RemoteObject& self) {
            nb::gil_scoped_release unlocked;
            return rpc::instance_of(*self.ref->endpoint);
          },
          "Its manager's instance number (Manager.instance).")
      .def("__repr__",
           [](const RemoteObject& self) { return nb::cast<std::string>(self.call("repr", nb::tuple(), nb::dict())); });
}

}  // namespace xproc::python
