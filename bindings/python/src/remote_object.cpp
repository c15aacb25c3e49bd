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

#include <memory>
#include <string>
#include <string_view>

#include "bindings.h"
#include "python_values.h"
#include "remote_object.h"
#include "xproc/errors.h"
#include "xproc/rpc/dynamic_call.h"

namespace xproc::python {
namespace {

std::string_view name_of(capnp::StructSchema::Field field) {
  const auto name = field.getProto().getName();
  return {name.begin(), name.size()};
}

bool is_struct(capnp::Type type, capnp::StructSchema schema) { return type.isStruct() && type.asStruct() == schema; }

// A list field of `count` elements, the Value or Entry elements written by `write`.
template <typename Element, typename Write>
void fill_list(capnp::DynamicStruct::Builder params, capnp::StructSchema::Field field, nb::handle items,
               Write&& write) {
  nb::list sequence = nb::list(items);
  auto list = params.init(field, static_cast<unsigned>(nb::len(sequence))).as<capnp::List<Element>>();
  unsigned i = 0;
  for (nb::handle item : sequence) write(list[i++], item);
}

void set_from_python(capnp::DynamicStruct::Builder params, capnp::StructSchema::Field field, nb::handle object) {
  const capnp::Type type = field.getType();
  const auto value_schema = capnp::Schema::from<schema::Value>();
  if (is_struct(type, value_schema)) {
    write_value(object, params.init(field).as<schema::Value>());
    return;
  }
  if (is_struct(type, capnp::Schema::from<schema::Slice>())) {
    auto slice = params.init(field).as<schema::Slice>();
    nb::object start = object.attr("start"), stop = object.attr("stop"), step = object.attr("step");
    slice.setHasStart(!start.is_none());
    if (!start.is_none()) slice.setStart(nb::cast<int64_t>(start));
    slice.setHasStop(!stop.is_none());
    if (!stop.is_none()) slice.setStop(nb::cast<int64_t>(stop));
    if (!step.is_none()) slice.setStep(nb::cast<int64_t>(step));
    return;
  }
  if (type.isList()) {
    const capnp::Type element = type.asList().getElementType();
    if (is_struct(element, value_schema)) {
      fill_list<schema::Value>(params, field, object,
                               [](schema::Value::Builder out, nb::handle item) { write_value(item, out); });
      return;
    }
    if (is_struct(element, capnp::Schema::from<schema::Value::Entry>())) {
      nb::object pairs = nb::isinstance<nb::dict>(object) ? nb::borrow<nb::dict>(object).items() : nb::borrow(object);
      fill_list<schema::Value::Entry>(params, field, pairs, [](schema::Value::Entry::Builder out, nb::handle pair) {
        nb::tuple kv = nb::tuple(pair);
        if (nb::len(kv) != 2) throw nb::type_error("expected (key, value) pairs");
        write_value(kv[0], out.initKey());
        write_value(kv[1], out.initValue());
      });
      return;
    }
  }
  switch (type.which()) {
    case capnp::schema::Type::TEXT: {
      const std::string text = nb::cast<std::string>(object);
      params.set(field, capnp::Text::Reader(text.c_str(), text.size()));
      return;
    }
    case capnp::schema::Type::DATA: {
      nb::bytes bytes = nb::cast<nb::bytes>(object);
      params.set(field, capnp::Data::Reader(reinterpret_cast<const kj::byte*>(bytes.c_str()), bytes.size()));
      return;
    }
    case capnp::schema::Type::BOOL: rpc::set_param(params, field, nb::cast<bool>(object)); return;
    case capnp::schema::Type::INT8:
    case capnp::schema::Type::INT16:
    case capnp::schema::Type::INT32:
    case capnp::schema::Type::INT64: rpc::set_param(params, field, nb::cast<int64_t>(object)); return;
    case capnp::schema::Type::UINT8:
    case capnp::schema::Type::UINT16:
    case capnp::schema::Type::UINT32:
    case capnp::schema::Type::UINT64: rpc::set_param(params, field, nb::cast<uint64_t>(object)); return;
    case capnp::schema::Type::FLOAT32:
    case capnp::schema::Type::FLOAT64:
      if (name_of(field) == "timeout") {
        rpc::set_param(params, field,
                       object.is_none() ? Timeout() : Timeout(std::chrono::duration<double>(nb::cast<double>(object))));
      } else {
        params.set(field, nb::cast<double>(object));
      }
      return;
    default: break;
  }
  throw nb::type_error(("parameter '" + std::string(name_of(field)) + "' cannot be given from Python").c_str());
}

void fill(rpc::DynamicCall& call, const nb::tuple& args, const nb::dict& kwargs) {
  const auto fields = call.positional();
  if (nb::len(args) > fields.size()) throw nb::type_error("too many arguments");
  auto give = [&](capnp::StructSchema::Field field, nb::handle object) {
    set_from_python(call.params(), field, object);
    call.given(field);
  };
  for (size_t i = 0; i < nb::len(args); ++i) give(fields[i], args[i]);
  for (auto [key, object] : kwargs) {
    const std::string name = nb::cast<std::string>(key);
    KJ_IF_MAYBE (field, call.params_schema().findFieldByName(name.c_str())) {
      give(*field, object);
    } else {
      throw nb::type_error(("no parameter '" + name + "'").c_str());
    }
  }
}

nb::object to_python(capnp::DynamicValue::Reader value, capnp::Type type, bool as_key) {
  if (is_struct(type, capnp::Schema::from<schema::Value>())) return read_value(value.as<schema::Value>(), as_key);
  if (type.isList()) {
    const capnp::Type element = type.asList().getElementType();
    nb::list out;
    if (is_struct(element, capnp::Schema::from<schema::Value::Entry>())) {
      for (auto entry : value.as<capnp::List<schema::Value::Entry>>()) {
        out.append(nb::make_tuple(read_value(entry.getKey(), true), read_value(entry.getValue())));
      }
      return out;
    }
    for (auto item : value.as<capnp::DynamicList>()) out.append(to_python(item, element, as_key));
    return out;
  }
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
    default: break;
  }
  throw nb::type_error("a result Python cannot hold");
}

nb::object results_to_python(capnp::DynamicStruct::Reader results) {
  auto fields = results.getSchema().getFields();
  auto field_value = [&](capnp::StructSchema::Field field) {
    const std::string_view name = name_of(field);
    return to_python(results.get(field), field.getType(), name == "key" || name == "keys");
  };
  if (fields.size() == 0) return nb::none();
  if (fields.size() == 1) return field_value(fields[0]);
  nb::list out;
  for (auto field : fields) out.append(field_value(field));
  return nb::tuple(out);
}

// The Python spelling of a kind: the schema's enumerant in snake case ("joinable_queue").
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

nb::object remote_object(schema::Kind kind, std::shared_ptr<const rpc::ObjectRef> ref) {
  if (kind == schema::Kind::USER) return nb::none();  // Python has no proxy for a user's interface
  return nb::cast(RemoteObject{std::move(ref), rpc::interface_of(kind), kind});
}

nb::object RemoteObject::call(const std::string& method, const nb::tuple& args, const nb::dict& kwargs) const {
  std::optional<rpc::DynamicCall> request;
  {
    nb::gil_scoped_release unlocked;  // may connect first
    request.emplace(ref, interface, method);
  }
  fill(*request, args, kwargs);
  capnp::DynamicStruct::Reader results;
  {
    nb::gil_scoped_release unlocked;
    results = request->send();
  }
  return results_to_python(results);
}

void fill_call(rpc::DynamicCall& call, const nb::tuple& args, const nb::dict& kwargs) { fill(call, args, kwargs); }

void register_remote_objects(nb::module_& m) {
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
