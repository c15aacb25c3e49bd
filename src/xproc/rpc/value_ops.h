// Python semantics the Manager's containers need beyond Value itself: number arithmetic
// for atomic increments, the `<` ordering list.sort() uses, and slice arithmetic.
#pragma once

#include <cstdint>
#include <vector>

#include "xproc/manager.capnp.h"
#include "xproc/value.h"

namespace xproc::rpc {

// a + b for Python numbers (bool, int, float); TypeError otherwise, ValueError when an
// int sum leaves the 64-bit range.
Value add_numbers(const Value& a, const Value& b);

// a < b as Python orders values; TypeError for kinds Python cannot order.
bool python_less(const Value& a, const Value& b);

// slice.indices(length): the positions a slice selects, in order.
struct SliceRange {
  int64_t start = 0;
  int64_t step = 1;
  int64_t count = 0;
  int64_t at(int64_t i) const noexcept { return start + i * step; }
};
SliceRange slice_range(schema::Slice::Reader slice, int64_t length);  // ValueError for step 0

// An index as Python normalizes it (negative from the end); IndexError with `message`
// when it is still out of range.
size_t normalize_index(int64_t index, size_t length, const char* message);

// Lists of Values across the wire.
std::vector<Value> read_values(capnp::List<schema::Value>::Reader values);
void write_values(capnp::List<schema::Value>::Builder builder, const std::vector<Value>& values);
// A map's entries, in insertion order, into a list of `items.size()` entries.
void write_entries(capnp::List<schema::Value::Entry>::Builder builder, const ValueMap& items);

}  // namespace xproc::rpc
