// Implementation of segment.h. Named segments go through Boost.Interprocess's
// shared_memory_object; the mapping, space reservation and permissions use the fd.
#include "xproc/shm/segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstring>
#include <utility>

#include "xproc/errors.h"

namespace xproc::shm {
namespace bip = boost::interprocess;

namespace {

std::byte* map_fd(int fd, size_t size) {
  void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) throw_os_error("mmap", errno);
  return static_cast<std::byte*>(data);
}

// Reserves the pages now: tmpfs allocates lazily, and a write to a page it cannot
// allocate later is a SIGBUS.
void reserve(int fd, size_t size, std::string_view what) {
  const int rc = posix_fallocate(fd, 0, static_cast<off_t>(size));
  if (rc != 0) {
    throw OSError("cannot reserve " + std::to_string(size) + " bytes for " + std::string(what) +
                      ": " + std::strerror(rc) + (rc == ENOSPC ? " (/dev/shm is full or too small)" : ""),
                  rc);
  }
}

}  // namespace

void validate_name(std::string_view name) {
  auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  };
  bool ok = !name.empty() && name.size() <= 200 && name != "." && name != "..";
  for (char c : name) ok = ok && allowed(c);
  if (!ok) {
    throw ValueError("invalid segment name '" + std::string(name) +
                     "': use 1 to 200 of A-Z a-z 0-9 . _ - (not '.' or '..')");
  }
}

std::string os_name(std::string_view name) { return "xproc." + std::string(name); }

Segment Segment::create(std::string_view name, size_t size, unsigned mode) {
  validate_name(name);
  const std::string full = os_name(name);
  bip::permissions permissions(mode);
  bip::shared_memory_object object;
  try {
    object = bip::shared_memory_object(bip::create_only, full.c_str(), bip::read_write, permissions);
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() == bip::already_exists_error) {
      throw ValueError("a segment named '" + std::string(name) + "' already exists");
    }
    throw OSError("cannot create segment '" + std::string(name) + "': " + e.what(), e.get_native_error());
  }
  const int fd = dup(object.get_mapping_handle().handle);
  try {
    if (fd < 0) throw_os_error("dup", errno);
    if (fchmod(fd, mode) != 0) throw_os_error("fchmod", errno);  // exact bits, umask or not
    reserve(fd, size, "segment '" + std::string(name) + "'");
    return Segment(fd, map_fd(fd, size), size, std::string(name));
  } catch (...) {
    if (fd >= 0) close(fd);
    bip::shared_memory_object::remove(full.c_str());
    throw;
  }
}

Segment Segment::open(std::string_view name) {
  validate_name(name);
  const std::string full = os_name(name);
  bip::shared_memory_object object;
  try {
    object = bip::shared_memory_object(bip::open_only, full.c_str(), bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() == bip::not_found_error) {
      throw ValueError("no segment named '" + std::string(name) + "'");
    }
    throw OSError("cannot open segment '" + std::string(name) + "': " + e.what(), e.get_native_error());
  }
  const int fd = dup(object.get_mapping_handle().handle);
  if (fd < 0) throw_os_error("dup", errno);
  return map_whole(fd, std::string(name));
}

Segment Segment::adopt(int fd) { return map_whole(fd, {}); }

Segment Segment::map_whole(int fd, std::string name) {
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int error = errno;
    close(fd);
    throw_os_error("fstat", error);
  }
  try {
    return Segment(fd, map_fd(fd, static_cast<size_t>(st.st_size)), static_cast<size_t>(st.st_size),
                   std::move(name));
  } catch (...) {
    close(fd);
    throw;
  }
}

Segment Segment::anonymous(size_t size) {
  const int fd = memfd_create("xproc.anonymous", MFD_CLOEXEC);
  if (fd < 0) throw_os_error("memfd_create", errno);
  try {
    reserve(fd, size, "an anonymous segment");
    return Segment(fd, map_fd(fd, size), size, {});
  } catch (...) {
    close(fd);
    throw;
  }
}

bool Segment::remove(std::string_view name) {
  validate_name(name);
  return bip::shared_memory_object::remove(os_name(name).c_str());
}

Segment::Segment(Segment&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      name_(std::move(other.name_)) {}

Segment& Segment::operator=(Segment&& other) noexcept {
  Segment moved(std::move(other));
  std::swap(fd_, moved.fd_);
  std::swap(data_, moved.data_);
  std::swap(size_, moved.size_);
  std::swap(name_, moved.name_);
  return *this;  // `moved` now owns (and releases) what this held
}

Segment::~Segment() {
  if (data_) munmap(data_, size_);
  if (fd_ >= 0) close(fd_);
}

}  // namespace xproc::shm
