// The addresses Listener and Client take (address_internal.h): any text parses to what its
// form says or is refused with ValueError, and a TCP address parses back to itself.
#include <string>

#include "fuzz_check.h"
#include "xproc/address_internal.h"
#include "xproc/errors.h"

namespace {

using xproc::detail::Address;
using xproc::detail::parse_address;

bool all_digits(const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  Address address;
  try {
    address = parse_address(text);
  } catch (const xproc::ValueError&) {
    // Refused: empty, or TCP without a numeric port.
    FUZZ_CHECK(text.empty() || text.rfind("tcp:", 0) == 0, "only an empty or a tcp: address is refused");
    return 0;
  }
  switch (address.kind) {
    case Address::kAbstract:
      FUZZ_CHECK(text == std::string(1, '\0') + address.path || text == "unix:@" + address.path);
      break;
    case Address::kPath:
      FUZZ_CHECK(text == address.path || text == "unix:" + address.path);
      FUZZ_CHECK(address.path.empty() || address.path[0] != '\0' || text.rfind("unix:", 0) == 0);
      break;
    case Address::kTcp: {
      FUZZ_CHECK(all_digits(address.port), "a TCP port is digits");
      FUZZ_CHECK(!address.host.empty());
      FUZZ_CHECK(text.size() >= address.port.size() + 1 && text.ends_with(":" + address.port));
      // Written back as Client would be given it, it parses to the same: in brackets where
      // the host has colons (IPv6), or starts with one (brackets are taken off once).
      const bool bracketed = address.host.find(':') != std::string::npos || address.host.front() == '[';
      const std::string again = "tcp:" + (bracketed ? "[" + address.host + "]" : address.host) + ":" + address.port;
      const Address reparsed = parse_address(again);
      FUZZ_CHECK(reparsed.kind == Address::kTcp && reparsed.host == address.host && reparsed.port == address.port);
      break;
    }
  }
  return 0;
}
