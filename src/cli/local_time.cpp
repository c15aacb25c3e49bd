#include "local_time.h"

#include <iostream>

namespace xproc::cli {

std::string local_time(std::time_t when, const char* format) {
  std::tm parts{};
  localtime_r(&when, &parts);
  char text[64];
  return std::string(text, std::strftime(text, sizeof(text), format, &parts));
}

void log_line(const std::string& line) {
  std::cout << local_time(std::time(nullptr), "%Y-%m-%dT%H:%M:%S") << " " << line << std::endl;
}

}  // namespace xproc::cli
