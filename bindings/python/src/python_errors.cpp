// xproc's C++ exceptions become the standard library's: queue.Empty, queue.Full,
// EOFError, multiprocessing.AuthenticationError, KeyError, ... so Python code written
// for multiprocessing catches what it always caught. The two with no standard
// equivalent, MessageTooLarge and DecodeError, are ValueError subclasses.
#include <cstring>

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

struct PythonErrors {
  LazyClass empty{"queue", "Empty"};
  LazyClass full{"queue", "Full"};
  LazyClass authentication{"multiprocessing", "AuthenticationError"};
  LazyClass buffer_too_short{"multiprocessing", "BufferTooShort"};
  LazyClass broken_barrier{"threading", "BrokenBarrierError"};
  PyObject* message_too_large = nullptr;
  PyObject* decode_error = nullptr;
};
PythonErrors* errors = nullptr;

// An exception's message as a str. what() may quote bytes from outside that are not UTF-8
// (Cap'n Proto quotes a peer's malformed text, errors quote file names): those are kept as
// \xNN escapes. PyErr_SetString would raise UnicodeDecodeError instead of the exception.
nb::object message_of(const std::exception& e) {
  const char* what = e.what();
  return nb::steal(PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "backslashreplace"));
}

void raise(PyObject* type, const std::exception& e) {
  nb::object message = message_of(e);
  if (message.is_valid()) PyErr_SetObject(type, message.ptr());  // else MemoryError is set
}

void translate(const std::exception_ptr& pointer, void*) {
  try {
    std::rethrow_exception(pointer);
  } catch (const Empty& e) {
    raise(errors->empty.get(), e);
  } catch (const Full& e) {
    raise(errors->full.get(), e);
  } catch (const EOFError& e) {
    raise(PyExc_EOFError, e);
  } catch (const TimeoutError& e) {
    raise(PyExc_TimeoutError, e);
  } catch (const AuthenticationError& e) {
    raise(errors->authentication.get(), e);
  } catch (const BrokenPipeError& e) {
    raise(PyExc_BrokenPipeError, e);
  } catch (const ConnectionError& e) {
    raise(PyExc_ConnectionError, e);
  } catch (const MessageTooLarge& e) {
    raise(errors->message_too_large, e);
  } catch (const DecodeError& e) {
    raise(errors->decode_error, e);
  } catch (const BufferTooShort& e) {
    raise(errors->buffer_too_short.get(), e);
  } catch (const KeyError& e) {
    raise(PyExc_KeyError, e);
  } catch (const IndexError& e) {
    raise(PyExc_IndexError, e);
  } catch (const TypeError& e) {
    raise(PyExc_TypeError, e);
  } catch (const AttributeError& e) {
    raise(PyExc_AttributeError, e);
  } catch (const BrokenBarrierError& e) {
    raise(errors->broken_barrier.get(), e);
  } catch (const RuntimeError& e) {
    raise(PyExc_RuntimeError, e);
  } catch (const ValueError& e) {
    raise(PyExc_ValueError, e);
  } catch (const OSError& e) {
    nb::object message = message_of(e);
    if (!message.is_valid()) return;
    nb::object error = nb::steal(PyObject_CallFunction(PyExc_OSError, "iO", e.error_number(), message.ptr()));
    if (error.is_valid()) PyErr_SetObject(PyExc_OSError, error.ptr());
  }
  // Anything else (xproc::Error's base, std::exception) falls through to nanobind's
  // default translation (RuntimeError with the message).
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
}

}  // namespace xproc::python
