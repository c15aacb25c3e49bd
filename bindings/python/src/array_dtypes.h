// The element types of arrays (xproc/array.h: numpy's dtypes) as Python's buffer protocol
// spells them (PEP 3118 struct formats): the formats a sender's buffer may give, and the
// format a received array's memoryview gets.
#pragma once
#include <cstddef>

#include "bindings.h"
#include "xproc/array.h"

namespace xproc::python {

// The native struct format of a memoryview of `dtype` ("d", "Zd", "?" ...): what numpy
// reads back as that dtype.
const char* buffer_format(DType dtype) noexcept;

// The unit whose bytes a change of byte order reverses: the element, or each half of a
// complex one.
inline size_t swap_width(DType dtype) noexcept {
  const bool complex = dtype == DType::kComplex64 || dtype == DType::kComplex128;
  return complex ? itemsize(dtype) / 2 : itemsize(dtype);
}

// What a sender's buffer holds: its elements' dtype, and whether they are big-endian (to
// be swapped while they are copied).
struct BufferFormat {
  DType dtype;
  bool big_endian;
};

// The dtype of a buffer's struct `format` (nullptr means "B", as the buffer protocol says)
// with items of `itemsize` bytes: the format characters of every dtype, after an optional
// byte order ('@' and '=' native, '<' little, '>' and '!' big), with 'c' as uint8 and 'l'/'L'
// 8 bytes natively and 4 under the standard sizes. TypeError naming the format for anything
// else: objects ('O'), structs ('T{...}'), long double ('g'), several fields, padding.
BufferFormat parse_format(const char* format, Py_ssize_t itemsize);

}  // namespace xproc::python
