// What xproc has in /dev/shm, for operators (`xproc ls`, `stat`, `rm`, `cleanup`): every
// named segment, what it holds, and which live processes have it mapped.
//
// Holders are found the way fuser(1) finds them, from /proc/<pid>/maps: a process using a
// queue has its segment mapped for as long as it holds a handle, so a segment nobody maps
// was left behind by processes that are gone (or is waiting for one to open it).
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "xproc/byte_queue.h"

namespace xproc {

struct SegmentStatus {
  std::string name;                // without the "xproc." prefix
  size_t file_bytes = 0;           // the segment's size in /dev/shm
  std::optional<QueueInfo> queue;  // nullopt when it is not a readable queue (see error)
  std::string error;
  std::vector<pid_t> holders;      // live processes (other than this one) that map it
};

// Every /dev/shm/xproc.* segment, sorted by name.
std::vector<SegmentStatus> list_segments();
// One segment; ValueError "no queue named '<name>'" when absent.
SegmentStatus segment_status(const std::string& name);
// Removes the segments no live process maps (among `only`, when not empty); returns their
// names. With dry_run, only says which.
std::vector<std::string> remove_abandoned_segments(bool dry_run = false, const std::vector<std::string>& only = {});

}  // namespace xproc
