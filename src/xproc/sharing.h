// Who may use a named queue besides the user who made it. Named segments live in /dev/shm,
// where every local user can create files, so an opener must know that the file it maps was
// made by someone it trusts and that nobody else can write it.
#pragma once

#include <sys/types.h>

#include <optional>

namespace xproc {

// By default a named segment is its creator's alone: created with mode 0600, and opened
// only when it is a regular file owned by this process's effective uid with no group or
// other permission bits. Sharing on purpose takes the same declaration on both sides: the
// creator gives the segment `mode` (and `group`); an opener accepts a segment whose owner is
// `owner` and whose permission bits stay within `mode`. Anything else is PermissionError.
struct Sharing {
  // At creation: the permission bits, set exactly (whatever the umask). At open: the most
  // the segment may have. 0600: this user only; 0660: its group too; 0666: every local user.
  unsigned mode = 0600;
  // At open: the user that must own the segment; nullopt: this process's effective uid.
  std::optional<uid_t> owner;
  // At creation: the group the segment is given (the creator must belong to it). At open,
  // for a segment with group permission bits: the group it must have; nullopt: the owner's
  // choice is trusted.
  std::optional<gid_t> group;
};

}  // namespace xproc
