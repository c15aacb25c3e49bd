// A synchronous Cap'n Proto RPC client on one socket, for the Manager's blocking proxies.
//
// A proxy call blocks its thread until the reply is in, so the promise machinery of kj's
// RpcSystem (question and answer tables, promise nodes, an event-loop turn per message,
// epoll) buys it nothing and costs several microseconds per call on the client side.
// This session speaks the same protocol (rpc.capnp, two-party, level 0) over a blocking
// socket: a call writes its Call message (after any Finish and Release messages owed),
// then reads messages until its Return is in. The server is unchanged and cannot tell the
// difference.
//
// What it supports is what the proxies use: Bootstrap; calls to capabilities the server
// returned (imports), with Return, Finish and Release; capabilities in results; pipelined
// calls on a result (answered from the reply, which is already in); Resolve (the new
// capability is released at once, calls keep going to the promise, which the server
// forwards). It exports nothing: a capability in call parameters is refused (publishing
// an object needs the event-loop connection, which can serve calls from the server).
//
// On a lane (lane.h) the bytes move through shared memory instead of the socket; waiting
// looks at the lane for up to the spin budget, then sleeps on the socket for a doorbell.
//
// Waiting polls the socket for up to the endpoint's spin budget, then sleeps in poll();
// with an interrupt check set (Ctrl-C in Python) it sleeps in slices and calls it between
// them; a call it interrupts is cancelled with a Finish sent at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <capnp/capability.h>
#include <capnp/message.h>
#include <capnp/rpc.capnp.h>

#include "xproc/fd.h"
#include "xproc/rpc/lane.h"

namespace xproc::rpc {

class DirectSession : public std::enable_shared_from_this<DirectSession> {
 public:
  // Takes ownership of `fd`, a connected stream socket.
  DirectSession(Fd fd, capnp::ReaderOptions options, std::chrono::microseconds spin);
  DirectSession(int fd, capnp::ReaderOptions options, std::chrono::microseconds spin)
      : DirectSession(Fd(fd), options, spin) {}
  ~DirectSession();
  DirectSession(const DirectSession&) = delete;
  DirectSession& operator=(const DirectSession&) = delete;

  // From now on the RPC stream runs through `lane` (the socket carries doorbells only).
  // Before bootstrap().
  void use_lane(Lane lane) { lane_.emplace(std::move(lane)); }

  // The server's bootstrap capability (a round trip).
  capnp::Capability::Client bootstrap();

  // Closes the socket; later calls fail as disconnected. Capabilities still held stay
  // valid objects that fail the same way.
  void close() noexcept;

  // ---- for the capability hooks (direct_session.cpp) ----
  // A fresh Call message on import `target`; `message` receives it.
  capnp::rpc::Call::Builder start_call(capnp::MessageBuilder& message, uint32_t target, uint64_t interface_id,
                                       uint16_t method_id);
  // Sends the call and returns its results; throws the remote exception.
  capnp::Response<capnp::AnyPointer> finish_call(capnp::MessageBuilder& message, capnp::rpc::Call::Builder call);
  // The last local reference to import `id` is gone: owe the server a Release.
  void drop_import(uint32_t id) noexcept;

  class Incoming;  // a message read from the server (the owner of a Response)

 private:
  struct Import {
    uint32_t remote_refs = 0;           // times the server sent it: what Release gives back
    capnp::ClientHook* hook = nullptr;  // the live local hook, if any (not owned)
  };

  uint32_t next_question();
  void queue(capnp::MessageBuilder& message);
  void flush();
  // After a send failed because the manager closed the connection: throws the Abort it sent
  // before closing, if one came; returns otherwise.
  void fail_with_abort_if_sent();
  // Reads messages until the Return for `question` arrives; returns it.
  kj::Own<Incoming> await_return(uint32_t question);
  kj::Own<Incoming> read_message();
  // The size of the next frame once its segment table is buffered (checked against the
  // limits); nothing before.
  std::optional<size_t> buffered_frame_bytes();
  // Reads at least one byte into `out`, waiting for the socket if need be.
  enum class Expect { kNewMessage, kRestOfFrame };
  size_t receive(kj::byte* out, size_t size, Expect expect);
  void sleep_until_readable();
  size_t receive_from_lane(kj::byte* out, size_t size);
  void flush_to_lane();
  // Sleeps until a doorbell (or the hang-up) after the lane said to; false on the hang-up.
  bool sleep_on_doorbell();
  capnp::Response<capnp::AnyPointer> take_results(kj::Own<Incoming> incoming, uint32_t question);
  kj::Array<kj::Maybe<kj::Own<capnp::ClientHook>>> import_caps(capnp::List<capnp::rpc::CapDescriptor>::Reader table);
  kj::Own<capnp::ClientHook> import_cap(uint32_t id);
  void handle_unsolicited(Incoming& incoming);
  [[noreturn]] void fail(kj::Exception::Type type, kj::StringPtr why);

  Fd fd_;
  std::optional<Lane> lane_;  // the shared-memory lane, when the server granted one
  capnp::ReaderOptions options_;
  std::chrono::microseconds spin_;
  bool broken_ = false;

  std::vector<kj::byte> outgoing_;   // Finish/Release owed, then the next call
  std::vector<capnp::word> buffer_;  // bytes read from the socket, frames not yet taken (64 KiB)
  size_t begin_ = 0;                 // in bytes
  size_t end_ = 0;

  uint32_t question_count_ = 0;
  std::vector<uint32_t> free_questions_;
  std::unordered_set<uint32_t> abandoned_;  // questions cancelled before their Return
  std::unordered_map<uint32_t, Import> imports_;
};

}  // namespace xproc::rpc
