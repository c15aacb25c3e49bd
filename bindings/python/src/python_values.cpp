// See python_values.h. The hot paths (put and get of small dicts and lists) use the
// CPython API directly: exact-type checks first, so the common kinds cost one pointer
// comparison each, and pycapnp is only looked at for objects of no other kind.
#include "python_values.h"

#include <capnp/serialize.h>
#include <kj/exception.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <string>
#include <vector>

#include "python_arrays.h"
#include "xproc/errors.h"
#include "xproc/kj_errors_internal.h"
#include "xproc/message.h"
#include "xproc/value_decoding_internal.h"

namespace xproc::python {
namespace {

constexpr int kNestingLimit = 64;  // as DecodeLimits: what one side writes, the other reads

// Schema id -> pycapnp struct module (what `read_multiple_bytes` is called on), for the
// struct types this process has sent or registered. Only touched with the GIL held.
nb::dict& known_structs() {
  static nb::dict* structs = new nb::dict();  // never destroyed: lives as long as the module
  return *structs;
}

// str() of the pending Python exception, which is cleared.
std::string take_error_message() {
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  std::string message;
  if (PyObject* text = value != nullptr ? PyObject_Str(value) : nullptr) {
    if (const char* utf8 = PyUnicode_AsUTF8(text)) message = utf8;
    Py_DECREF(text);
  }
  PyErr_Clear();
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(traceback);
  return message;
}

// The str for UTF-8 `text` of a received Value. Text that is not UTF-8 (another language
// may send any bytes) has no str: DecodeError, as for any Value Python has no object for.
PyObject* received_str(const char* text, size_t size) {
  PyObject* str = PyUnicode_DecodeUTF8(text, static_cast<Py_ssize_t>(size), nullptr);
  if (str == nullptr) {
    throw DecodeError("a Value's text is not UTF-8 (" + take_error_message() + ")");
  }
  return str;
}

// Dict keys recur from message to message ("id", "name" ...). Handing out the str made
// for the same bytes last time saves decoding it, allocating it and hashing it again
// (a str caches its hash), a sixth of decoding a small dict. Direct-mapped, short keys
// only; only touched with the GIL held; the strs it holds live as long as the module.
class KeyCache {
 public:
  static constexpr size_t kMaxKeyBytes = 32;

  // A new reference to a str of `text` (valid UTF-8 checked by the decoder as usual).
  PyObject* get(const char* text, size_t size) {
    if (size > kMaxKeyBytes) return decode(text, size);
    Slot& slot = slots_[hash(text, size) % kSlots];
    if (slot.str != nullptr && slot.size == size && std::memcmp(slot.bytes, text, size) == 0) {
      Py_INCREF(slot.str);
      return slot.str;
    }
    PyObject* str = decode(text, size);
    Py_XDECREF(slot.str);
    Py_INCREF(str);
    slot.str = str;
    slot.size = size;
    std::memcpy(slot.bytes, text, size);
    return str;
  }

 private:
  static constexpr size_t kSlots = 64;
  struct Slot {
    PyObject* str = nullptr;
    size_t size = 0;
    char bytes[kMaxKeyBytes];
  };
  static PyObject* decode(const char* text, size_t size) { return received_str(text, size); }
  static size_t hash(const char* text, size_t size) {  // FNV-1a
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; ++i) h = (h ^ static_cast<unsigned char>(text[i])) * 1099511628211ull;
    return static_cast<size_t>(h ^ (h >> 32));
  }
  Slot slots_[kSlots];
};

KeyCache& key_cache() {
  static KeyCache* cache = new KeyCache();  // never destroyed, like known_structs
  return *cache;
}

bool is_pycapnp_struct(PyTypeObject* type, bool* is_builder) {
  const char* name = type->tp_name;
  if (std::strcmp(name, "capnp.lib.capnp._DynamicStructBuilder") == 0) {
    *is_builder = true;
    return true;
  }
  if (std::strcmp(name, "capnp.lib.capnp._DynamicStructReader") == 0) {
    *is_builder = false;
    return true;
  }
  return false;
}

void remember_struct(nb::handle schema) {
  nb::object id = schema.attr("node").attr("id");
  if (known_structs().contains(id)) return;
  nb::object module_type = nb::module_::import_("capnp.lib.capnp").attr("_StructModule");
  nb::str display_name = nb::str(schema.attr("node").attr("displayName"));
  known_structs()[id] = module_type(schema, display_name);
}

[[noreturn]] void unsupported(nb::handle object) {
  throw nb::type_error(("xproc cannot send an object of type '" + std::string(Py_TYPE(object.ptr())->tp_name) +
                        "' (supported: None, bool, int, float, str, bytes, list, tuple, dict, "
                        "arrays and buffers (numpy, bytearray, memoryview, array.array), "
                        "pycapnp structs, Manager proxies, Connections and sockets)")
                           .c_str());
}

// `referred`: where a message that is copied out before the objects can change or go keeps
// the large bytes objects and buffers it refers to (so their bytes are copied once, from
// the object to where the message goes); nullptr copies everything into the builder.
void write(PyObject* object, schema::Value::Builder builder, int depth, ReferredMemory* referred);

// A Manager proxy (xproc.managers.BaseProxy, or an xproc.ProxyRef this process could not
// resolve) answers _xproc_proxy_ref() with (manager instance, object id). False for any
// other object.
bool write_proxy(PyObject* object, schema::Value::Builder builder) {
  nb::handle handle(object);
  if (!nb::hasattr(handle, "_xproc_proxy_ref")) return false;
  nb::tuple ref = nb::cast<nb::tuple>(handle.attr("_xproc_proxy_ref")());
  auto out = builder.initProxy();
  out.setManager(nb::cast<uint64_t>(ref[0]));
  out.setId(nb::cast<uint64_t>(ref[1]));
  return true;
}

// A Connection or a socket: xproc._handles.share shares its descriptors and
// answers (sharer, keys, kind, details), or None for any other object. It travels as a
// typed struct of schema Handle (value.capnp).
// (The function is looked up on each call, so that a test can replace it.)
nb::object handles_module() {
  static nb::object* module = new nb::object(nb::module_::import_("xproc._handles"));  // never destroyed
  return *module;
}

bool write_handle(PyObject* object, schema::Value::Builder builder, int depth, ReferredMemory* referred) {
  nb::object shared = handles_module().attr("share")(nb::handle(object));
  if (shared.is_none()) return false;
  auto fields = nb::cast<nb::tuple>(shared);
  auto out = builder.initStruct();
  out.setSchemaId(capnp::typeId<schema::Handle>());
  auto handle = out.getValue().initAs<schema::Handle>();
  const auto sharer = nb::cast<std::string>(fields[0]);
  handle.setSharer(capnp::Text::Reader(sharer.data(), sharer.size()));
  const auto keys = nb::cast<std::vector<uint64_t>>(fields[1]);
  auto key_list = handle.initKeys(static_cast<unsigned>(keys.size()));
  for (unsigned i = 0; i < keys.size(); ++i) key_list.set(i, keys[i]);
  const auto kind = nb::cast<std::string>(fields[2]);
  handle.setKind(capnp::Text::Reader(kind.data(), kind.size()));
  write(fields[3].ptr(), handle.initDetails(), depth + 1, referred);
  return true;
}

// What one message's decoding carries from Value to Value: its allowance of elements that
// take no bytes, and, for get_view, where its arrays' views come from.
struct Decoding {
  detail::EmptyElementBudget budget;
  RecordViews* views = nullptr;
};

nb::object read(schema::Value::Reader reader, bool as_key, int depth, Decoding& decoding);

// The object a received Handle stands for: xproc._handles.take fetches its
// descriptors from the sending process and rebuilds it.
nb::object read_handle(schema::Handle::Reader handle, int depth, Decoding& decoding) {
  auto sharer = handle.getSharer();
  auto kind = handle.getKind();
  nb::list keys;
  for (uint64_t key : handle.getKeys()) keys.append(key);
  nb::object details = read(handle.getDetails(), false, depth + 1, decoding);
  return handles_module().attr("take")(nb::steal(received_str(sharer.cStr(), sharer.size())), keys,
                                       nb::steal(received_str(kind.cStr(), kind.size())), details);
}

// The object for a received proxy: xproc._proxy_refs.resolve makes a proxy when this
// process uses that manager, else an xproc.ProxyRef.
nb::object read_proxy(schema::Value::Proxy::Reader proxy) {
  static nb::object* resolve = new nb::object(  // never destroyed, like known_structs
      nb::module_::import_("xproc._proxy_refs").attr("resolve"));
  return (*resolve)(proxy.getManager(), proxy.getId());
}

void write_items(PyObject* const* items, capnp::List<schema::Value>::Builder list, int depth,
                 ReferredMemory* referred) {
  for (unsigned i = 0; i < list.size(); ++i) write(items[i], list[i], depth + 1, referred);
}

void write_struct(PyObject* object, bool is_builder, schema::Value::Builder builder) {
  nb::handle handle(object);
  nb::object schema = handle.attr("schema");
  remember_struct(schema);
  nb::object source = is_builder ? nb::borrow(handle) : handle.attr("as_builder")();
  nb::bytes bytes = nb::bytes(source.attr("to_bytes")());
  kj::Array<capnp::word> copy;
  capnp::FlatArrayMessageReader reader(
      detail::as_words({reinterpret_cast<const std::byte*>(bytes.c_str()), bytes.size()}, copy));
  auto out = builder.initStruct();
  out.setSchemaId(nb::cast<uint64_t>(schema.attr("node").attr("id")));
  out.getValue().setAs<capnp::AnyStruct>(reader.getRoot<capnp::AnyStruct>());
}

// value.capnp's bigInt: an int past 64 bits, as its two's-complement bytes (little-endian),
// at most kLargestBigInt of them.
constexpr size_t kLargestBigInt = 4096;

void write_big_int(PyObject* object, schema::Value::Builder builder) {
  nb::handle value(object);
  const size_t size = nb::cast<size_t>(value.attr("bit_length")()) / 8 + 1;  // and the sign bit
  if (size > kLargestBigInt) {
    PyErr_SetString(PyExc_OverflowError, "xproc sends ints of up to 32767 bits; this one is larger");
    throw nb::python_error();
  }
  nb::bytes bytes = nb::cast<nb::bytes>(value.attr("to_bytes")(size, "little", nb::arg("signed") = true));
  builder.setBigInt(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(bytes.c_str()), bytes.size()));
}

nb::object read_big_int(capnp::Data::Reader data) {
  if (data.size() <= sizeof(int64_t) || data.size() > kLargestBigInt) {
    throw DecodeError("a bigInt of " + std::to_string(data.size()) + " bytes (9 to 4096 are valid)");
  }
  nb::bytes bytes(reinterpret_cast<const char*>(data.begin()), data.size());
  return nb::handle(reinterpret_cast<PyObject*>(&PyLong_Type))
      .attr("from_bytes")(bytes, "little", nb::arg("signed") = true);
}

void write(PyObject* object, schema::Value::Builder builder, int depth, ReferredMemory* referred) {
  if (depth >= kNestingLimit) {
    throw nb::value_error("xproc cannot send an object nested deeper than 64 levels (or one that contains itself)");
  }
  PyTypeObject* type = Py_TYPE(object);
  if (object == Py_None) {
    builder.setNull();
  } else if (type == &PyBool_Type) {
    builder.setBool(object == Py_True);
  } else if (type == &PyLong_Type) {
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(object, &overflow);
    if (overflow != 0) {
      write_big_int(object, builder);
    } else {
      builder.setInt64(value);
    }
  } else if (type == &PyFloat_Type) {
    builder.setFloat64(PyFloat_AS_DOUBLE(object));
  } else if (type == &PyUnicode_Type) {
    Py_ssize_t size = 0;
    const char* text = PyUnicode_AsUTF8AndSize(object, &size);
    if (text == nullptr) throw nb::python_error();
    builder.setText(capnp::Text::Reader(text, static_cast<size_t>(size)));
  } else if (type == &PyBytes_Type) {
    const capnp::Data::Reader data(reinterpret_cast<const kj::byte*>(PyBytes_AS_STRING(object)),
                                   static_cast<size_t>(PyBytes_GET_SIZE(object)));
    if (referred != nullptr && ReferredMemory::fits(data.begin(), data.size())) {
      builder.adoptData(capnp::Orphanage::getForMessageContaining(builder).referenceExternalData(data));
      referred->keep(object);  // alive whatever other threads do to its containers meanwhile
    } else {
      builder.setData(data);
    }
  } else if (type == &PyDict_Type) {
    auto entries = builder.initMap(static_cast<unsigned>(PyDict_GET_SIZE(object)));
    Py_ssize_t position = 0;
    PyObject* key = nullptr;
    PyObject* value = nullptr;
    unsigned i = 0;
    while (PyDict_Next(object, &position, &key, &value)) {
      write(key, entries[i].initKey(), depth + 1, referred);
      write(value, entries[i].initValue(), depth + 1, referred);
      ++i;
    }
  } else if (type == &PyList_Type) {
    write_items(&PyList_GET_ITEM(object, 0), builder.initList(static_cast<unsigned>(PyList_GET_SIZE(object))), depth,
                referred);
  } else if (type == &PyTuple_Type) {
    write_items(&PyTuple_GET_ITEM(object, 0), builder.initTuple(static_cast<unsigned>(PyTuple_GET_SIZE(object))), depth,
                referred);
  } else if (bool is_builder = false; is_pycapnp_struct(type, &is_builder)) {
    write_struct(object, is_builder, builder);
  } else if (PyObject_CheckBuffer(object) != 0) {
    write_array(object, builder, referred);
  } else if (!write_proxy(object, builder) && !write_handle(object, builder, depth, referred)) {
    unsupported(object);
  }
}

// A list's or a tuple's items, as a tuple or a list.
nb::object read_items(capnp::List<schema::Value>::Reader items, bool as_tuple, bool as_key, int depth,
                      Decoding& decoding) {
  decoding.budget.charge(items);
  const auto size = static_cast<Py_ssize_t>(items.size());
  nb::object result = nb::steal(as_tuple ? PyTuple_New(size) : PyList_New(size));
  for (Py_ssize_t i = 0; i < size; ++i) {
    PyObject* item = read(items[static_cast<unsigned>(i)], as_key, depth + 1, decoding).release().ptr();
    if (as_tuple) {
      PyTuple_SET_ITEM(result.ptr(), i, item);
    } else {
      PyList_SET_ITEM(result.ptr(), i, item);
    }
  }
  return result;
}

nb::object read(schema::Value::Reader reader, bool as_key, int depth, Decoding& decoding) {
  if (depth >= kNestingLimit) throw DecodeError("Value nested deeper than the decode limit");
  switch (reader.which()) {
    case schema::Value::NULL_: return nb::none();
    case schema::Value::BOOL: return nb::bool_(reader.getBool());
    case schema::Value::INT64: return nb::steal(PyLong_FromLongLong(reader.getInt64()));
    case schema::Value::BIG_INT: return read_big_int(reader.getBigInt());
    case schema::Value::FLOAT64: return nb::steal(PyFloat_FromDouble(reader.getFloat64()));
    case schema::Value::TEXT: {
      auto text = reader.getText();
      if (as_key) return nb::steal(key_cache().get(text.cStr(), text.size()));
      return nb::steal(received_str(text.cStr(), text.size()));
    }
    case schema::Value::DATA: {
      auto data = reader.getData();
      return nb::steal(
          PyBytes_FromStringAndSize(reinterpret_cast<const char*>(data.begin()), static_cast<Py_ssize_t>(data.size())));
    }
    case schema::Value::LIST: return read_items(reader.getList(), as_key, as_key, depth, decoding);
    case schema::Value::TUPLE: return read_items(reader.getTuple(), true, as_key, depth, decoding);
    case schema::Value::MAP: {
      nb::object result = nb::steal(PyDict_New());
      auto entries = reader.getMap();
      decoding.budget.charge(entries);
      for (auto entry : entries) {
        nb::object key = read(entry.getKey(), true, depth + 1, decoding);
        nb::object value = read(entry.getValue(), false, depth + 1, decoding);
        // Duplicate keys: the last value wins, as in a dict display {k: 1, k: 2}.
        if (PyDict_SetItem(result.ptr(), key.ptr(), value.ptr()) != 0) {
          // A key Python cannot hash: a dict (C++ and other languages may use one as a
          // key), or a struct. No dict holds it.
          if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw nb::python_error();
          throw DecodeError("a dict key Python cannot hold (" + take_error_message() + ")");
        }
      }
      return result;
    }
    case schema::Value::STRUCT: {
      auto s = reader.getStruct();
      if (s.getSchemaId() == capnp::typeId<schema::Handle>()) {
        return read_handle(s.getValue().getAs<schema::Handle>(), depth, decoding);
      }
      auto words = serialize(s.getValue().getAs<capnp::AnyStruct>());
      return pycapnp_reader(
          s.getSchemaId(), nb::bytes(reinterpret_cast<const char*>(words.begin()), words.size() * sizeof(capnp::word)));
    }
    case schema::Value::PROXY: return read_proxy(reader.getProxy());
    case schema::Value::ARRAY:
      // Refused before it is made: hashing a numpy array raises TypeError, but a writable
      // memoryview (what arrives without numpy) raises ValueError.
      if (as_key) throw DecodeError("a dict key Python cannot hold (an array)");
      return read_array(reader.getArray(), decoding.views);
  }
  throw DecodeError("unknown Value kind " + std::to_string(static_cast<int>(reader.which())));
}

// A struct of a schema this process does not know: its id and bytes, readable later with
// the right pycapnp type (Struct.read(schema)).
struct Struct {
  uint64_t schema_id;
  nb::bytes message;
};

}  // namespace

void write_value(nb::handle object, schema::Value::Builder builder) { write(object.ptr(), builder, 0, nullptr); }

nb::object read_value(schema::Value::Reader reader, bool as_key) {
  try {
    Decoding decoding;
    return read(reader, as_key, 0, decoding);
  } catch (const kj::Exception& e) {
    detail::rethrow_kj(e, ErrorKind::kDecodeError, "invalid Value: ");
  }
}

capnp::MallocMessageBuilder& encode_value(nb::handle object, capnp::MallocMessageBuilder& builder,
                                          ReferredMemory& referred) {
  write(object.ptr(), builder.initRoot<schema::Value>(), 0, &referred);
  return builder;
}

nb::object decode_value(std::span<const std::byte> message, RecordViews* views) {
  return detail::with_validated_root<schema::Value, detail::Reads::kAll>(
      message, DecodeLimits{}, [views](schema::Value::Reader root) {
        try {
          Decoding decoding;
          decoding.views = views;
          return read(root, false, 0, decoding);
        } catch (const kj::Exception& e) {
          detail::rethrow_kj(e, ErrorKind::kDecodeError, "invalid Value: ");
        }
      });
}

Value to_value(nb::handle object) {
  detail::InlineMessageBuilder message;
  ReferredMemory referred;
  encode_value(object, message.builder(), referred);
  return Value::from_capnp(message.builder().getRoot<schema::Value>().asReader());
}

nb::object from_value(const Value& value, bool as_key) {
  detail::InlineMessageBuilder message;
  value.to_capnp(message.builder().initRoot<schema::Value>());
  return read_value(message.builder().getRoot<schema::Value>().asReader(), as_key);
}

std::optional<PycapnpMessage> as_pycapnp_message(nb::handle object) {
  bool is_builder = false;
  if (!is_pycapnp_struct(Py_TYPE(object.ptr()), &is_builder)) return std::nullopt;
  nb::object schema = object.attr("schema");
  remember_struct(schema);
  nb::object source = is_builder ? nb::borrow(object) : object.attr("as_builder")();
  return PycapnpMessage{nb::cast<uint64_t>(schema.attr("node").attr("id")), nb::bytes(source.attr("to_bytes")())};
}

nb::object pycapnp_reader(uint64_t schema_id, nb::bytes message) {
  nb::int_ id(schema_id);
  if (!known_structs().contains(id)) {
    // Maybe a schema this program loaded but never sent (a receiving process, or a child
    // that unpickled a typed queue): the package looks through the loaded capnp modules.
    nb::object found = nb::module_::import_("xproc._schemas").attr("find_struct")(id);
    if (!found.is_none()) known_structs()[id] = found;
  }
  if (known_structs().contains(id)) {
    nb::object messages = known_structs()[id].attr("read_multiple_bytes")(message);
    return nb::iter(messages).attr("__next__")();
  }
  return nb::cast(Struct{schema_id, std::move(message)});
}

void register_values(nb::module_& m) {
  nb::class_<Struct>(m, "Struct",
                     "A Cap'n Proto struct of a schema this process has not seen: its schema id and "
                     "its flat message. Read it with `read(schema)`, or call `register_schema(schema)` "
                     "so such structs arrive as pycapnp readers.")
      .def(nb::init<uint64_t, nb::bytes>(), nb::arg("schema_id"), nb::arg("message"))
      .def_ro("schema_id", &Struct::schema_id)
      .def_ro("message", &Struct::message)
      .def(
          "read",
          [](const Struct& self, nb::handle schema) {
            nb::object messages = schema.attr("read_multiple_bytes")(self.message);
            return nb::object(nb::iter(messages).attr("__next__")());
          },
          nb::arg("schema"), "This struct as a reader of the pycapnp struct type `schema`.")
      .def("__eq__",
           [](const Struct& a, nb::handle b) {
             if (!nb::isinstance<Struct>(b)) return false;
             const Struct& other = nb::cast<const Struct&>(b);
             return a.schema_id == other.schema_id && a.message.equal(other.message);
           })
      // As it compares (by content: it is immutable), so that equal structs are one dict key.
      .def("__hash__", [](const Struct& self) { return nb::hash(nb::make_tuple(self.schema_id, self.message)); })
      .def("__repr__", [](const Struct& self) {
        return "xproc.Struct(schema_id=" + schema_id_hex(self.schema_id) + ", " + std::to_string(self.message.size()) +
               " bytes)";
      });
  m.def(
      "register_schema",
      [](nb::handle struct_type) {
        nb::object id = struct_type.attr("schema").attr("node").attr("id");
        known_structs()[id] = struct_type;
      },
      nb::arg("struct_type"),
      "Makes structs of this pycapnp type arrive as its readers (types sent from this "
      "process are registered on first send).");
  m.def(
      "encode",
      [](AnyObject object) {
        detail::InlineMessageBuilder message;
        ReferredMemory referred;
        auto words = capnp::messageToFlatArray(encode_value(object, message.builder(), referred));
        return nb::bytes(reinterpret_cast<const char*>(words.begin()), words.size() * sizeof(capnp::word));
      },
      nb::arg("object").none(), "The Value message for `object` (its standard flat serialization).");
  m.def(
      "decode",
      [](nb::bytes message) {
        return decode_value({reinterpret_cast<const std::byte*>(message.c_str()), message.size()});
      },
      nb::arg("message"), "The object a Value message holds; DecodeError when it is not one.");
}

}  // namespace xproc::python
