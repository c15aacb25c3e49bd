// Implementation of segment.h: named segments are files under /dev/shm opened directly (as
// glibc's shm_open does), so that creation is exclusive, no link is followed, and the
// opened file is checked before it is mapped.
#include "xproc/shm/segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "xproc/errors.h"
#include "xproc/fd.h"
#include "xproc/syscall_internal.h"

namespace xproc::shm {
namespace {

constexpr unsigned kSeals = F_SEAL_SHRINK | F_SEAL_GROW;

// Reserves the pages of [offset, offset + length) now: tmpfs allocates lazily, and a write
// to a page it cannot allocate later is a SIGBUS.
void reserve_range(int fd, size_t offset, size_t length, std::string_view what) {
  // tmpfs gives up when a signal comes (EINTR), undoing what it had reserved. posix_fallocate
  // returns its error instead of setting errno.
  int rc = 0;
  detail::retry_on_eintr([&] {
    if ((rc = posix_fallocate(fd, static_cast<off_t>(offset), static_cast<off_t>(length))) == 0) return 0;
    errno = rc;
    return -1;
  });
  if (rc == ENOSPC || rc == ENOMEM) {
    throw MemoryError("cannot reserve " + std::to_string(length) + " bytes for " + std::string(what) + ": " +
                      std::strerror(rc) + (rc == ENOSPC ? " (/dev/shm is full or too small)" : ""));
  }
  if (rc != 0) {
    throw OSError(
        "cannot reserve " + std::to_string(length) + " bytes for " + std::string(what) + ": " + std::strerror(rc), rc);
  }
}

// Sizes a new segment file: `size` bytes, the first `reserved` of them reserved.
void size_new(int fd, size_t size, size_t reserved, std::string_view what) {
  reserved = std::min(reserved, size);
  if (reserved < size && detail::retry_on_eintr([&] { return ftruncate(fd, static_cast<off_t>(size)); }) != 0) {
    throw_os_error("ftruncate", errno);
  }
  if (reserved > 0) reserve_range(fd, 0, reserved, what);
}

std::string octal(unsigned bits) {
  char text[8];
  std::snprintf(text, sizeof(text), "0%03o", bits & 07777);
  return text;
}

const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
}

// Refuses (PermissionError) a segment file that `sharing` does not accept.
void check_ownership(int fd, const std::string& path, const Sharing& sharing) {
  struct stat st {};
  if (fstat(fd, &st) != 0) throw_os_error("fstat", errno);
  if (!S_ISREG(st.st_mode)) {
    throw PermissionError(path + " is " + file_kind(st.st_mode) + ", not a segment: refusing to map it");
  }
  const uid_t owner = sharing.owner.value_or(geteuid());
  const unsigned bits = st.st_mode & 07777;
  const bool group_accepted = !sharing.group || (bits & 070) == 0 || st.st_gid == *sharing.group;
  if (st.st_uid != owner || (bits & ~sharing.mode) != 0 || !group_accepted) {
    std::string expected = "owner uid " + std::to_string(owner) + " and mode within " + octal(sharing.mode);
    if (sharing.group) expected += " (group " + std::to_string(*sharing.group) + ")";
    throw PermissionError(path + " is owned by uid " + std::to_string(st.st_uid) + " (group " +
                          std::to_string(st.st_gid) + ") with mode " + octal(bits) + ", where " + expected +
                          " is expected: refusing a segment others could have made or can write (see Sharing)");
  }
}

// The error for a failed open(2) of an existing segment.
[[noreturn]] void throw_open_error(int error, std::string_view name, const std::string& path) {
  switch (error) {
    case ENOENT: throw ValueError("no segment named '" + std::string(name) + "'");
    case ELOOP: throw PermissionError(path + " is a symbolic link: refusing to follow it");
    case EISDIR: throw PermissionError(path + " is a directory, not a segment");
    case ENXIO:
    case ENODEV: throw PermissionError(path + " is not a regular file, not a segment");
    case EACCES:
    case EPERM: throw PermissionError("cannot open " + path + ": " + std::strerror(error), error);
    default: throw OSError("cannot open " + path + ": " + std::strerror(error), error);
  }
}

Fd open_retrying(const char* path, int flags, mode_t mode = 0) {
  return Fd(detail::retry_on_eintr([&] { return ::open(path, flags, mode); }));
}

}  // namespace

void validate_name(std::string_view name) {
  auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  };
  bool ok = !name.empty() && name.size() <= 200 && name != "." && name != "..";
  for (char c : name) ok = ok && allowed(c);
  if (!ok) {
    throw ValueError("invalid segment name '" + std::string(name) +
                     "': use 1 to 200 of A-Z a-z 0-9 . _ - (not '.' or '..')");
  }
}

std::string os_name(std::string_view name) { return "xproc." + std::string(name); }

std::string os_path(std::string_view name) { return "/dev/shm/" + os_name(name); }

int create_sealed_memfd(size_t size, const char* tag, size_t reserved) {
  Fd fd(memfd_create(tag, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) throw_os_error("memfd_create", errno);
  size_new(fd.get(), size, reserved, "an anonymous segment");
  if (fcntl(fd.get(), F_ADD_SEALS, kSeals | F_SEAL_SEAL) != 0) throw_os_error("fcntl(F_ADD_SEALS)", errno);
  return fd.release();  // the caller's
}

size_t sealed_size(int fd, const std::string& what) {
  const int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (static_cast<unsigned>(seals) & kSeals) != kSeals) {
    throw ValueError(what +
                     " is not a segment sealed against resizing: refusing to map memory another "
                     "process could shrink under us");
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) throw_os_error("fstat", errno);
  if (!S_ISREG(st.st_mode) || st.st_size <= 0) throw ValueError(what + " is not a segment");
  return static_cast<size_t>(st.st_size);
}

Segment Segment::create(std::string_view name, size_t size, const Sharing& sharing, size_t reserved) {
  validate_name(name);
  XPROC_REQUIRE(sharing.mode <= 0777, "a segment's mode is permission bits only", sharing.mode);
  const std::string path = os_path(name);
  Fd fd = open_retrying(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (!fd) {
    const int error = errno;
    if (error == EEXIST) throw ValueError("a segment named '" + std::string(name) + "' already exists");
    if (error == EACCES || error == EPERM)
      throw PermissionError("cannot create " + path + ": " + std::strerror(error), error);
    throw OSError("cannot create segment '" + std::string(name) + "': " + std::strerror(error), error);
  }
  std::unique_ptr<Holder> holder;
  try {
    if (sharing.group && fchown(fd.get(), static_cast<uid_t>(-1), *sharing.group) != 0) throw_os_error("fchown", errno);
    if (fchmod(fd.get(), sharing.mode) != 0) throw_os_error("fchmod", errno);  // exact bits, umask or not
    size_new(fd.get(), size, reserved, "segment '" + std::string(name) + "'");
  } catch (...) {
    fd.reset();
    unlink(path.c_str());
    throw;
  }
  try {
    holder = std::make_unique<Holder>(std::move(fd), false, path.c_str());
    return map_whole(std::move(holder), size, std::string(name));
  } catch (...) {
    unlink(path.c_str());
    throw;
  }
}

Segment Segment::open(std::string_view name, const Sharing& sharing) {
  validate_name(name);
  const std::string path = os_path(name);
  // O_NONBLOCK: a FIFO planted under the name must not hang the open (it is refused below).
  Fd fd = open_retrying(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (!fd) throw_open_error(errno, name, path);
  check_ownership(fd.get(), path, sharing);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) throw_os_error("fstat", errno);
  if (st.st_size <= 0) throw ValueError(path + " is empty: not a segment (or still being created)");
  return map_whole(std::make_unique<Holder>(std::move(fd), false, path.c_str()), static_cast<size_t>(st.st_size),
                   std::string(name));
}

Segment Segment::adopt(int fd) {
  Fd owned(fd);
  const size_t size = sealed_size(owned.get(), "descriptor " + std::to_string(fd));
  return map_whole(std::make_unique<Holder>(std::move(owned), true, "an adopted segment"), size, {});
}

Segment Segment::anonymous(size_t size, size_t reserved) {
  Fd fd(create_sealed_memfd(size, "xproc", reserved));
  return map_whole(std::make_unique<Holder>(std::move(fd), false, "an anonymous segment"), size, {});
}

Segment Segment::map_whole(std::unique_ptr<Holder> holder, size_t size, std::string name) {
  holder->map(size);
  return Segment(std::move(holder), std::move(name));
}

void Segment::reserve(size_t offset, size_t length) const {
  reserve_range(fd(), offset, length, name_.empty() ? "an anonymous segment" : "segment '" + name_ + "'");
}

void Segment::release(size_t offset, size_t length) const noexcept {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t begin = (offset + page - 1) / page * page;
  const size_t end = (offset + length) / page * page;
  if (end <= begin) return;
  // Best effort: pages that stay reserved only cost memory until the next release.
  detail::retry_on_eintr([&] {
    return fallocate(fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(begin),
                     static_cast<off_t>(end - begin));
  });
}

size_t Segment::reserved_bytes() const {
  struct stat st {};
  if (fstat(fd(), &st) != 0) throw_os_error("fstat", errno);
  return static_cast<size_t>(st.st_blocks) * 512;
}

bool Segment::remove(std::string_view name) {
  validate_name(name);
  const std::string path = os_path(name);
  if (unlink(path.c_str()) == 0) return true;
  const int error = errno;
  if (error == ENOENT) return false;
  if (error == EACCES || error == EPERM) {
    throw PermissionError("cannot remove " + path + ": " + std::strerror(error) + " (another user's segment?)", error);
  }
  throw OSError("cannot remove " + path + ": " + std::strerror(error), error);
}

}  // namespace xproc::shm
