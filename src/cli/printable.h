// Text from outside (file names in /dev/shm, errors that quote them) made safe to print on
// a terminal.
#pragma once

#include <string>
#include <string_view>

namespace xproc::cli {

// Printable ASCII as it is, a backslash doubled, every other byte (control characters and
// escape sequences, all of UTF-8, valid or not) as \xNN.
std::string printable(std::string_view text);

}  // namespace xproc::cli
