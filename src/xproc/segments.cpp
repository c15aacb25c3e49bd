// See segments.h.
#include "xproc/segments.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <utility>

#include "xproc/errors.h"
#include "xproc/fd.h"
#include "xproc/queue_layout_internal.h"
#include "xproc/shm/doorbells.h"
#include "xproc/shm/holders.h"
#include "xproc/shm/segment.h"
#include "xproc/syscall_internal.h"

namespace xproc {
namespace {

namespace fs = std::filesystem;
constexpr std::string_view kDirectory = "/dev/shm/";
constexpr std::string_view kPrefix = "xproc.";

std::string path_of(const std::string& name) { return std::string(kDirectory) + std::string(kPrefix) + name; }

bool valid_name(const std::string& name) {
  try {
    shm::validate_name(name);
    return true;
  } catch (const ValueError&) {
    return false;
  }
}

Fd open_segment_file(const std::string& path, int access) {
  // Never through a link; O_NONBLOCK so that a FIFO planted under the name cannot hang us.
  return Fd(detail::retry_on_eintr([&] { return ::open(path.c_str(), access | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC); }));
}

std::string file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// The queue the header of `fd` describes, read with pread(): nothing is mapped.
void read_queue(int fd, SegmentStatus& status) {
  status.queue.reset();
  alignas(detail::QueueHeader) std::byte header[sizeof(detail::QueueHeader)];
  if (status.file_bytes < sizeof(header)) {
    status.error = "too small to be a queue";
    return;
  }
  const ssize_t n = detail::retry_on_eintr([&] { return ::pread(fd, header, sizeof(header), 0); });
  if (n != static_cast<ssize_t>(sizeof(header))) {
    status.error = "its header cannot be read";
    return;
  }
  try {
    const auto& h = *reinterpret_cast<const detail::QueueHeader*>(header);
    status.queue = detail::describe_queue(detail::read_shape(h, status.file_bytes, "the segment"), h);
    struct stat st {};
    if (fstat(fd, &st) == 0) status.queue->bytes_reserved = static_cast<size_t>(st.st_blocks) * 512;
  } catch (const Error& e) {
    status.error = e.what();
  }
}

SegmentStatus status_of(const std::string& name) {
  SegmentStatus status;
  status.name = name;
  status.valid_name = valid_name(name);
  const std::string path = path_of(name);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    status.owner = st.st_uid;
    status.mode = st.st_mode & 07777;
    status.file_bytes = static_cast<size_t>(std::max<off_t>(st.st_size, 0));
    if (!S_ISREG(st.st_mode)) {
      status.error = file_kind(st.st_mode) + ", not a segment";
      return status;
    }
  }
  const Fd fd = open_segment_file(path, O_RDONLY);
  if (!fd) {
    status.error = std::string("cannot be opened: ") + std::strerror(errno);
    return status;
  }
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    status.error = "not a regular file, not a segment";
    return status;
  }
  status.owner = st.st_uid;
  status.mode = st.st_mode & 07777;
  status.file_bytes = static_cast<size_t>(st.st_size);
  try {
    status.holders = shm::count_holders(fd.get());
  } catch (const OSError& e) {
    status.error = e.what();
    return status;
  }
  read_queue(fd.get(), status);
  return status;
}

std::vector<std::string> segment_names() {
  std::vector<std::string> names;
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator(std::string(kDirectory), ignored)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind(kPrefix, 0) == 0 && file.size() > kPrefix.size()) names.push_back(file.substr(kPrefix.size()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string count_of(size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// Why `status` must stay unless forced; empty when nothing holds it back.
std::string needs_force(const SegmentStatus& status) {
  if (!status.queue) return status.error + " (--force removes it)";
  if (status.queue->messages > 0)
    return "holds " + count_of(status.queue->messages, "message", "messages") + " (--force removes it)";
  return {};
}

CleanupOutcome clean_one(const std::string& name, const CleanupOptions& options, bool named) {
  using Action = CleanupOutcome::Action;
  const SegmentStatus seen = status_of(name);
  const std::string path = path_of(name);
  // What cannot even be looked at is a failure when the operator named it.
  auto unseen = [&](std::string why) {
    return CleanupOutcome{name, named ? Action::kFailed : Action::kKept, std::move(why)};
  };
  auto kept = [&](std::string why) { return CleanupOutcome{name, Action::kKept, std::move(why)}; };
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return unseen(errno == ENOENT ? "no such segment" : std::strerror(errno));
  if (!S_ISREG(st.st_mode)) {
    // Not anything xproc made: left to an operator who says so, and never a directory.
    if (!options.force || S_ISDIR(st.st_mode))
      return kept(seen.error + (S_ISDIR(st.st_mode) ? "" : " (--force removes it)"));
    if (options.dry_run) return {name, Action::kWouldRemove, {}};
    if (::unlink(path.c_str()) != 0) return {name, Action::kFailed, std::strerror(errno)};
    return {name, Action::kRemoved, {}};
  }
  if (!seen.holders) return unseen(seen.error);
  if (*seen.holders > 0) return kept("held by " + count_of(*seen.holders, "process", "processes"));
  if (std::string why = needs_force(seen); !why.empty() && !options.force) return kept(why);
  if (options.dry_run) return {name, Action::kWouldRemove, {}};

  // Removed while a lock over every holder token is ours: nobody can start holding it, and
  // what it holds is looked at again under that lock.
  const Fd fd = open_segment_file(path, O_RDWR);
  if (!fd) return {name, Action::kFailed, std::string("cannot open it to remove it: ") + std::strerror(errno)};
  struct stat held {};
  if (::fstat(fd.get(), &held) != 0 || held.st_ino != st.st_ino || held.st_dev != st.st_dev) {
    return kept("it was replaced meanwhile");
  }
  if (!shm::lock_out_holders(fd.get())) return kept("a process started holding it");
  SegmentStatus now = seen;
  now.file_bytes = static_cast<size_t>(held.st_size);
  read_queue(fd.get(), now);
  if (std::string why = needs_force(now); !why.empty() && !options.force) return kept(why);
  if (::lstat(path.c_str(), &st) != 0 || held.st_ino != st.st_ino || held.st_dev != st.st_dev) {
    return kept("it was replaced meanwhile");
  }
  if (::unlink(path.c_str()) != 0) return {name, Action::kFailed, std::string("unlink: ") + std::strerror(errno)};
  return {name, Action::kRemoved, {}};
}

}  // namespace

std::vector<SegmentStatus> list_segments() {
  std::vector<SegmentStatus> out;
  for (const auto& name : segment_names()) out.push_back(status_of(name));
  return out;
}

SegmentStatus segment_status(const std::string& name) {
  shm::validate_name(name);
  struct stat st {};
  if (::lstat(path_of(name).c_str(), &st) != 0) throw ValueError("no queue named '" + name + "'");
  return status_of(name);
}

std::vector<CleanupOutcome> cleanup_segments(const CleanupOptions& options) {
  std::vector<CleanupOutcome> outcomes;
  for (const auto& name : options.only) shm::validate_name(name);
  const bool named = !options.only.empty();
  for (const auto& name : named ? options.only : segment_names()) outcomes.push_back(clean_one(name, options, named));
  if (named) return outcomes;
  // The doorbell sockets of waiters that died with the queue they waited for gone too.
  using Action = CleanupOutcome::Action;
  for (const auto& file_name : shm::stale_doorbells()) {
    if (options.dry_run) {
      outcomes.push_back({file_name, Action::kWouldRemove, ""});
    } else if (shm::remove_stale_doorbell(file_name)) {
      outcomes.push_back({file_name, Action::kRemoved, ""});
    }
  }
  return outcomes;
}

void remove_segment(const std::string& name, bool force) {
  const SegmentStatus status = segment_status(name);
  if (const std::string why = needs_force(status); !why.empty() && !force) {
    throw ValueError("'" + name + "' " + why);
  }
  if (!ByteQueue::remove(name)) throw ValueError("no queue named '" + name + "'");
}

}  // namespace xproc
