// xproc's C++ exceptions become the standard library's: queue.Empty, queue.Full,
// EOFError, multiprocessing.AuthenticationError, KeyError, ... so Python code written
// for multiprocessing catches what it always caught. The two with no standard
// equivalent, MessageTooLarge and DecodeError, are ValueError subclasses.
#include <nanobind/stl/string.h>

#include <cstring>
#include <string>
#include <vector>

#include "bindings.h"
#include "xproc/errors.h"

namespace xproc::python {
namespace {

nb::object attribute(const char* module, const char* name) { return nb::module_::import_(module).attr(name); }

// The standard library's classes are looked up when first raised, not at import: a
// program may itself be called queue.py (the seed's is), and then `import queue` while
// xproc is being imported would find that program instead of the standard module.
// Translators run with the GIL held.
class LazyClass {
 public:
  LazyClass(const char* module, const char* name) : module_(module), name_(name) {}
  PyObject* get() {
    if (!type_.is_valid()) type_ = attribute(module_, name_);
    return type_.ptr();
  }

 private:
  const char* module_;
  const char* name_;
  nb::object type_;
};

// The Python class of each row of XPROC_ERRORS (and of kError, RuntimeError), by kind.
struct PythonErrors {
  std::vector<LazyClass> classes;
  PyObject* message_too_large = nullptr;
  PyObject* decode_error = nullptr;

  PythonErrors() {
    classes.emplace_back("builtins", "RuntimeError");  // ErrorKind::kError
#define XPROC_PYTHON_CLASS(Class, module, status) classes.emplace_back(module, #Class);
    XPROC_ERRORS(XPROC_PYTHON_CLASS)
#undef XPROC_PYTHON_CLASS
  }
  PyObject* type_of(ErrorKind kind) {
    // xproc's own classes are made when the module is (register_errors), not imported.
    if (kind == ErrorKind::kMessageTooLarge) return message_too_large;
    if (kind == ErrorKind::kDecodeError) return decode_error;
    return classes.at(static_cast<size_t>(kind)).get();
  }
};
PythonErrors* errors = nullptr;

// An exception's message as a str. what() may quote bytes from outside that are not UTF-8
// (Cap'n Proto quotes a peer's malformed text, errors quote file names): those are kept as
// \xNN escapes. PyErr_SetString would raise UnicodeDecodeError instead of the exception.
nb::object message_of(const std::exception& e) {
  const char* what = e.what();
  return nb::steal(PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "backslashreplace"));
}

void translate(const std::exception_ptr& pointer, void*) {
  try {
    std::rethrow_exception(pointer);
  } catch (const Error& e) {
    PyObject* type = errors->type_of(e.kind());
    nb::object message = message_of(e);
    if (!type || !message.is_valid()) return;  // the import's or the decoding's error is set
    if (const auto* os = dynamic_cast<const OSError*>(&e)) {
      // OSError(errno, message): Python picks the subclass of the errno, as it does for its own.
      nb::object error = nb::steal(PyObject_CallFunction(type, "iO", os->error_number(), message.ptr()));
      if (error.is_valid()) PyErr_SetObject(type, error.ptr());
      return;
    }
    PyErr_SetObject(type, message.ptr());
  }
  // Anything else (std::exception) falls through to nanobind's default translation
  // (RuntimeError with the message; MemoryError for std::bad_alloc).
}

}  // namespace

void register_errors(nb::module_& m) {
  errors = new PythonErrors();  // lives as long as the process: translators may run at exit
  errors->message_too_large = PyErr_NewExceptionWithDoc(
      "xproc.MessageTooLarge", "A message is larger than the queue or connection accepts.", PyExc_ValueError, nullptr);
  errors->decode_error = PyErr_NewExceptionWithDoc(
      "xproc.DecodeError", "Bytes that are not a valid Cap'n Proto message of the expected type.", PyExc_ValueError,
      nullptr);
  m.attr("MessageTooLarge") = nb::borrow(errors->message_too_large);
  m.attr("DecodeError") = nb::borrow(errors->decode_error);
  nb::register_exception_translator(&translate);

  // For the tests that walk XPROC_ERRORS through this translator: its rows as (name,
  // module), and each raised from C++ as the library raises it.
  m.def("_error_rows", [] {
    nb::list rows;
#define XPROC_PYTHON_ROW(Class, module, status) rows.append(nb::make_tuple(#Class, module));
    XPROC_ERRORS(XPROC_PYTHON_ROW)
#undef XPROC_PYTHON_ROW
    return rows;
  });
  m.def("_raise_error",
        [](const std::string& name, const std::string& message) { throw_error(error_kind_named(name), message); });
}

}  // namespace xproc::python
