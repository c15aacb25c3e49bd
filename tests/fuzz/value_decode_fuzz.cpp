// xproc::Value::decode on arbitrary bytes: a Value or DecodeError, nothing else. A Value
// that decodes is re-encoded to the same bytes every time (the encoding is a function of
// the Value), decodes back to an equal Value (NaN aside, which equals nothing: there the
// repr must agree), hashes as what it equals, and prints.
#include <cmath>
#include <cstring>
#include <span>
#include <string>

#include "fuzz_check.h"
#include "value_parts.h"
#include "xproc/value.h"

namespace {

using xproc::Value;

bool contains_nan(const Value& v) {
  return xproc::fuzz::any_part(v, [](const Value& part) { return part.is_float() && std::isnan(part.as_float()); });
}

std::span<const std::byte> bytes_of(const kj::Array<capnp::word>& words) {
  return {reinterpret_cast<const std::byte*>(words.begin()), words.size() * sizeof(capnp::word)};
}

bool same_bytes(const kj::Array<capnp::word>& a, const kj::Array<capnp::word>& b) {
  return a.size() == b.size() && std::memcmp(a.begin(), b.begin(), a.size() * sizeof(capnp::word)) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  Value value;
  try {
    value = Value::decode(input);
  } catch (const xproc::DecodeError&) {
    return 0;
  }
  const std::string repr = value.repr();

  const auto encoded = value.encode();
  Value again;
  try {
    again = Value::decode(bytes_of(encoded));
  } catch (const xproc::DecodeError& e) {
    FUZZ_CHECK(false, e.what());  // what xproc encodes, xproc decodes
  }
  FUZZ_CHECK(same_bytes(again.encode(), encoded), "re-encoding a decoded Value changed its bytes");
  FUZZ_CHECK(again.repr() == repr, "a Value printed differently after a round trip");
  if (!contains_nan(value)) {
    FUZZ_CHECK(again == value, "a Value is not equal to itself after a round trip");
    FUZZ_CHECK(again.hash() == value.hash(), "equal Values hash differently");
  }
  return 0;
}
