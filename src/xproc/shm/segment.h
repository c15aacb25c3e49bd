// Shared-memory segments: a named POSIX segment (/dev/shm/xproc.<name>) or an anonymous
// one (memfd: no name, nothing to leak, inherited across fork). A segment may be sparse:
// its size is fixed at creation, but only the part reserved then holds memory, and its
// user reserves more (reserve) before it writes there and gives it back (release) when
// done. Memory is reserved before use, so a full /dev/shm is an error at the call that
// asks, never a SIGBUS later.
//
// What another process can do to a segment it shares, and what stops it:
// - shrink it under its holders (whose next access would be a SIGBUS): anonymous segments
//   are sealed against shrinking and growing once sized, and a descriptor received from
//   elsewhere is mapped only when so sealed. A named segment cannot be sealed; opening one
//   checks its size, and the residual risk is in docs/protocol.md ("Named segments");
// - plant a file where a named segment will be opened: names are created exclusively and
//   never through a link, and an opener accepts only a regular file whose owner and
//   permission bits its Sharing allows (PermissionError otherwise);
// - die holding it: every holder keeps a token lock the kernel drops (shm/holders.h).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "xproc/sharing.h"
#include "xproc/shm/holders.h"

namespace xproc::shm {

// Throws ValueError unless name is 1..200 characters of [A-Za-z0-9._-] and not "." or "..".
void validate_name(std::string_view name);

// The file name under /dev/shm for a user's segment name: "xproc.<name>".
std::string os_name(std::string_view name);
// Its path: "/dev/shm/xproc.<name>".
std::string os_path(std::string_view name);

// A new memfd of `size` bytes, its first `reserved` bytes reserved, and sealed against
// shrinking, growing and further seals, owned by the caller (hold it in an Fd). OSError when
// memory is short.
int create_sealed_memfd(size_t size, const char* tag, size_t reserved = ~size_t{0});
// The size of the memfd `fd` received from another process; ValueError naming `what` unless
// it is sealed against shrinking and growing.
size_t sealed_size(int fd, const std::string& what);

class Segment {
 public:
  // Creates a new named segment of `size` bytes with sharing.mode's permission bits (and
  // sharing.group's group), its first `reserved` bytes reserved (all of it by default).
  // ValueError when the name is bad or taken (by anything: a file, a link, a directory),
  // OSError when /dev/shm cannot hold it (nothing is left behind).
  static Segment create(std::string_view name, size_t size, const Sharing& sharing, size_t reserved = kAll);
  // Maps an existing named segment. ValueError when there is none; PermissionError when it
  // is a link, not a regular file, or owned or permitted otherwise than `sharing` accepts.
  static Segment open(std::string_view name, const Sharing& sharing);
  // Creates an anonymous segment (a sealed memfd), its first `reserved` bytes reserved.
  static Segment anonymous(size_t size, size_t reserved = kAll);
  // Maps the whole of an anonymous segment's descriptor received from another process (for
  // instance passed by a language binding to a spawned child). Takes ownership of `fd`,
  // closing it on failure. ValueError when it is not sealed against resizing.
  static Segment adopt(int fd);
  // Unlinks a named segment; false when it did not exist. Mappings stay valid.
  // PermissionError when this user may not remove it.
  static bool remove(std::string_view name);

  Segment(Segment&& other) noexcept = default;
  Segment& operator=(Segment&& other) noexcept = default;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment() = default;  // the Holder unmaps and closes

  static constexpr size_t kAll = ~size_t{0};

  // Reserves memory for bytes [offset, offset + length) (whole pages around them) before
  // they are written. MemoryError when /dev/shm or memory cannot hold them; nothing else
  // changes.
  void reserve(size_t offset, size_t length) const;
  // Gives the whole pages inside [offset, offset + length) back; they read as zeros until
  // reserved and written again. The segment keeps its size.
  void release(size_t offset, size_t length) const noexcept;
  // Bytes of memory the segment holds now.
  size_t reserved_bytes() const;

  std::byte* data() const noexcept { return holder_->data(); }
  size_t size() const noexcept { return holder_->size(); }
  int fd() const noexcept { return holder_->fd(); }
  const std::string& name() const noexcept { return name_; }  // empty when anonymous
  // This process's holding of the segment: its token, and who else is alive.
  const Holder& holder() const noexcept { return *holder_; }

 private:
  static Segment map_whole(std::unique_ptr<Holder> holder, size_t size, std::string name);
  Segment(std::unique_ptr<Holder> holder, std::string name) : holder_(std::move(holder)), name_(std::move(name)) {}
  // The descriptor and the mapping, at an address the fork handler can find.
  std::unique_ptr<Holder> holder_;
  std::string name_;
};

}  // namespace xproc::shm
