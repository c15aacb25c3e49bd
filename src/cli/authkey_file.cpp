// See authkey_file.h. The file is opened once and checked through its descriptor, so what
// is checked is what is read.
#include "authkey_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "xproc/errors.h"
#include "xproc/fd.h"

namespace xproc::cli {

std::string read_authkey(const std::string& path) {
  constexpr size_t kMaxKeyBytes = 64 * 1024;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_os_error("open " + path, errno);
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) throw_os_error("stat " + path, errno);
  if (!S_ISREG(info.st_mode)) throw ValueError("authkey file " + path + " is not a regular file");
  if (info.st_mode & (S_IRWXG | S_IRWXO))
    throw ValueError("authkey file " + path + " is readable by others; chmod 600 it");
  std::string key;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fd.get(), buffer, sizeof(buffer))) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_os_error("read " + path, errno);
    }
    key.append(buffer, static_cast<size_t>(n));
    if (key.size() > kMaxKeyBytes) throw ValueError("authkey file " + path + " is larger than 64 KiB");
  }
  if (!key.empty() && key.back() == '\n') key.pop_back();
  if (key.empty()) throw ValueError("authkey file " + path + " is empty");
  return key;
}

}  // namespace xproc::cli
