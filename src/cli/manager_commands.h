// `xproc ls --managers` and `xproc stat ADDRESS`: the user's running Managers (from their
// entries in the runtime directory, manager_directory.h) and the named objects of one.
#pragma once

#include <optional>
#include <string>

namespace xproc::cli {

// The managers table (or one JSON array).
void print_managers(bool as_json);

// Whether a `stat` argument is a Manager's address rather than a queue's name (queue names
// have neither ':' nor '/').
bool is_manager_address(const std::string& argument);

// The named objects of the Manager at `address`, logged in with the authkey read from
// `authkey_file`, or else the XPROC_AUTHKEY environment variable, or else none.
void print_manager_objects(const std::string& address, const std::optional<std::string>& authkey_file, bool as_json);

}  // namespace xproc::cli
