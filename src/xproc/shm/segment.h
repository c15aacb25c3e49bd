// Shared-memory segments: a named POSIX segment (/dev/shm/xproc.<name>) or an anonymous
// one (memfd: no name, nothing to leak, inherited across fork). Space is reserved up
// front, so a full /dev/shm is an error at creation, never a SIGBUS later.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace xproc::shm {

// Throws ValueError unless name is 1..200 characters of [A-Za-z0-9._-] and not "." or "..".
void validate_name(std::string_view name);

// The file name under /dev/shm for a user's segment name: "xproc.<name>".
std::string os_name(std::string_view name);

class Segment {
 public:
  // Creates a new named segment of `size` bytes with permission bits `mode` (exactly,
  // regardless of umask). Throws ValueError if it exists or the name is bad, OSError when
  // /dev/shm cannot hold it (nothing is left behind).
  static Segment create(std::string_view name, size_t size, unsigned mode);
  // Maps an existing named segment. Throws ValueError when there is none.
  static Segment open(std::string_view name);
  // Creates an anonymous segment (memfd).
  static Segment anonymous(size_t size);
  // Maps the whole of an anonymous segment's descriptor received from another process
  // (for instance passed by a language binding to a spawned child). Takes ownership of
  // `fd`, closing it on failure.
  static Segment adopt(int fd);
  // Unlinks a named segment; false when it did not exist. Mappings stay valid.
  static bool remove(std::string_view name);

  Segment(Segment&& other) noexcept;
  Segment& operator=(Segment&& other) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();

  std::byte* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  int fd() const noexcept { return fd_; }
  const std::string& name() const noexcept { return name_; }  // empty when anonymous

 private:
  static Segment map_whole(int fd, std::string name);
  Segment(int fd, std::byte* data, size_t size, std::string name)
      : fd_(fd), data_(data), size_(size), name_(std::move(name)) {}
  int fd_ = -1;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  std::string name_;
};

}  // namespace xproc::shm
