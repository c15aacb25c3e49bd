// Listener and Client: multiprocessing.connection's, for unix sockets (paths and Linux
// abstract names) and TCP, with the same HMAC handshake, so CPython's own Listener and
// Client interoperate with these.
//
// Addresses: "/path/to.sock" (or "unix:/path"), "\0name" or "unix:@name" (abstract),
// "host:port" (or "tcp:host:port"; port 0 picks a free one).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "xproc/byte_connection.h"
#include "xproc/fd.h"
#include "xproc/wait.h"  // wait(), which listener.h has always offered

namespace xproc {

class Listener {
 public:
  // How long a client has to finish the handshake by default.
  static constexpr std::chrono::seconds kDefaultHandshakeTimeout{5};

  // Binds and listens. An empty address picks a fresh abstract unix name. With an authkey,
  // accepting runs the handshake (deliver, then answer, as CPython's Listener) with every
  // client that connects, several at once: a client that goes silent holds up nobody, and
  // is dropped by the first accept that runs after `handshake_timeout` has passed since it
  // connected (or by close()).
  explicit Listener(std::string address = "", int backlog = 1, std::optional<std::string> authkey = std::nullopt,
                    ConnectionOptions options = {},
                    std::chrono::milliseconds handshake_timeout = kDefaultHandshakeTimeout);
  Listener(Listener&& other) noexcept;
  Listener& operator=(Listener&& other) noexcept;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();

  // Blocks for the next client that has passed the handshake. AuthenticationError when a
  // client fails it (that connection is closed; the listener stays usable, and the others
  // still in their handshakes go on).
  ByteConnection accept();
  // As accept(), waiting at most `timeout` (nullopt: forever); nullopt when none came.
  std::optional<ByteConnection> try_accept(Timeout timeout);
  // The bound address, in the form Client() accepts (TCP with the real port).
  const std::string& address() const noexcept { return address_; }
  int fileno() const noexcept { return fd_.get(); }
  // Stops listening; a filesystem socket is unlinked.
  void close() noexcept;
  // Leaves the socket file in place at close(): for a process that forked another to
  // serve this socket and closes its own copy.
  void keep_path() noexcept { unlink_path_.clear(); }

 private:
  Fd fd_;
  std::string address_;
  std::string unlink_path_;  // filesystem socket to remove on close
  std::optional<std::string> authkey_;
  ConnectionOptions options_;
  std::chrono::milliseconds handshake_timeout_;
  struct Handshake;  // a client part-way through its handshake (listener.cpp)
  std::vector<std::unique_ptr<Handshake>> handshakes_;
};

// Connects to a Listener (xproc's or CPython's). With an authkey, answers then delivers a
// challenge. ConnectionError when nobody listens; AuthenticationError on a key mismatch.
ByteConnection Client(const std::string& address, std::optional<std::string> authkey = std::nullopt,
                      ConnectionOptions options = {});

}  // namespace xproc
