// What both Value decoders (C++: value_codec.cpp; Python: bindings/python/src/
// python_values.cpp) refuse beyond Cap'n Proto's own checks, so that they accept exactly
// the same messages.
#pragma once

#include <capnp/any.h>

#include <cstddef>
#include <string>

#include "xproc/errors.h"

namespace xproc::detail {

// Cap'n Proto admits lists of zero-sized structs up to its traversal limit (millions of
// elements in a few bytes), and every such element of a Value list, tuple or map decodes
// to None: a few bytes would cost the receiver hundreds of megabytes. An honest writer
// gives each element its size, so one message may hold this many elements that take no
// bytes, in all its lists together; past that it is refused.
inline constexpr size_t kMostEmptyElements = 65536;

// What is left of that allowance while one message is decoded.
class EmptyElementBudget {
 public:
  template <typename StructList>
  void charge(StructList list) {
    if (list.size() == 0) return;
    const capnp::AnyStruct::Reader first = list[0];  // a list's elements share one size
    if (first.getDataSection().size() != 0 || first.getPointerSection().size() != 0) return;
    if (list.size() > left_) {
      throw DecodeError("a Value with more than " + std::to_string(kMostEmptyElements) +
                        " list elements that take no bytes");
    }
    left_ -= list.size();
  }

 private:
  size_t left_ = kMostEmptyElements;
};

}  // namespace xproc::detail
