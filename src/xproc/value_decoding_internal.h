// What both Value decoders (C++: value_codec.cpp; Python: bindings/python/src/
// python_values.cpp) refuse beyond Cap'n Proto's own checks, so that they accept exactly
// the same messages.
#pragma once

#include <capnp/any.h>

#include <cstddef>
#include <string>

#include "xproc/errors.h"

namespace xproc::detail {

// Cap'n Proto admits a list of zero-sized structs as long as its traversal limit allows
// (millions of elements in a few bytes), and every such element of a Value list, tuple or
// map decodes to None: 48 bytes would cost the receiver hundreds of megabytes. An honest
// writer gives each element its size, so past this many elements a list of empty ones is
// refused.
inline constexpr size_t kMostEmptyElements = 65536;

template <typename StructList>
void refuse_empty_element_flood(StructList list) {
  if (list.size() <= kMostEmptyElements) return;
  const capnp::AnyStruct::Reader first = list[0];  // a list's elements share one size
  if (first.getDataSection().size() == 0 && first.getPointerSection().size() == 0) {
    throw DecodeError("a Value list of " + std::to_string(list.size()) + " elements that take no bytes (more than " +
                      std::to_string(kMostEmptyElements) + " are refused)");
  }
}

}  // namespace xproc::detail
