// The limits of one client connection of a Manager server, checked on every message the
// client sends: whatever a client sends, it can make the server hold only so much for it.
//
// Before the login a connection may send only small messages and a few calls; after it,
// the limits are the server's configured ones. A client over a limit is disconnected: the
// read of its message fails with an exception that says which limit, which the RPC system
// sends to the client (an Abort) before it closes the connection. Nobody else notices.
//
// Calls are counted as the RPC protocol counts them: a Call or Bootstrap message opens a
// question, its Finish closes it, and until then the server keeps its answer. Replies are
// counted in the bytes the connection has queued for the client but not yet written.
//
// The server's own streams (socket, lane) consult the guard as each message completes
// (buffered_message_stream.h); guarded_stream() puts it on any other (TLS).
#pragma once

#include <cstddef>
#include <functional>

#include <capnp/serialize-async.h>
#include <kj/timer.h>

#include "xproc/manager_server.h"
#include "xproc/rpc/buffered_message_stream.h"

namespace xproc::rpc {

// What a connection may do before it logs in.
inline constexpr size_t kLoginMessageBytes = 4096;  // a login is a few hundred bytes
inline constexpr size_t kLoginCalls = 4;            // bootstrap, challenge, login, and one spare

class ConnectionGuard final : public MessageGuard {
 public:
  // `clock` tells the time of activity: the server loop's timer (its now() costs nothing).
  ConnectionGuard(const ConnectionLimits& limits, const kj::Timer& clock);

  // The RPC network over the connection: how many bytes it has queued for the client.
  void watch_queue(std::function<size_t()> queued_bytes) { queued_bytes_ = std::move(queued_bytes); }

  // The client proved its key: the configured limits apply from now on.
  void logged_in() noexcept { logged_in_ = true; }
  bool is_logged_in() const noexcept { return logged_in_; }
  // The client failed its login: any further call ends the connection (one guess per
  // connection). The reply to the failed login is not cut off: the client reads it first.
  void refuse_calls(kj::Exception why) { refused_ = kj::mv(why); }
  // When the client last sent a message (or connected).
  kj::TimePoint last_activity() const noexcept { return last_activity_; }
  // Why the guard cut the client off, when it did (for the log).
  kj::Maybe<const kj::Exception&> reason() const noexcept { return cut_off_; }

  uint64_t message_limit_words() const noexcept override {
    return (logged_in_ ? limits_.max_message_bytes : kLoginMessageBytes) / sizeof(capnp::word);
  }
  // Counts the message's questions; throws (and remembers why) when a limit is over.
  void check(capnp::MessageReader& message) override;
  void refused(const kj::Exception& why) noexcept override;

 private:
  size_t call_limit() const noexcept { return logged_in_ ? limits_.max_outstanding_calls : kLoginCalls; }
  [[noreturn]] void cut_off(kj::Exception why);

  ConnectionLimits limits_;
  const kj::Timer& clock_;
  std::function<size_t()> queued_bytes_;
  bool logged_in_ = false;
  kj::Maybe<kj::Exception> refused_;
  size_t open_questions_ = 0;
  kj::TimePoint last_activity_;
  kj::Maybe<kj::Exception> cut_off_;
};

// `inner`, with `guard` checking what it reads (for streams that do not consult a guard
// themselves). `guard` must outlive it.
kj::Own<capnp::MessageStream> guarded_stream(kj::Own<capnp::MessageStream> inner, ConnectionGuard& guard);

}  // namespace xproc::rpc
