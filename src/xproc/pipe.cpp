// byte_pipe(): the fds behind Pipe(), and the transport over them.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <utility>

#include "xproc/connection.h"
#include "xproc/errors.h"
#include "xproc/ring_transport_internal.h"
#include "xproc/stream_transport_internal.h"

namespace xproc {

namespace {

// The descriptors a shared-memory pipe holds beyond its socket pair: the memfd.
constexpr rlim_t kRingPipeDescriptors = 1;

// Whether a shared-memory pipe's descriptors would take this process past a quarter of what
// RLIMIT_NOFILE allows, `newest` being the socket pair's higher descriptor (the kernel hands
// out the lowest free number, so it bounds the open count). Past it pipes are socket pairs,
// as CPython's are: a program that makes hundreds (400 at the usual 1024) gets them all,
// and keeps descriptors for its files and sockets.
bool descriptors_scarce(int newest) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return false;
  return static_cast<rlim_t>(newest) + kRingPipeDescriptors >= limit.rlim_cur / 4;
}

}  // namespace

std::pair<ByteConnection, ByteConnection> byte_pipe(bool duplex, ConnectionOptions options) {
  int fds[2];
  if (options.pipe_ring_bytes > 0) {
    XPROC_REQUIRE(options.pipe_ring_bytes >= 64 && options.pipe_ring_bytes < (uint64_t{1} << 32),
                  "pipe_ring_bytes must be 0 or between 64 bytes and 4 GiB", options.pipe_ring_bytes);
    // Shared memory: the rings carry the messages; the socket pair tells each end when
    // the other is gone and carries, in whole chunks, the payloads too large for a ring.
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) throw_os_error("socketpair", errno);
    Fd sockets[2] = {Fd(fds[0]), Fd(fds[1])};
    std::shared_ptr<detail::RingPipe> rings;
    if (!descriptors_scarce(fds[1])) {
      try {
        rings = std::make_shared<detail::RingPipe>(options.pipe_ring_bytes, options.pipe_reserved_bytes, duplex);
      } catch (const OSError&) {
        // No shared memory to be had: as below.
      }
    }
    if (!rings) {
      // Memory or descriptors short: fall back on the socket pair (or pipe) alone, a
      // complete pipe, only slower. (Its descriptors are made after these are closed.)
      for (Fd& socket : sockets) socket.reset();
      options.pipe_ring_bytes = 0;
      return byte_pipe(duplex, options);
    }
    // One way: the first end only reads, the second only writes (it sends into ring 0).
    auto end = [&](int which, int side, bool readable, bool writable) {
      return ByteConnection(
          std::make_unique<detail::RingTransport>(std::move(sockets[which]), rings, side, readable, writable, options));
    };
    if (duplex) return {end(0, 0, true, true), end(1, 1, true, true)};
    return {end(0, 1, true, false), end(1, 0, false, true)};
  }
  // CPython's framing over an OS pipe or a socket pair.
  auto stream_end = [&](Fd fd, bool readable, bool writable) {
    return ByteConnection(std::make_unique<detail::StreamTransport>(std::move(fd), readable, writable, options));
  };
  if (!duplex && detail::sigpipe_ignored()) {
    // An OS pipe, as CPython makes: it moves small messages about 1.6 times faster than a
    // socket pair (the kernel appends them to one page instead of allocating a buffer for
    // each). Non-blocking, so the bindings can offer a frame with one plain write()
    // (StreamTransport waits in poll() where a call must block). Only when SIGPIPE is
    // ignored (as in every Python process): otherwise each write would have to mask it,
    // three more system calls, and a socket pair is the faster choice.
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw_os_error("pipe", errno);
  } else {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw_os_error("socketpair", errno);
    if (!duplex) {
      // One way over a socket pair: the unused directions are shut, so a stray write
      // through the reader's fd fails as it would on a pipe.
      shutdown(fds[0], SHUT_WR);
      shutdown(fds[1], SHUT_RD);
    }
  }
  Fd ends[2] = {Fd(fds[0]), Fd(fds[1])};
  return {stream_end(std::move(ends[0]), true, duplex), stream_end(std::move(ends[1]), duplex, true)};
}

}  // namespace xproc
