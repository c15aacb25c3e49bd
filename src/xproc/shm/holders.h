// Holder tokens: which processes still hold a segment, in locks the kernel keeps
// (docs/protocol.md, "Holders").
//
// Every process that has a segment mapped holds an open-file-description (OFD) lock on one
// byte of the segment's file, at kHolderLockBase + its token, a random number in
// [1, kTokenLimit). The kernel drops the lock when the last descriptor of that description
// is closed, which happens to a process that dies whatever kills it. No process id is
// involved, so the answer holds across PID namespaces and users, and nobody scans /proc.
//
// A process's token is what it writes into a shared mutex it owns (shm/mutex.h): a waiter
// whose mutex's owner token has no lock any more knows that the owner is dead. `xproc ls`
// counts the tokens, and `xproc cleanup` removes a segment only while it holds a lock over
// all of them, so that nobody can start holding it meanwhile.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "xproc/fd.h"

namespace xproc::shm {

// The holder locks lie far beyond the end of any segment (locks past the end are allowed).
inline constexpr off_t kHolderLockBase = off_t{1} << 40;
// Tokens are in [1, kTokenLimit); 0 is never one (a free mutex holds 0).
inline constexpr uint32_t kTokenLimit = uint32_t{1} << 31;

// One process's holding of one segment: a descriptor of an open file description of its
// own, the token locked on it, and the mapping made through it. The kernel drops the lock
// when nothing refers to the description any more, and a mapping refers to it as much as a
// descriptor does. So after fork() the child gets a description, a token and a mapping of its
// own (the same memory, at the same address) before fork returns: sharing the parent's, a
// child would keep the parent's token alive after the parent died, and its own death would
// go unseen while the parent lives.
class Holder {
 public:
  // Takes a token on `fd`, a descriptor of the segment opened for reading and writing; the
  // Holder owns `fd` from here on (closed on failure too). With `own_description`, `fd`
  // came from elsewhere (another process's duplicate): it is replaced by a descriptor of a
  // new open file description first. ValueError naming `what` when `xproc cleanup` is
  // removing the segment; OSError when the kernel refuses the lock.
  Holder(Fd fd, bool own_description, const char* what);
  ~Holder();  // unmaps, and closes the descriptor, which drops the token's lock
  Holder(const Holder&) = delete;
  Holder& operator=(const Holder&) = delete;

  // Maps the first `size` bytes of the segment (once), read and write. OSError on failure.
  std::byte* map(size_t size);

  int fd() const noexcept { return fd_.get(); }
  std::byte* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  uint32_t token() const noexcept { return token_.load(std::memory_order_relaxed); }

  // Whether the process holding `token` still holds the segment: its lock is there (or the
  // token is this process's own). When the kernel cannot be asked, the answer is yes: a
  // live owner's mutex is never taken from it.
  bool alive(uint32_t token) const noexcept;

 private:
  friend void renew_holders_after_fork() noexcept;
  void renew_after_fork() noexcept;

  Fd fd_;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  std::atomic<uint32_t> token_{0};
  Holder* prev_ = nullptr;  // the process's list of holders, for the fork handler
  Holder* next_ = nullptr;
};

// How many holders have tokens on the segment open as `fd` (any access mode; holders that
// share the caller's own open file description are not seen).
size_t count_holders(int fd);

// Takes a lock over every token of the segment open as `fd` (for writing): true when no
// process holds it, and from then until `fd` is closed no process can start holding it.
bool lock_out_holders(int fd);

}  // namespace xproc::shm
