// Python objects <-> xproc's Value message (schema/xproc/value.capnp), converted straight
// between CPython objects and Cap'n Proto builders/readers, with no intermediate copy.
//
// The mapping: None, bool, int (int64, or bigInt past 64 bits), float, str, bytes, list,
// tuple and dict map to the Value kinds of the same name; any other object with the
// buffer protocol (numpy arrays, bytearray, memoryview, array.array) is an array
// (python_arrays.h). A list from
// another language used as a dict key comes back as a tuple, so that the key stays
// hashable. A pycapnp struct builder or reader travels as a typed struct (its schema id
// and the struct) and comes back as a pycapnp reader when its schema was seen or
// registered in this process, else as an xproc.Struct. Any other type is a TypeError
// naming it, raised by the call that was given it.
#pragma once
#include <capnp/message.h>
#include <cstdint>
#include <optional>
#include <span>
#include "bindings.h"
#include "python_arrays.h"
#include "referred_memory.h"
#include "xproc/value.capnp.h"
#include "xproc/value.h"

namespace xproc::python {

// Writes `object` into `builder`. TypeError for unsupported types, OverflowError for an
// int of more than 32767 bits, ValueError for nesting deeper than the decode limit (64).
void write_value(nb::handle object, schema::Value::Builder builder);

// The Python object for a Value reader. DecodeError for nesting beyond the limit, text
// that is not UTF-8 and a dict key Python cannot hash (a dict), which other languages
// may send. `as_key`: lists come back as tuples too (a dict key must be hashable).
nb::object read_value(schema::Value::Reader reader, bool as_key = false);

// The whole message: `object` as a Value message, whose large bytes objects and buffers
// the builder refers to, held in `referred` (copy the message out before `referred` goes) ...
capnp::MallocMessageBuilder& encode_value(nb::handle object, capnp::MallocMessageBuilder& builder,
                                          ReferredMemory& referred);
// ... and a received message back (validated: DecodeError for bytes that are not one).
// With `views` (get_view), its arrays are memoryviews they make over the message's bytes.
nb::object decode_value(std::span<const std::byte> message, RecordViews* views = nullptr);

// Through xproc::Value, for the Manager proxies' C++ API.
// `as_key`: lists come back as tuples too (for dict keys and the keys() of a dict proxy).
Value to_value(nb::handle object);
nb::object from_value(const Value& value, bool as_key = false);

// A pycapnp struct builder or reader: its schema id and flat serialization. nullopt for
// any other object.
struct PycapnpMessage {
  uint64_t schema_id;
  nb::bytes bytes;
};
std::optional<PycapnpMessage> as_pycapnp_message(nb::handle object);

// A pycapnp reader over a flat message, for the struct type `schema_id` if known.
nb::object pycapnp_reader(uint64_t schema_id, nb::bytes message);

}  // namespace xproc::python
