// See python_arrays.h.
#include "python_arrays.h"

#include <capnp/orphan.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#include "array_buffer.h"
#include "held_record.h"
#include "xproc/errors.h"

namespace xproc::python {

namespace {

// --- Sending -------------------------------------------------------------------------------

// A buffer export for the length of a write, released then unless handed to ReferredMemory.
class Export {
 public:
  explicit Export(PyObject* object) {
    // Any layout (strides, even PIL-style suboffsets): PyBuffer_ToContiguous gathers it.
    if (PyObject_GetBuffer(object, &view_, PyBUF_FULL_RO) != 0) {
      // numpy refuses to export some dtypes (datetime64, ...): the call was given an object
      // xproc cannot send, with numpy's reason as the cause.
      nb::chain_error(PyExc_TypeError, "xproc cannot send an object of type '%s' as an array: it exports no buffer",
                      Py_TYPE(object)->tp_name);
      throw nb::python_error();
    }
  }
  ~Export() { PyBuffer_Release(&view_); }  // nothing when ReferredMemory took it
  Export(const Export&) = delete;
  Export& operator=(const Export&) = delete;
  Py_buffer& view() noexcept { return view_; }

 private:
  Py_buffer view_{};
};

// Swaps the byte order of each `width`-byte unit of `bytes` (a multiple of it) in place.
void swap_in_place(std::byte* bytes, size_t size, size_t width) {
  auto swap_each = [&](auto unit, auto swap) {
    for (size_t at = 0; at < size; at += sizeof(unit)) {
      std::memcpy(&unit, bytes + at, sizeof(unit));  // any alignment
      unit = swap(unit);
      std::memcpy(bytes + at, &unit, sizeof(unit));
    }
  };
  switch (width) {
    case 2: swap_each(uint16_t{}, [](uint16_t u) { return __builtin_bswap16(u); }); break;
    case 4: swap_each(uint32_t{}, [](uint32_t u) { return __builtin_bswap32(u); }); break;
    case 8: swap_each(uint64_t{}, [](uint64_t u) { return __builtin_bswap64(u); }); break;
    default: break;  // single bytes have no order
  }
}

// Writes the buffer's elements to `out` (view.len bytes) as the message lays them out: C
// order, little-endian.
void gather(Py_buffer& view, std::byte* out, const BufferFormat& format) {
  const auto size = static_cast<size_t>(view.len);
  if (PyBuffer_IsContiguous(&view, 'C') != 0) {
    if (size != 0) std::memcpy(out, view.buf, size);
  } else if (PyBuffer_ToContiguous(out, &view, view.len, 'C') != 0) {
    throw nb::python_error();
  }
  if (format.big_endian) swap_in_place(out, size, swap_width(format.dtype));
}

// Where each piece of an array of `size` bytes lies: kArrayPieceBytes each, and the rest. When
// the pieces are to be referred to, a rest that ends in a partial word is cut in two, the
// whole words (referred to) then the last few bytes (copied): both stay multiples of the
// itemsize, as any dtype smaller than a word divides a word and larger ones fill words.
std::vector<std::pair<size_t, size_t>> pieces_of(size_t size, bool referring) {
  std::vector<std::pair<size_t, size_t>> pieces;
  for (size_t at = 0; at < size; at += kArrayPieceBytes) {
    pieces.emplace_back(at, std::min(kArrayPieceBytes, size - at));
  }
  auto& [at, last] = pieces.back();
  if (referring && last % 8 != 0 && last > 8) {
    const size_t words = last / 8 * 8;
    const size_t rest = last - words;
    last = words;
    pieces.emplace_back(at + words, rest);
  }
  return pieces;
}

// --- Receiving -----------------------------------------------------------------------------

// DecodeError unless Python can hold an array of this shape: each dimension and the product
// of the non-zero ones in bytes must fit a Py_ssize_t, as numpy requires even of an empty
// array (its strides must fit).
void check_python_shape(const ArrayView& array) {
  uint64_t extent = itemsize(array.dtype());
  for (uint64_t length : array.shape()) {
    if (length > uint64_t{PY_SSIZE_T_MAX} ||
        (length != 0 && (__builtin_mul_overflow(extent, length, &extent) || extent > uint64_t{PY_SSIZE_T_MAX}))) {
      throw DecodeError("an array whose shape is too large for Python (numpy and memoryview index with a Py_ssize_t)");
    }
  }
}

// numpy's empty() and the dtypes' objects, imported at the first array received (numpy is
// optional: an array without it is a memoryview). nullptr when numpy cannot be imported.
struct Numpy {
  nb::object empty;
  std::array<nb::object, static_cast<size_t>(DType::kComplex128) + 1> dtypes;  // by DType
};

const Numpy* numpy() {
  static bool looked = false;
  static Numpy* found = nullptr;  // never destroyed: lives as long as the module
  if (looked) return found;
  PyObject* module = PyImport_ImportModule("numpy");
  if (module == nullptr) {
    if (!PyErr_ExceptionMatches(PyExc_ImportError)) throw nb::python_error();
    PyErr_Clear();
    looked = true;
    return nullptr;
  }
  nb::object np = nb::steal(module);
  if (looked) return found;  // another thread imported it while this one waited for the import lock
  auto loaded = std::make_unique<Numpy>(Numpy{np.attr("empty"), {}});
  for (size_t i = 0; i < loaded->dtypes.size(); ++i) {
    const std::string_view name = dtype_name(static_cast<DType>(i));
    loaded->dtypes[i] = np.attr("dtype")(nb::str(name.data(), name.size()));  // native: little-endian
  }
  found = loaded.release();
  looked = true;
  return found;
}

nb::object shape_tuple(const ArrayView& array) {
  const Shape& dims = array.shape();
  nb::object shape = nb::steal(PyTuple_New(static_cast<Py_ssize_t>(dims.size())));
  for (size_t i = 0; i < dims.size(); ++i) {
    PyTuple_SET_ITEM(shape.ptr(), static_cast<Py_ssize_t>(i), PyLong_FromUnsignedLongLong(dims[i]));
  }
  return shape;
}

nb::object numpy_array(const Numpy& np, const ArrayView& array) {
  nb::object result = np.empty(shape_tuple(array), np.dtypes[static_cast<size_t>(array.dtype())]);
  Py_buffer out{};
  if (PyObject_GetBuffer(result.ptr(), &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0) throw nb::python_error();
  array.copy_to(static_cast<std::byte*>(out.buf));
  PyBuffer_Release(&out);
  return result;
}

nb::object memoryview_of(const nb::object& buffer) {
  PyObject* view = PyMemoryView_FromObject(buffer.ptr());
  if (view == nullptr) throw nb::python_error();
  return nb::steal(view);
}

nb::object owned_copy(const ArrayView& array, bool readonly) {
  OwnedArrayBuffer owned = make_owned_array_buffer(array.dtype(), array.shape(), readonly);
  array.copy_to(owned.data);
  return owned.buffer;
}

// Whether the array's elements lie in one piece inside `record`.
bool lies_in(const ArrayView& array, std::span<const std::byte> record) {
  if (array.pieces().size() != 1) return false;
  const auto at = reinterpret_cast<uintptr_t>(array.pieces().front().data());
  const auto begin = reinterpret_cast<uintptr_t>(record.data());
  return at >= begin && at + array.nbytes() <= begin + record.size();
}

}  // namespace

void write_array(PyObject* object, schema::Value::Builder builder, ReferredMemory* referred) {
  Export source(object);
  Py_buffer& view = source.view();
  const BufferFormat format = parse_format(view.format, view.itemsize);
  auto array = builder.initArray();
  array.setDtype(static_cast<schema::Value::Array::DType>(format.dtype));
  auto shape = array.initShape(static_cast<unsigned>(view.ndim));  // at most 64 (PyBUF_MAX_NDIM)
  for (int i = 0; i < view.ndim; ++i) shape.set(static_cast<unsigned>(i), static_cast<uint64_t>(view.shape[i]));

  const auto size = static_cast<size_t>(view.len);
  // Laid out as the message lays it out already: it can be referred to, or copied at once.
  const bool as_is = !format.big_endian && PyBuffer_IsContiguous(&view, 'C') != 0;
  const auto orphanage = capnp::Orphanage::getForMessageContaining(builder);
  if (size < kArrayPiecesFrom) {
    if (as_is && referred != nullptr && ReferredMemory::fits(view.buf, size)) {
      array.adoptData(orphanage.referenceExternalData({static_cast<const kj::byte*>(view.buf), size}));
      referred->keep(view);
    } else {
      gather(view, reinterpret_cast<std::byte*>(array.initData(static_cast<unsigned>(size)).begin()), format);
    }
    return;
  }
  // 512 MiB or more: in pieces, each referred to or copied from one contiguous copy.
  const std::byte* elements = static_cast<const std::byte*>(view.buf);
  std::unique_ptr<std::byte[]> local;
  if (!as_is) {
    std::byte* copy = referred != nullptr ? referred->allocate(size)
                                          : (local = std::make_unique_for_overwrite<std::byte[]>(size)).get();
    gather(view, copy, format);
    elements = copy;
  }
  const auto places = pieces_of(size, referred != nullptr);
  auto pieces = array.initPieces(static_cast<unsigned>(places.size()));
  for (unsigned i = 0; i < places.size(); ++i) {
    const auto [at, length] = places[i];
    if (referred != nullptr && ReferredMemory::fits(elements + at, length)) {
      pieces.adopt(i, orphanage.referenceExternalData({reinterpret_cast<const kj::byte*>(elements + at), length}));
    } else {
      std::memcpy(pieces.init(i, static_cast<unsigned>(length)).begin(), elements + at, length);
    }
  }
  if (referred != nullptr && as_is) referred->keep(view);
}

nb::object RecordViews::view(const ArrayView& array) {
  // Over the record where the elements lie in it; a copy for an array in pieces, an empty
  // one, or one the decoder read from a copy of the message (a small one).
  nb::object buffer;
  if (lies_in(array, record_->bytes())) {
    buffer = make_record_array_buffer(array.dtype(), array.shape(), array.pieces().front().data(), record_);
    viewed_ = true;
  } else {
    buffer = owned_copy(array, true);
  }
  nb::object view = memoryview_of(buffer);
  made_.emplace_back(buffer, view);
  return view;
}

void RecordViews::end() {
  for (auto& [buffer, view] : made_) {
    end_view_block(buffer);
    // Releasing the memoryview releases its export (unless numpy arrays or other
    // memoryviews made from it share it: then the last of them does).
    nb::object released = nb::steal(PyObject_CallMethod(view.ptr(), "release", nullptr));
    if (!released.is_valid()) {
      // BufferError: something holds a buffer of this memoryview itself. It keeps the
      // memoryview, which keeps the record until it lets go.
      if (!PyErr_ExceptionMatches(PyExc_BufferError)) throw nb::python_error();
      PyErr_Clear();
    }
  }
  made_.clear();
  record_.reset();
}

nb::object read_array(schema::Value::Array::Reader reader, RecordViews* views) {
  const ArrayView array = ArrayView::read(reader);  // every reader's checks (xproc/array.h)
  check_python_shape(array);
  if (views != nullptr) return views->view(array);
  if (const Numpy* np = numpy()) return numpy_array(*np, array);
  return memoryview_of(owned_copy(array, false));
}

}  // namespace xproc::python
