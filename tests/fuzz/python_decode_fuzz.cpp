// The Python decoder's C++ core (bindings/python/src/python_values.cpp) on arbitrary bytes,
// in an embedded CPython, called as Python code calls it: the extension's `decode`, through
// nanobind and the extension's exception translator. Arbitrary bytes give an object or
// xproc.DecodeError (the documented exception), nothing else.
//
// And against the C++ decoder (xproc::Value::decode): Python accepts only what C++ accepts,
// and refuses more only where Python has no object for the Value (text that is not UTF-8,
// a dict as a dict key); what it accepts it encodes back to exactly the bytes C++ encodes
// the same Value to (a struct aside: it comes back as an xproc.Struct, which is not sent),
// with a list inside a dict key as a tuple (Python's key must be hashable).
#include <Python.h>

#include <string>

#include "bindings.h"
#include "fuzz_check.h"
#include "value_parts.h"
#include "xproc/message.h"
#include "xproc/value.h"

NB_MODULE(_xproc, m) {
  xproc::python::register_errors(m);
  xproc::python::register_values(m);
}

namespace {

using xproc::Value;

PyObject* decode_function = nullptr;
PyObject* encode_function = nullptr;
PyObject* decode_error = nullptr;

bool valid_utf8(const std::string& text) {
  PyObject* str = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), nullptr);
  if (str == nullptr) {
    PyErr_Clear();
    return false;
  }
  Py_DECREF(str);
  return true;
}

// Whether some part of the message has no Python object: text that is not UTF-8, a dict
// where a dict key is (lists there become tuples, which hash only if their items do), a
// Handle (whose descriptors this target does not fetch). The
// message, not the C++ Value: Python reads every entry of a map, also one whose key comes
// again later and whose value C++ therefore drops.
bool python_refuses(xproc::schema::Value::Reader v, bool as_key) {
  switch (v.which()) {
    case xproc::schema::Value::TEXT: {
      auto text = v.getText();
      return !valid_utf8(std::string(text.cStr(), text.size()));
    }
    case xproc::schema::Value::MAP: {
      if (as_key) return true;
      for (auto entry : v.getMap()) {
        if (python_refuses(entry.getKey(), true) || python_refuses(entry.getValue(), false)) return true;
      }
      return false;
    }
    case xproc::schema::Value::LIST:
      for (auto item : v.getList()) {
        if (python_refuses(item, as_key)) return true;
      }
      return false;
    case xproc::schema::Value::TUPLE:
      for (auto item : v.getTuple()) {
        if (python_refuses(item, as_key)) return true;
      }
      return false;
    case xproc::schema::Value::STRUCT: return v.getStruct().getSchemaId() == capnp::typeId<xproc::schema::Handle>();
    case xproc::schema::Value::ARRAY: {
      // An array is no dict key (numpy arrays and writable memoryviews are unhashable), and
      // numpy and memoryview index with a Py_ssize_t: every dimension, and the product of
      // the non-zero ones in bytes, must fit one.
      if (as_key) return true;
      const auto dtype = static_cast<size_t>(v.getArray().getDtype());
      uint64_t extent = dtype <= static_cast<size_t>(xproc::DType::kComplex128)
                            ? xproc::itemsize(static_cast<xproc::DType>(dtype))
                            : 1;
      for (uint64_t length : v.getArray().getShape()) {
        if (length > uint64_t{PY_SSIZE_T_MAX}) return true;
        if (length != 0 && (__builtin_mul_overflow(extent, length, &extent) || extent > uint64_t{PY_SSIZE_T_MAX})) {
          return true;
        }
      }
      return false;
    }
    default: return false;
  }
}

bool python_refuses(std::span<const std::byte> message) {
  return xproc::detail::with_validated_root<xproc::schema::Value, xproc::detail::Reads::kAll>(
      message, xproc::DecodeLimits{}, [](xproc::schema::Value::Reader root) { return python_refuses(root, false); });
}

// Whether the message holds an int past 64 bits (a bigInt), which Python reads and C++'s
// Value refuses.
bool holds_big_int(xproc::schema::Value::Reader v) {
  switch (v.which()) {
    case xproc::schema::Value::BIG_INT: return true;
    case xproc::schema::Value::MAP:
      for (auto entry : v.getMap()) {
        if (holds_big_int(entry.getKey()) || holds_big_int(entry.getValue())) return true;
      }
      return false;
    case xproc::schema::Value::LIST:
      for (auto item : v.getList()) {
        if (holds_big_int(item)) return true;
      }
      return false;
    case xproc::schema::Value::TUPLE:
      for (auto item : v.getTuple()) {
        if (holds_big_int(item)) return true;
      }
      return false;
    default: return false;
  }
}

bool holds_big_int(std::span<const std::byte> message) {
  return xproc::detail::with_validated_root<xproc::schema::Value, xproc::detail::Reads::kAll>(
      message, xproc::DecodeLimits{}, [](xproc::schema::Value::Reader root) { return holds_big_int(root); });
}

bool contains_struct(const Value& v) {
  return xproc::fuzz::any_part(v, [](const Value& part) { return part.is_struct(); });
}

// The pending exception's type and message, cleared.
std::string take_error() {
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  std::string what = type != nullptr ? reinterpret_cast<PyTypeObject*>(type)->tp_name : "?";
  if (value != nullptr) {
    if (PyObject* text = PyObject_Str(value)) {
      if (const char* utf8 = PyUnicode_AsUTF8(text)) what += std::string(": ") + utf8;
      Py_DECREF(text);
    }
  }
  PyErr_Clear();
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(traceback);
  return what;
}

PyObject* call(PyObject* function, PyObject* argument) { return PyObject_CallOneArg(function, argument); }

}  // namespace

// The embedded interpreter keeps its own state for the life of the process (it is never
// finalized): at exit that is no leak of the code under test.
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  PyImport_AppendInittab("_xproc", PyInit__xproc);
  Py_InitializeEx(0);  // no signal handlers: libFuzzer has its own
  // A struct of a schema this process does not know is looked up in xproc._schemas, and a
  // proxy resolved by xproc.managers (the package's pure-Python parts, here over the
  // embedded extension); the package's __init__ would import the real extension.
  const std::string setup =
      "import sys, types, _xproc\n"
      "package = types.ModuleType('xproc')\n"
      "package.__path__ = ['" XPROC_SOURCE_DIR
      "/bindings/python/xproc']\n"
      "package._xproc = _xproc\n"
      "sys.modules['xproc'] = package\n"
      "sys.modules['xproc._xproc'] = _xproc\n"
      // A Handle makes Python fetch descriptors from the socket it names: not here.
      "import xproc._handles\n"
      "def refuse(*handle): raise _xproc.DecodeError('the fuzz target fetches no descriptors')\n"
      "xproc._handles.take = refuse\n";
  FUZZ_CHECK(PyRun_SimpleString(setup.c_str()) == 0);
  PyObject* module = PyImport_ImportModule("_xproc");
  FUZZ_CHECK(module != nullptr, "the embedded extension did not import");
  decode_function = PyObject_GetAttrString(module, "decode");
  encode_function = PyObject_GetAttrString(module, "encode");
  decode_error = PyObject_GetAttrString(module, "DecodeError");
  FUZZ_CHECK(decode_function && encode_function && decode_error);
  return 0;
}

namespace {

// The Value Python's object stands for: lists inside a dict key are tuples. (Keys that
// become equal so merge as a dict display's do: the last value at the first key's place.)
Value as_python_holds(const Value& v, bool in_key) {
  if (v.is_list()) {
    Value::List items;
    for (const Value& item : v.as_list()) items.push_back(as_python_holds(item, in_key));
    return in_key || v.is_tuple() ? Value::tuple(std::move(items)) : Value(std::move(items));
  }
  if (v.is_map()) {
    xproc::ValueMap map;
    v.as_map().for_each([&](const Value& key, const Value& item) {
      map.set(as_python_holds(key, true), as_python_holds(item, false));
    });
    return Value(std::move(map));
  }
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  std::optional<Value> cpp;
  try {
    cpp = Value::decode({reinterpret_cast<const std::byte*>(data), size});
  } catch (const xproc::DecodeError&) {
  }

  PyObject* message = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(data), static_cast<Py_ssize_t>(size));
  PyObject* object = call(decode_function, message);
  Py_DECREF(message);
  if (object == nullptr) {
    const bool documented = PyErr_ExceptionMatches(decode_error);
    const std::string what = take_error();
    FUZZ_CHECK(documented, what.c_str());
    FUZZ_CHECK(!cpp || python_refuses(input), ("Python refused a Value C++ decodes: " + what).c_str());
    return 0;
  }
  FUZZ_CHECK(!python_refuses(input), "Python decoded a Value it has no object for");
  if (!cpp) {
    // Only an int past 64 bits is Python's alone: what Python made of it encodes again.
    FUZZ_CHECK(holds_big_int(input), "Python decoded bytes C++ refuses");
    PyObject* again = call(encode_function, object);
    Py_DECREF(object);
    FUZZ_CHECK(again != nullptr || PyErr_ExceptionMatches(PyExc_TypeError), take_error().c_str());
    if (again == nullptr) take_error();  // an xproc.Struct inside is not sent again
    Py_XDECREF(again);
    return 0;
  }

  PyObject* encoded = call(encode_function, object);
  Py_DECREF(object);
  if (contains_struct(*cpp)) {
    // An xproc.Struct (a schema this process has not loaded) is not sent again.
    FUZZ_CHECK(encoded == nullptr && PyErr_ExceptionMatches(PyExc_TypeError));
    take_error();
    return 0;
  }
  FUZZ_CHECK(encoded != nullptr, take_error().c_str());
  const auto expected = as_python_holds(*cpp, false).encode();
  FUZZ_CHECK(static_cast<size_t>(PyBytes_GET_SIZE(encoded)) == expected.size() * sizeof(capnp::word) &&
                 std::memcmp(PyBytes_AS_STRING(encoded), expected.begin(), expected.size() * sizeof(capnp::word)) == 0,
             "Python encodes the decoded object to other bytes than C++ encodes the Value to");
  Py_DECREF(encoded);
  return 0;
}
