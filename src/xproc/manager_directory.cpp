// See manager_directory.h. An entry is a few "key=value" lines, rewritten in place under
// the lock its server holds (flock, dropped by the kernel when the server dies).
#include "xproc/manager_directory.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string_view>
#include <system_error>

#include "xproc/errors.h"

namespace xproc {
namespace {

constexpr std::string_view kFormat = "xproc-manager 1";
constexpr size_t kMaxEntryBytes = 8192;

// `path` exists as this user's own directory that nobody else may use, or is made so.
void require_private_directory(const std::filesystem::path& path, bool create) {
  if (create && ::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    throw_os_error("mkdir " + path.string(), errno);
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) throw_os_error("stat " + path.string(), errno);
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::getuid() || (st.st_mode & 077) != 0) {
    throw PermissionError(path.string() + " is not a directory of this user's that only it may use");
  }
}

uint64_t now_unix_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

std::optional<uint64_t> number(std::string_view text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t out = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t next = out * 10 + static_cast<uint64_t>(c - '0');
    if (next / 10 != out) return std::nullopt;
    out = next;
  }
  return out;
}

std::optional<ManagerRecord> parse(std::string_view text) {
  if (text.substr(0, kFormat.size()) != kFormat) return std::nullopt;
  ManagerRecord record;
  bool has_address = false, has_pid = false;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "address") {
      record.address = value;
      has_address = true;
      continue;
    }
    const auto n = number(value);
    if (!n) continue;
    if (key == "pid" && *n > 0 && *n < (1u << 30)) {
      record.pid = static_cast<pid_t>(*n);
      has_pid = true;
    } else if (key == "instance") {
      record.instance = *n;
    } else if (key == "started") {
      record.started_unix_ns = *n;
    } else if (key == "objects") {
      record.objects = *n;
    } else if (key == "named") {
      record.named = *n;
    }
  }
  if (!has_address || !has_pid) return std::nullopt;
  return record;
}

// Reads one entry (not following links, this user's regular file only); whether its server
// holds it.
std::optional<ManagerRecord> read_entry(const std::filesystem::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return std::nullopt;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::getuid()) return std::nullopt;
  std::string text(kMaxEntryBytes, '\0');
  std::optional<ManagerRecord> record;
  // A server rewriting its counts meanwhile: read again.
  for (int attempt = 0; attempt < 3 && !record; ++attempt) {
    const ssize_t n = ::pread(fd.get(), text.data(), text.size(), 0);
    if (n <= 0) return std::nullopt;
    record = parse(std::string_view(text.data(), static_cast<size_t>(n)));
  }
  if (!record) return std::nullopt;
  // The server holds an exclusive lock: a shared one is refused while it lives.
  record->live = ::flock(fd.get(), LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  record->file = path;
  return record;
}

}  // namespace

std::filesystem::path managers_directory(bool create) {
  std::filesystem::path base;
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (runtime != nullptr && runtime[0] == '/') {
    base = std::filesystem::path(runtime) / "xproc";
  } else {
    base = "/tmp/xproc-" + std::to_string(::getuid());
  }
  require_private_directory(base, create);
  const auto managers = base / "managers";
  require_private_directory(managers, create);
  return managers;
}

std::vector<ManagerRecord> list_managers() {
  std::vector<ManagerRecord> out;
  std::filesystem::path dir;
  try {
    dir = managers_directory(false);
  } catch (const OSError& e) {
    if (e.error_number() == ENOENT) return out;  // no Manager has run yet
    throw;
  }
  std::error_code error;
  for (const auto& item : std::filesystem::directory_iterator(dir, error)) {
    if (item.path().extension() != ".manager") continue;
    if (auto record = read_entry(item.path())) out.push_back(std::move(*record));
  }
  std::sort(out.begin(), out.end(), [](const ManagerRecord& a, const ManagerRecord& b) {
    return std::tie(a.address, a.pid) < std::tie(b.address, b.pid);
  });
  return out;
}

void remove_manager_entries_of(pid_t pid) noexcept {
  try {
    for (const auto& record : list_managers()) {
      if (record.pid == pid && !record.live) ::unlink(record.file.c_str());
    }
  } catch (...) {
    // No directory to look at: nothing to remove.
  }
}

std::optional<ManagerDirectoryEntry> ManagerDirectoryEntry::create(const std::string& address, uint64_t instance) {
  if (address.empty() || address.find('\n') != std::string::npos || address.size() > 4096) return std::nullopt;
  std::filesystem::path dir;
  try {
    dir = managers_directory(true);
  } catch (const Error&) {
    return std::nullopt;
  }
  // The stale entries of servers that died go now.
  for (const auto& record : list_managers()) {
    if (!record.live) ::unlink(record.file.c_str());
  }
  const pid_t pid = ::getpid();
  const auto path = dir / (std::to_string(pid) + "-" + std::to_string(instance) + ".manager");
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return std::nullopt;
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    ::unlink(path.c_str());
    return std::nullopt;
  }
  ManagerRecord record;
  record.address = address;
  record.pid = pid;
  record.instance = instance;
  record.started_unix_ns = now_unix_ns();
  record.live = true;
  record.file = path;
  ManagerDirectoryEntry entry(std::move(fd), path, std::move(record));
  entry.write();
  return entry;
}

ManagerDirectoryEntry::~ManagerDirectoryEntry() {
  if (fd_) ::unlink(path_.c_str());
}

void ManagerDirectoryEntry::update(uint64_t objects, uint64_t named) {
  if (objects == record_.objects && named == record_.named) return;
  record_.objects = objects;
  record_.named = named;
  write();
}

void ManagerDirectoryEntry::write() {
  const std::string text =
      std::string(kFormat) + "\naddress=" + record_.address + "\npid=" + std::to_string(record_.pid) +
      "\ninstance=" + std::to_string(record_.instance) + "\nstarted=" + std::to_string(record_.started_unix_ns) +
      "\nobjects=" + std::to_string(record_.objects) + "\nnamed=" + std::to_string(record_.named) + "\n";
  // Best effort: a full disk leaves the last counts.
  if (::pwrite(fd_.get(), text.data(), text.size(), 0) == static_cast<ssize_t>(text.size())) {
    (void)!::ftruncate(fd_.get(), static_cast<off_t>(text.size()));
  }
}

}  // namespace xproc
