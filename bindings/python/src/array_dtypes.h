// The element types of Value.Array (schema/xproc/value.capnp) as Python spells them: the
// struct format characters of the buffer protocol (PEP 3118) that a sender's buffer may
// give, and the format and numpy dtype a receiver's array gets.
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>

#include "bindings.h"
#include "xproc/value.capnp.h"

namespace xproc::python {

// Value.Array holds little-endian elements, and the received arrays are handed to Python
// as they lie (a memoryview over a queue's ring, one memcpy into numpy), in native order.
static_assert(std::endian::native == std::endian::little, "the Python arrays assume a little-endian machine");

using DType = schema::Value::Array::DType;

// One dtype of the schema's enum.
struct DTypeInfo {
  DType dtype;
  size_t itemsize;
  // What byte order swaps within an element: the whole element, or for a complex number
  // each of its two halves.
  size_t swap_width;
  // The native struct format of a memoryview of it ("d", "Zd", "?" ...): what numpy reads
  // back as this dtype.
  const char* format;
  // numpy's name for it ("float64").
  const char* name;
};

// The dtype numbered `raw` in the schema; nullptr for a number this reader does not know
// (a newer writer's, or garbage).
const DTypeInfo* dtype_info(uint16_t raw) noexcept;
inline const DTypeInfo& dtype_info(DType dtype) noexcept { return *dtype_info(static_cast<uint16_t>(dtype)); }

// What a sender's buffer holds: its elements' dtype, and whether they are big-endian
// (and must be swapped while they are copied).
struct BufferFormat {
  const DTypeInfo* dtype;
  bool big_endian;
};

// The dtype of a buffer's struct `format` (nullptr means "B", as the buffer protocol says)
// with items of `itemsize` bytes: the format characters of every dtype, after an optional
// byte order ('@' and '=' native, '<' little, '>' and '!' big), with 'c' as uint8 and 'l'/'L'
// 8 bytes natively and 4 under the standard sizes. TypeError naming the format for anything
// else: objects ('O'), structs ('T{...}'), long double ('g'), several fields, padding.
BufferFormat parse_format(const char* format, Py_ssize_t itemsize);

}  // namespace xproc::python
