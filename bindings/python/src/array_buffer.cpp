// See array_buffer.h. A type of the C API rather than a nanobind class: what it is for is
// the buffer protocol's two slots, which nanobind does not wrap.
#include "array_buffer.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "held_record.h"

namespace xproc::python {
namespace {

constexpr size_t kOwnedAlignment = 64;  // as numpy's allocations: any element, any SIMD load

struct ArrayBufferObject {
  PyObject_VAR_HEAD  // ob_size: 2 * ndim, the shape then the strides in `dims`
      std::byte* data;
  std::byte* owned;                     // the memory this object allocated, or nullptr
  std::shared_ptr<HeldRecord>* record;  // the record `data` lies in, while it is held
  const char* format;                   // nullptr until made (the object was never set up)
  Py_ssize_t itemsize;
  Py_ssize_t length;
  Py_ssize_t exports;
  int ndim;
  bool readonly;
  bool block_ended;
  Py_ssize_t dims[1];
};

void drop_record(ArrayBufferObject* self) {
  delete self->record;  // the last holder's release ends the queue's get (~HeldRecord)
  self->record = nullptr;
}

int get_buffer(PyObject* object, Py_buffer* view, int flags) {
  auto* self = reinterpret_cast<ArrayBufferObject*>(object);
  if (self->format == nullptr || (self->owned == nullptr && self->record == nullptr)) {
    PyErr_SetString(PyExc_BufferError,
                    "this array view's queue record was released at the end of its get_view block "
                    "(copy the array inside the block to keep it)");
    return -1;
  }
  if ((flags & PyBUF_WRITABLE) == PyBUF_WRITABLE && self->readonly) {
    PyErr_SetString(PyExc_BufferError, "this array is read-only (a get_view view of a queued message)");
    return -1;
  }
  Py_INCREF(object);
  view->obj = object;
  view->buf = self->data;
  view->len = self->length;
  view->readonly = self->readonly ? 1 : 0;
  view->itemsize = self->itemsize;
  view->format = (flags & PyBUF_FORMAT) == PyBUF_FORMAT ? const_cast<char*>(self->format) : nullptr;
  view->ndim = self->ndim;
  view->shape = (flags & PyBUF_ND) == PyBUF_ND ? self->dims : nullptr;
  view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? self->dims + self->ndim : nullptr;
  view->suboffsets = nullptr;
  view->internal = nullptr;
  ++self->exports;
  return 0;
}

void release_buffer(PyObject* object, Py_buffer*) {
  auto* self = reinterpret_cast<ArrayBufferObject*>(object);
  if (--self->exports == 0 && self->block_ended) drop_record(self);
}

void deallocate(PyObject* object) {
  auto* self = reinterpret_cast<ArrayBufferObject*>(object);
  drop_record(self);
  std::free(self->owned);
  PyTypeObject* type = Py_TYPE(object);
  type->tp_free(object);
  Py_DECREF(type);  // a heap type's instances hold a reference to it
}

PyObject* represent(PyObject* object) {
  auto* self = reinterpret_cast<ArrayBufferObject*>(object);
  std::string shape = "(";
  for (int i = 0; i < self->ndim; ++i) shape += std::to_string(self->dims[i]) + (self->ndim == 1 ? "," : ", ");
  if (self->ndim > 1) shape.resize(shape.size() - 2);
  shape += ")";
  const char* where = self->owned != nullptr ? "" : self->record != nullptr ? " in a queue record" : " released";
  return PyUnicode_FromFormat("<xproc.ArrayBuffer '%s' %s%s>", self->format != nullptr ? self->format : "?",
                              shape.c_str(), where);
}

PyTypeObject* array_buffer_type() {
  static PyTypeObject* type = [] {
    static PyType_Slot slots[] = {
        {Py_tp_dealloc, reinterpret_cast<void*>(deallocate)},
        {Py_tp_repr, reinterpret_cast<void*>(represent)},
        {Py_bf_getbuffer, reinterpret_cast<void*>(get_buffer)},
        {Py_bf_releasebuffer, reinterpret_cast<void*>(release_buffer)},
        {Py_tp_doc, const_cast<char*>("A received array's elements, exported through the buffer protocol.")},
        {0, nullptr},
    };
    static PyType_Spec spec = {
        "xproc.ArrayBuffer",
        static_cast<int>(offsetof(ArrayBufferObject, dims)),
        static_cast<int>(sizeof(Py_ssize_t)),
#ifdef Py_TPFLAGS_DISALLOW_INSTANTIATION
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
#else
        Py_TPFLAGS_DEFAULT,
#endif
        slots,
    };
    PyObject* made = PyType_FromSpec(&spec);
    if (made == nullptr) throw nb::python_error();
    return reinterpret_cast<PyTypeObject*>(made);  // never destroyed: lives as long as the module
  }();
  return type;
}

// A new ArrayBuffer of `shape`, C-contiguous, its memory not yet set.
ArrayBufferObject* allocate(DType dtype, std::span<const uint64_t> shape, bool readonly) {
  const auto ndim = static_cast<Py_ssize_t>(shape.size());
  PyTypeObject* type = array_buffer_type();
  auto* self = reinterpret_cast<ArrayBufferObject*>(type->tp_alloc(type, 2 * ndim));
  if (self == nullptr) throw nb::python_error();
  self->format = buffer_format(dtype);
  self->itemsize = static_cast<Py_ssize_t>(itemsize(dtype));
  self->ndim = static_cast<int>(ndim);
  self->readonly = readonly;
  Py_ssize_t stride = self->itemsize;
  for (Py_ssize_t i = ndim - 1; i >= 0; --i) {
    self->dims[i] = static_cast<Py_ssize_t>(shape[static_cast<size_t>(i)]);
    self->dims[ndim + i] = stride;
    stride *= self->dims[i];
  }
  Py_ssize_t length = self->itemsize;
  for (Py_ssize_t i = 0; i < ndim; ++i) length *= self->dims[i];
  self->length = length;
  return self;
}

}  // namespace

OwnedArrayBuffer make_owned_array_buffer(DType dtype, std::span<const uint64_t> shape, bool readonly) {
  ArrayBufferObject* self = allocate(dtype, shape, readonly);
  nb::object buffer = nb::steal(reinterpret_cast<PyObject*>(self));
  const size_t size = (static_cast<size_t>(self->length) + kOwnedAlignment - 1) / kOwnedAlignment * kOwnedAlignment;
  self->owned = static_cast<std::byte*>(std::aligned_alloc(kOwnedAlignment, size == 0 ? kOwnedAlignment : size));
  if (self->owned == nullptr) throw std::bad_alloc();
  self->data = self->owned;
  return {std::move(buffer), self->data};
}

nb::object make_record_array_buffer(DType dtype, std::span<const uint64_t> shape, const std::byte* data,
                                    std::shared_ptr<HeldRecord> record) {
  ArrayBufferObject* self = allocate(dtype, shape, true);
  nb::object buffer = nb::steal(reinterpret_cast<PyObject*>(self));
  self->data = const_cast<std::byte*>(data);  // exported read-only
  self->record = new std::shared_ptr<HeldRecord>(std::move(record));
  return buffer;
}

void end_view_block(nb::handle buffer) {
  auto* self = reinterpret_cast<ArrayBufferObject*>(buffer.ptr());
  self->block_ended = true;
  if (self->exports == 0) drop_record(self);
}

}  // namespace xproc::python
