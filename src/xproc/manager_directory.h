// Where a user's running Managers are found: each serving Manager (Manager() or `xproc
// serve`) keeps a small file in the user's runtime directory, locked while it lives, with
// its address, pid and object counts (never its authkey). `xproc ls --managers` lists them.
//
// The directory is $XDG_RUNTIME_DIR/xproc/managers, or /tmp/xproc-<uid>/managers without
// one; it must be the user's own and closed to everyone else (0700), or nothing is
// written there and listing it is refused. An entry whose server died is recognised by its
// lock, which the kernel drops with the process: a listing shows it as stale, and the next
// server that registers removes it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "xproc/fd.h"

namespace xproc {

// One Manager as its entry describes it.
struct ManagerRecord {
  std::string address;
  pid_t pid = 0;
  uint64_t instance = 0;  // the server's instance number (Manager::instance())
  uint64_t started_unix_ns = 0;
  uint64_t objects = 0;        // live shared objects, at the last update (once a second)
  uint64_t named = 0;          // of which registered under a name
  bool live = false;           // its server holds the entry's lock
  std::filesystem::path file;  // the entry itself
};

// The managers directory of this user (see above); made when `create` and absent.
// PermissionError when it exists but is not this user's own, or others may use it.
std::filesystem::path managers_directory(bool create = false);

// Every entry of this user's directory, sorted by address; stale ones included (live =
// false). Entries that do not parse are skipped.
std::vector<ManagerRecord> list_managers();

// Removes the entries of the server that was process `pid` once it has ended (its lock is
// gone): what the process that started a server does after stopping it with a signal.
void remove_manager_entries_of(pid_t pid) noexcept;

// A server's own entry, written when made and removed when destroyed (the server keeps it
// for as long as it serves). A server whose directory cannot be used serves without one.
class ManagerDirectoryEntry {
 public:
  // Writes the entry; nullopt (and nothing written) when the directory cannot be used or
  // the address cannot be recorded (a newline in it).
  static std::optional<ManagerDirectoryEntry> create(const std::string& address, uint64_t instance);

  ManagerDirectoryEntry(ManagerDirectoryEntry&&) noexcept = default;
  ManagerDirectoryEntry& operator=(ManagerDirectoryEntry&&) noexcept = default;
  ~ManagerDirectoryEntry();

  // Rewrites the counts (in place: the lock stays with the file).
  void update(uint64_t objects, uint64_t named);

 private:
  ManagerDirectoryEntry(Fd fd, std::filesystem::path path, ManagerRecord record)
      : fd_(std::move(fd)), path_(std::move(path)), record_(std::move(record)) {}
  void write();

  Fd fd_;
  std::filesystem::path path_;
  ManagerRecord record_;
};

}  // namespace xproc
