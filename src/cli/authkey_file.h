// Authkeys read from files (`xproc serve --authkey-file`, `xproc stat ADDRESS
// --authkey-file`).
#pragma once

#include <string>

namespace xproc::cli {

// The key is the file's bytes, less one trailing newline. Like ssh with its keys, a file
// that others may read or write is refused (ValueError), as is an empty one.
std::string read_authkey(const std::string& path);

}  // namespace xproc::cli
