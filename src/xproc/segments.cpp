#include "xproc/segments.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string_view>

#include "xproc/errors.h"
#include "xproc/shm/segment.h"

namespace xproc {
namespace {

namespace fs = std::filesystem;
constexpr std::string_view kPrefix = "xproc.";

// segment name -> pids mapping it, from every readable /proc/<pid>/maps.
std::map<std::string, std::vector<pid_t>> holders_by_segment() {
  std::map<std::string, std::vector<pid_t>> holders;
  const pid_t self = getpid();
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator("/proc", ignored)) {
    const std::string pid_text = entry.path().filename().string();
    if (pid_text.empty() || !std::all_of(pid_text.begin(), pid_text.end(), ::isdigit)) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid == self) continue;
    std::ifstream maps(entry.path() / "maps");  // unreadable (gone, or not ours): skipped
    std::string line;
    std::vector<std::string> seen;
    while (std::getline(maps, line)) {
      const size_t at = line.find("/dev/shm/xproc.");
      if (at == std::string::npos) continue;
      std::string name = line.substr(at + 15);
      if (const size_t deleted = name.find(" (deleted)"); deleted != std::string::npos) continue;
      if (std::find(seen.begin(), seen.end(), name) != seen.end()) continue;
      seen.push_back(name);
      holders[name].push_back(pid);
    }
  }
  return holders;
}

SegmentStatus status_of(const std::string& name, const std::map<std::string, std::vector<pid_t>>& holders) {
  SegmentStatus status;
  status.name = name;
  std::error_code error;
  status.file_bytes = fs::file_size(fs::path("/dev/shm") / (std::string(kPrefix) + name), error);
  try {
    status.queue = ByteQueue::open(name).info();  // the handle is closed again at once
  } catch (const Error& e) {
    status.error = e.what();
  }
  if (auto it = holders.find(name); it != holders.end()) status.holders = it->second;
  return status;
}

std::vector<std::string> segment_names() {
  std::vector<std::string> names;
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator("/dev/shm", ignored)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind(kPrefix, 0) == 0 && file.size() > kPrefix.size()) names.push_back(file.substr(kPrefix.size()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

std::vector<SegmentStatus> list_segments() {
  const auto holders = holders_by_segment();
  std::vector<SegmentStatus> out;
  for (const auto& name : segment_names()) out.push_back(status_of(name, holders));
  return out;
}

SegmentStatus segment_status(const std::string& name) {
  shm::validate_name(name);
  if (!fs::exists(fs::path("/dev/shm") / (std::string(kPrefix) + name))) {
    throw ValueError("no queue named '" + name + "'");
  }
  return status_of(name, holders_by_segment());
}

std::vector<std::string> remove_abandoned_segments(bool dry_run, const std::vector<std::string>& only) {
  std::vector<std::string> removed;
  for (const auto& status : list_segments()) {
    if (!only.empty() && std::find(only.begin(), only.end(), status.name) == only.end()) continue;
    if (!status.holders.empty()) continue;
    if (!dry_run) ByteQueue::remove(status.name);
    removed.push_back(status.name);
  }
  return removed;
}

}  // namespace xproc
