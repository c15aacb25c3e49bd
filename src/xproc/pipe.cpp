// byte_pipe(): the fds behind Pipe().
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "xproc/connection.h"
#include "xproc/errors.h"

namespace xproc {

std::pair<ByteConnection, ByteConnection> byte_pipe(bool duplex, ConnectionOptions options) {
  int fds[2];
  if (duplex) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw_os_error("socketpair", errno);
    return {ByteConnection(fds[0], true, true, options), ByteConnection(fds[1], true, true, options)};
  }
  if (pipe2(fds, O_CLOEXEC) != 0) throw_os_error("pipe2", errno);
  return {ByteConnection(fds[0], true, false, options), ByteConnection(fds[1], false, true, options)};
}

}  // namespace xproc
