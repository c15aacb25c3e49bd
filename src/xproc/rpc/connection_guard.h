// The limits of one client connection of a Manager server, enforced on its message stream:
// whatever a client sends, it can make the server hold only so much for it.
//
// Before the login a connection may send only small messages and a few calls, and must log
// in within a deadline; after it, the limits are the server's configured ones. A client over
// a limit is disconnected: its pending reads fail with an exception that says which limit,
// which the RPC system sends to the client (an Abort) before it closes the connection.
// Nobody else notices.
//
// Calls are counted as the RPC protocol counts them: a Call or Bootstrap message opens a
// question, its Finish closes it, and until then the server keeps its answer. Replies are
// counted in the bytes the connection has queued for the client but not yet written.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

#include <capnp/serialize-async.h>
#include <kj/async.h>

#include "xproc/manager_server.h"

namespace xproc::rpc {

// What a connection may do before it logs in.
inline constexpr size_t kLoginMessageBytes = 4096;  // a login is a few hundred bytes
inline constexpr size_t kLoginCalls = 4;            // bootstrap, challenge, login, and one spare

class ConnectionGuard final : public capnp::MessageStream {
 public:
  ConnectionGuard(kj::Own<capnp::MessageStream> inner, const ConnectionLimits& limits);

  // The RPC network over this stream: how many bytes it has queued for the client.
  void watch_queue(std::function<size_t()> queued_bytes) { queued_bytes_ = std::move(queued_bytes); }

  // The client proved its key: the configured limits apply from now on.
  void logged_in() noexcept { logged_in_ = true; }
  // The client failed its login: any further call ends the connection (one guess per
  // connection). The reply to the failed login is not cut off: the client reads it first.
  void refuse_calls(kj::Exception why) { refused_ = kj::mv(why); }
  bool is_logged_in() const noexcept { return logged_in_; }
  // Disconnects the client: its next read (or the one pending) fails with `why`.
  void disconnect(kj::Exception why);
  // When the client last sent a message (or connected).
  std::chrono::steady_clock::time_point last_activity() const noexcept { return last_activity_; }
  // Why the server cut the client off, when it did (for the log).
  kj::Maybe<const kj::Exception&> reason() const noexcept { return disconnected_; }

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(kj::ArrayPtr<kj::AutoCloseFd> fds,
                                                                    capnp::ReaderOptions options,
                                                                    kj::ArrayPtr<capnp::word> scratch) override;
  kj::Promise<void> writeMessage(kj::ArrayPtr<const int> fds,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override;
  kj::Promise<void> writeMessages(kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override;
  kj::Maybe<int> getSendBufferSize() override { return inner_->getSendBufferSize(); }
  kj::Promise<void> end() override { return inner_->end(); }

 private:
  // Counts the message's questions; throws (and remembers why) when a limit is over.
  void check(capnp::MessageReader& message);
  [[noreturn]] void cut_off(kj::Exception why);
  size_t message_limit() const noexcept { return logged_in_ ? limits_.max_message_bytes : kLoginMessageBytes; }
  size_t call_limit() const noexcept { return logged_in_ ? limits_.max_outstanding_calls : kLoginCalls; }

  kj::Own<capnp::MessageStream> inner_;
  ConnectionLimits limits_;
  std::function<size_t()> queued_bytes_;
  bool logged_in_ = false;
  kj::Maybe<kj::Exception> refused_;
  size_t open_questions_ = 0;
  std::chrono::steady_clock::time_point last_activity_;
  kj::Maybe<kj::Exception> disconnected_;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> pending_read_;  // rejected by disconnect()
};

}  // namespace xproc::rpc
