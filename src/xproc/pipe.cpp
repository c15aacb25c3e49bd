// byte_pipe(): the fds behind Pipe().
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "xproc/connection.h"
#include "xproc/errors.h"

namespace xproc {

std::pair<ByteConnection, ByteConnection> byte_pipe(bool duplex, ConnectionOptions options) {
  // A socket pair in both cases (CPython uses os.pipe() for one-way pipes): a socket can be
  // written with MSG_NOSIGNAL, so a dead reader needs no SIGPIPE masking per write, and
  // offered a frame without blocking (MSG_DONTWAIT), which the bindings use to send small
  // messages while holding their interpreter lock.
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw_os_error("socketpair", errno);
  if (duplex) return {ByteConnection(fds[0], true, true, options), ByteConnection(fds[1], true, true, options)};
  // One way: the unused directions are shut, so a stray write through the reader's fd
  // fails as it would on a pipe.
  shutdown(fds[0], SHUT_WR);
  shutdown(fds[1], SHUT_RD);
  return {ByteConnection(fds[0], true, false, options), ByteConnection(fds[1], false, true, options)};
}

}  // namespace xproc
