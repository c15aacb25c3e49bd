// Implementation of test_support.h.
#include "support/test_support.h"

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace xproc::testing {

std::string name_prefix() {
  std::string prefix = "t";  // built step by step: GCC 12 at -O3 misreports "t" + string
  prefix += std::to_string(getpid());
  prefix += '-';
  return prefix;
}

std::string unique_name(const std::string& tag) {
  static std::atomic<int> counter{0};
  return name_prefix() + tag + "-" + std::to_string(counter++);
}

std::vector<std::string> leaked_segments() {
  std::vector<std::string> leaked;
  const std::string prefix = "xproc." + name_prefix();
  if (DIR* dir = opendir("/dev/shm")) {
    while (dirent* entry = readdir(dir)) {
      std::string name = entry->d_name;
      if (name.rfind(prefix, 0) == 0) leaked.push_back(name);
    }
    closedir(dir);
  }
  return leaked;
}

std::vector<pid_t> child_pids() {
  std::vector<pid_t> children;
  const pid_t self = getpid();
  DIR* proc = opendir("/proc");
  if (!proc) return children;
  while (dirent* entry = readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    std::ifstream status("/proc/" + std::string(entry->d_name) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("PPid:", 0) == 0) {
        if (std::stol(line.substr(5)) == self) children.push_back(static_cast<pid_t>(pid));
        break;
      }
    }
  }
  closedir(proc);
  return children;
}

std::pair<int, std::string> run_command(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return {-1, "popen failed: " + command};
  std::string output;
  char buffer[256];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  return {pclose(pipe), output};
}

std::pair<int, std::string> capnp_decode_value(const std::string& path) {
  return run_command("capnp decode -I " XPROC_SOURCE_DIR "/schema " XPROC_SOURCE_DIR
                     "/schema/xproc/value.capnp Value < " +
                     path + " 2>&1");
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) == -1) {
    if (errno != EINTR) return -1000;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1000;
}

std::string venv_python() {
  const char* venv = std::getenv("XPROC_VENV");
  return std::string(venv && *venv ? venv : XPROC_SOURCE_DIR "/.venv") + "/bin/python";
}

std::string interop_script(const std::string& name) { return std::string(XPROC_SOURCE_DIR) + "/tests/interop/" + name; }

}  // namespace xproc::testing
