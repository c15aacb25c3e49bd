// The addresses Listener and Client take, parsed: a filesystem path ("/path", "unix:/path"),
// a Linux abstract name ("\0name", "unix:@name") or TCP ("host:port", "tcp:host:port",
// "[v6]:port"; an empty host is 127.0.0.1). One parser for both, and for the fuzz target.
#pragma once

#include <string>

namespace xproc::detail {

struct Address {
  enum Kind { kPath, kAbstract, kTcp } kind;
  std::string path;  // path or abstract name
  std::string host;
  std::string port;  // decimal digits
};

// ValueError for an empty address or a TCP address without a numeric port.
Address parse_address(const std::string& text);

}  // namespace xproc::detail
