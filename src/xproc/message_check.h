// Validating a flat Cap'n Proto message without constructing a reader.
//
// Cap'n Proto's checked reader (FlatArrayMessageReader) bounds-checks every pointer as it
// is followed. Building one and its arena costs about 40 ns, four times the walk itself,
// and a queue's get pays it for every small message. check_flat walks the message once,
// checking what the checked reader would check while reading all of it; a message it
// passes may then be read by capnp::readMessageUnchecked, whose precondition is exactly
// this: "all pointers are valid and in-bounds, and there are no far pointers".
//
// What the unchecked reader still checks by itself, and this walk therefore need not:
// pointer kinds against the schema (a list where a struct is expected), element sizes,
// and that Text ends in NUL. What it does not check, and this walk does: bounds, the
// nesting limit (cycles included) and the traversal limit (amplification by aliased
// pointers or by lists of zero-sized elements).
#pragma once

#include <capnp/common.h>
#include <kj/common.h>

#include "xproc/errors.h"

namespace xproc {

struct DecodeLimits;

namespace detail {

enum class FlatCheck {
  // Every pointer is in bounds, the root is null or a struct, no far or capability
  // pointers, nesting and traversal within the limits: safe for readMessageUnchecked.
  kSafe,
  // The message uses what this walk leaves to Cap'n Proto's checked reader: several
  // segments, far pointers, capabilities. Read it with a checked reader.
  kNeedsReader,
};

// Checks the flat message `words`, whose segment table was checked already (see
// check_segment_table). DecodeError for what no reader would accept: a pointer out of
// bounds, nesting or traversal over `limits`, a root that is not a struct, a malformed
// struct list.
FlatCheck check_flat(kj::ArrayPtr<const capnp::word> words, const DecodeLimits& limits);

}  // namespace detail
}  // namespace xproc
