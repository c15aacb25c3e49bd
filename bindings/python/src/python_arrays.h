// Buffers <-> Value.Array (schema/xproc/value.capnp): how numpy arrays, bytearray,
// memoryview and array.array travel without pickle, and what a receiver gets back.
//
// Sending takes any object with the buffer protocol (bytes aside, which stays Value.data):
// its format gives the dtype (array_dtypes.h), its shape the shape, and its elements are
// written little-endian in C order (big-endian ones swapped, strided ones gathered). A large
// contiguous little-endian buffer is referred to rather than copied (ReferredMemory).
//
// Receiving checks the array where it enters, as every xproc reader does (ArrayView::read:
// DecodeError for an unknown dtype, a byte count other than the shape's, data and pieces
// both, a piece that splits an element, more than 64 dimensions, a bool other than 0 or 1),
// and that Python can hold its shape, and gives a numpy array that owns its memory when
// numpy can be imported, else a memoryview of the same format and shape.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "array_dtypes.h"
#include "bindings.h"
#include "referred_memory.h"
#include "xproc/array.h"
#include "xproc/value.capnp.h"

namespace xproc::python {

class HeldRecord;

// Writes the buffer-protocol object `object` into `builder` as Value.Array. With
// `referred`, a large contiguous little-endian buffer is referred to, its export held
// there until the message is copied out; without, every element is copied in. TypeError
// naming the format when no dtype holds its elements (or the object refuses to export
// them, as numpy does datetimes).
void write_array(PyObject* object, schema::Value::Builder builder, ReferredMemory* referred);

// What get_view makes of the arrays of the message it decodes: read-only memoryviews over
// the held record (or over a copy, for an array in pieces or one the decoder read from a
// copy of a small message), all released together at the block's end.
class RecordViews {
 public:
  explicit RecordViews(std::shared_ptr<HeldRecord> record) : record_(std::move(record)) {}
  RecordViews(const RecordViews&) = delete;
  RecordViews& operator=(const RecordViews&) = delete;

  // A memoryview of a received array (checked).
  nb::object view(const ArrayView& array);
  // After the message is decoded: lets the record go when no memoryview lies in it (nothing
  // of the message is read in place), so that the queue need not wait for the block's end.
  void let_record_go_unless_viewed() noexcept {
    if (!viewed_) record_.reset();
  }
  // The block's end: releases each memoryview made (using one afterwards raises
  // ValueError), and lets the record go once no export of them is left. With the GIL held.
  void end();

 private:
  std::shared_ptr<HeldRecord> record_;
  bool viewed_ = false;                                  // a view lies in the record
  std::vector<std::pair<nb::object, nb::object>> made_;  // (ArrayBuffer, its memoryview)
};

// The object for a received array, checked first (DecodeError). With `views` (get_view):
// a read-only memoryview made by them; else a numpy array, or a memoryview without numpy.
nb::object read_array(schema::Value::Array::Reader reader, RecordViews* views);

}  // namespace xproc::python
