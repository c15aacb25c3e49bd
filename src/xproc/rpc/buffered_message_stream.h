// What the Manager's two message streams share (socket_message_stream.h, lane_stream.h):
// the standard framing over a byte transport, read through one buffer and written in one
// batch per turn of the event loop.
//
// - Reads whatever the transport holds into a 64 KiB buffer and hands out each message
//   whose bytes are all in as an already-fulfilled promise (capnp's own reader takes three
//   chained reads and a promise node for each). A larger message is read straight into
//   words of its own.
// - Gathers the messages written during one turn of the event loop and writes them at its
//   end; a writer that has gathered more than 4 MiB the peer has not taken waits for it.
//
// A transport supplies the byte moves and the waits.
#pragma once

#include <vector>

#include <capnp/serialize-async.h>
#include <kj/async.h>

namespace xproc::rpc {

// What a server checks of every message a client sends (connection_guard.h). The stream
// consults it as each message completes, so the check costs no promise of its own.
class MessageGuard {
 public:
  // The largest message the client may send now.
  virtual uint64_t message_limit_words() const noexcept = 0;
  // Counts a whole message; throws (a kj::Exception) to end the connection.
  virtual void check(capnp::MessageReader& message) = 0;
  // The stream refused a message before reading it (over the size limit): why, for the log.
  virtual void refused(const kj::Exception& why) noexcept = 0;

 protected:
  ~MessageGuard() = default;
};

class BufferedMessageStream : public capnp::MessageStream {
 public:
  // With a guard (a server's connection), every message read is checked by it.
  explicit BufferedMessageStream(MessageGuard* guard = nullptr);

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(kj::ArrayPtr<kj::AutoCloseFd>,
                                                                    capnp::ReaderOptions options,
                                                                    kj::ArrayPtr<capnp::word>) override;
  kj::Promise<void> writeMessage(kj::ArrayPtr<const int>,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override;
  kj::Promise<void> writeMessages(kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override;
  kj::Promise<void> end() override;

 protected:
  // One read of at most `size` bytes without waiting. Throws a kj::Exception when the
  // transport failed.
  struct Read {
    enum Kind { kBytes, kNone, kEnd } kind;
    size_t bytes = 0;
  };
  virtual Read read_some(kj::byte* out, size_t size) = 0;
  // Resolves when read_some may have bytes again.
  virtual kj::Promise<void> readable() = 0;
  // Writes what fits without waiting: how many bytes (0 when there is no room). Throws a
  // kj::Exception when the transport failed.
  virtual size_t write_some(const kj::byte* data, size_t size) = 0;
  // Resolves when write_some may have room again.
  virtual kj::Promise<void> writable() = 0;
  // After end(): no more bytes will come from this side.
  virtual void shutdown_write() = 0;

  // Fails every write from now on, and the writers waiting.
  void fail(kj::Exception&& error);
  bool failed() const noexcept { return failure_ != nullptr; }
  // Flushes still pending hold `this`: a transport cancels them first when it goes.
  void cancel_flushes() noexcept;

 private:
  kj::byte* buffer_bytes() { return reinterpret_cast<kj::byte*>(buffer_.begin()); }
  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> take_message(size_t size, capnp::ReaderOptions options);
  // The message in `words`, checked by the guard.
  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> deliver(kj::Array<capnp::word> words,
                                                             capnp::ReaderOptions options);
  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> read_rest(kj::Array<capnp::word> words, size_t have,
                                                               capnp::ReaderOptions options);
  kj::Promise<void> after_append();
  kj::Promise<void> flush();
  kj::Promise<void> drained(size_t limit);
  void wake_drained_waiters();

  class IgnoreErrors final : public kj::TaskSet::ErrorHandler {
   public:
    void taskFailed(kj::Exception&&) override {}  // recorded in failure_ by the flush itself
  };
  struct DrainedWaiter {
    size_t limit;
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };

  MessageGuard* guard_;
  kj::Array<capnp::word> buffer_;  // bytes read, messages not yet handed out
  size_t begin_ = 0;               // in bytes
  size_t end_ = 0;

  std::vector<kj::byte> gathered_;  // messages written, not yet all taken by the transport
  size_t sent_ = 0;                 // how much of gathered_ the transport took
  bool flush_scheduled_ = false;
  bool waiting_for_room_ = false;
  kj::Maybe<kj::Exception> failure_;
  std::vector<DrainedWaiter> drained_waiters_;
  IgnoreErrors ignore_errors_;
  kj::Own<kj::TaskSet> flushes_;
};

}  // namespace xproc::rpc
