// Values typed on a command line, and Values printed for scripts: what `xproc put` reads
// and `xproc get --json` writes.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "xproc/value.h"

namespace xproc::cli {

// A Python literal as ast.literal_eval takes it — None, True, False, numbers, 'text' and
// "text" with Python's escapes, b'bytes', [lists], (tuples,), {dicts} — or JSON, whose
// null, true and false are read too. ValueError naming the position of what does not
// parse. Nesting deeper than 64 levels is refused.
Value parse_value_literal(std::string_view text);

// The JSON form of a Value: None, bools, numbers, text, lists and tuples (arrays), dicts
// whose keys are all text (objects), and bytes as {"$bytes": base64}. What JSON has no
// form for (a dict with other keys, a float that is not finite, an array, a proxy, a
// typed struct) is {"$repr": Python's repr}: a message taken is always printed.
nlohmann::ordered_json value_to_json(const Value& value);

// RFC 4648 base64 of `data`, with padding.
std::string base64(std::string_view data);

}  // namespace xproc::cli
