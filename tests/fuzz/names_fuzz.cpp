// Segment names and the CLI's printable(): validate_name accepts exactly the names its
// contract allows (1 to 200 of A-Z a-z 0-9 . _ -, not "." or ".."), and printable() turns
// any bytes into printable ASCII from which the original bytes can be read back.
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "src/cli/printable.h"
#include "xproc/errors.h"
#include "xproc/shm/segment.h"

namespace {

bool allowed_name(std::string_view name) {
  if (name.empty() || name.size() > 200 || name == "." || name == "..") return false;
  for (const char c : name) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// printable()'s inverse: `\\` is a backslash, `\xNN` the byte NN; nothing else may follow
// a backslash. FUZZ_CHECK fails on anything printable() cannot have written.
std::string unescape(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out += text[i];
      continue;
    }
    FUZZ_CHECK(i + 1 < text.size(), "a lone backslash at the end");
    if (text[i + 1] == '\\') {
      out += '\\';
      ++i;
      continue;
    }
    FUZZ_CHECK(text[i + 1] == 'x' && i + 3 < text.size(), "a backslash not followed by \\ or xNN");
    const int high = hex_digit(text[i + 2]);
    const int low = hex_digit(text[i + 3]);
    FUZZ_CHECK(high >= 0 && low >= 0, "\\x not followed by two lower-case hex digits");
    out += static_cast<char>(high * 16 + low);
    i += 3;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view name(reinterpret_cast<const char*>(data), size);

  bool accepted = true;
  try {
    xproc::shm::validate_name(name);
  } catch (const xproc::ValueError&) {
    accepted = false;
  }
  FUZZ_CHECK(accepted == allowed_name(name), accepted ? "an invalid name was accepted" : "a valid name was refused");
  if (accepted) {
    // A valid name stays one file directly under /dev/shm.
    const std::string path = xproc::shm::os_path(name);
    FUZZ_CHECK(path == "/dev/shm/xproc." + std::string(name));
    FUZZ_CHECK(path.find('/', sizeof("/dev/shm/") - 1) == std::string::npos);
  }

  const std::string shown = xproc::cli::printable(name);
  for (const char c : shown) FUZZ_CHECK(c >= 0x20 && c < 0x7f, "printable() wrote a byte a terminal interprets");
  FUZZ_CHECK(unescape(shown) == name, "printable() lost information");
  // Printable ASCII other than the backslash is shown as it is.
  FUZZ_CHECK(shown.size() >= name.size());
  return 0;
}
