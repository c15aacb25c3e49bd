// Helpers behind errors.h.
#include "xproc/errors.h"

#include <cstring>

namespace xproc {

void throw_os_error(std::string_view call, int error_number) {
  throw OSError(std::string(call) + ": " + std::strerror(error_number), error_number);
}

}  // namespace xproc
