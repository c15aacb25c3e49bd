// A method of manager.capnp as its callers see it, read from the compiled schema once per
// (interface, method) and thread, then kept: what the parameter conventions of
// manager.capnp (see dynamic_call.h) make of its fields, and the shape of every field, so
// that a call looks nothing up by name. Every Manager call goes through one, so reading
// the schema per call showed as a microsecond of each (about 8,000 instructions).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <capnp/any.h>
#include <capnp/dynamic.h>
#include <capnp/schema.h>

namespace xproc::rpc {

// How a field's value is written or read: the types manager.capnp uses.
enum class FieldShape : uint8_t {
  kValue,      // xproc.Value
  kValueList,  // List(Value)
  kEntryList,  // List(Value.Entry)
  kSlice,      // Slice
  kText,
  kData,
  kBool,
  kSigned,    // Int8..Int64
  kUnsigned,  // UInt8..UInt64
  kTimeout,   // `timeout :Float64`: seconds, -1 for none
  kFloat,
  kCapability,
  kEnum,
  kVoid,
  kOther,  // a struct or list of another type
};

struct PlannedField {
  capnp::StructSchema::Field field;
  std::string name;
  FieldShape shape = FieldShape::kOther;
  // A result Value called `key`/`keys`, which Python reads back hashable.
  bool is_key = false;
  // The `hasX` flag of an optional parameter, set when it is given.
  kj::Maybe<capnp::StructSchema::Field> flag;
  // The slot of a pointer field (Value, lists, Slice, Text, Data) in its struct's pointer
  // section, where field_pointer() finds it.
  uint16_t pointer = 0;
};

struct MethodPlan {
  capnp::InterfaceSchema::Method method;
  std::string name;
  // What a call carries: the id of the interface that declares the method (a base of the
  // one called, for an inherited method) and the method's ordinal.
  uint64_t interface_id = 0;
  uint16_t ordinal = 0;
  capnp::StructSchema params;
  capnp::_::StructSize params_size{0, 0};
  capnp::StructSchema results_schema;
  // The parameters a caller gives, in order: every field but `owner` and the `hasX` flags.
  std::vector<PlannedField> positional;
  kj::Maybe<capnp::StructSchema::Field> owner;
  std::vector<PlannedField> results;

  // The positional parameter called `name` (a keyword argument); TypeError if none.
  const PlannedField& parameter_named(std::string_view parameter) const;
};

// A parameter's pointer, to initialise it without reading the schema (the request was
// made with the plan's size, so the slot is there).
inline capnp::AnyPointer::Builder field_pointer(capnp::DynamicStruct::Builder params, const PlannedField& field) {
  return params.as<capnp::AnyStruct>().getPointerSection()[field.pointer];
}

// A result's pointer, read without the schema: a null pointer (the default value) when the
// sender's struct is shorter, as one built from an older schema is.
inline capnp::AnyPointer::Reader field_pointer(capnp::DynamicStruct::Reader results, const PlannedField& field) {
  const auto section = results.as<capnp::AnyStruct>().getPointerSection();
  return field.pointer < section.size() ? section[field.pointer] : capnp::AnyPointer::Reader();
}

// The plan of `method` of `interface`; AttributeError when the interface has no such
// method. The reference stays valid for the life of the calling thread.
const MethodPlan& plan_of(capnp::InterfaceSchema interface, std::string_view method);

}  // namespace xproc::rpc
