// `xproc put`'s reader of Python literals and JSON (src/cli/value_literal.cpp) on any text:
// it reads a Value or refuses with ValueError, never anything else; and what it reads
// prints (repr) as a literal it reads back as the same Value, and always has a JSON form.
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "src/cli/value_literal.h"
#include "xproc/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  xproc::Value value;
  try {
    value = xproc::cli::parse_value_literal(text);
  } catch (const xproc::ValueError&) {
    return 0;
  }
  const std::string repr = value.repr();
  // Floats that are not finite print as inf and nan, which are not literals.
  if (repr.find("inf") == std::string::npos && repr.find("nan") == std::string::npos) {
    xproc::Value again;
    try {
      again = xproc::cli::parse_value_literal(repr);
    } catch (const xproc::ValueError& e) {
      FUZZ_CHECK(false, (repr + " does not read back: " + e.what()).c_str());
    }
    FUZZ_CHECK(again == value, repr.c_str());
  }
  (void)xproc::cli::value_to_json(value).dump(-1, ' ', true, nlohmann::ordered_json::error_handler_t::strict);
  return 0;
}
