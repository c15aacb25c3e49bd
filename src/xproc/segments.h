// What xproc has in /dev/shm, for operators (`xproc ls`, `stat`, `rm`, `cleanup`): every
// named segment, what it holds, and how many processes hold it.
//
// Looking never maps a segment and never counts as holding it: the header is read with
// pread() from a descriptor opened read-only (a file truncated meanwhile is a short read,
// not a SIGBUS), and holders are counted from their token locks (shm/holders.h), which the
// kernel keeps and which every PID namespace sees alike. Every name and byte read here was
// chosen by whoever made the file: callers escape them before printing.
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "xproc/byte_queue.h"

namespace xproc {

// One /dev/shm/xproc.* entry as list_segments() and segment_status() found it.
struct SegmentStatus {
  std::string name;         // the file's name without "xproc.": any bytes a local user chose
  bool valid_name = false;  // whether xproc could have made it (shm::validate_name)
  size_t file_bytes = 0;    // the segment's size in /dev/shm
  uid_t owner = 0;          // the file's owner and permission bits
  unsigned mode = 0;
  std::optional<size_t> holders;   // processes holding it; nullopt when it could not be looked at
  std::optional<QueueInfo> queue;  // nullopt when it is not a readable queue (see error)
  std::string error;
};

// Every /dev/shm/xproc.* entry, sorted by name.
std::vector<SegmentStatus> list_segments();
// One segment; ValueError "no queue named '<name>'" when absent.
SegmentStatus segment_status(const std::string& name);

// What cleanup_segments() may remove (`xproc cleanup`'s flags).
struct CleanupOptions {
  bool dry_run = false;           // only say what would be removed
  bool force = false;             // also remove queues that hold messages, and what is not a queue
  std::vector<std::string> only;  // consider only these names (default: every segment)
};

// What cleanup did with one segment.
struct CleanupOutcome {
  enum class Action { kRemoved, kWouldRemove, kKept, kFailed };
  std::string name;
  Action action;
  std::string reason;  // why it was kept, or why removing it failed
};

// Removes the segments no process holds, except (without `force`) those holding messages,
// since a consumer may not have opened its queue yet. A segment is removed while a lock over
// every holder token is held, so nobody can start holding it in between.
std::vector<CleanupOutcome> cleanup_segments(const CleanupOptions& options);

// `xproc rm`: unlinks one named queue (processes holding it keep working). ValueError when
// absent, or when it holds messages and !force; PermissionError when not allowed.
void remove_segment(const std::string& name, bool force);

}  // namespace xproc
