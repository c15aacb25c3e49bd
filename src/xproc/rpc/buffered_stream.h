// A buffering wrapper for the Manager's sockets.
//
// Cap'n Proto's two-party transport reads each message with two exact reads (segment
// table, then segments) and writes each message with its own writev(). With many small
// calls in flight those syscalls are most of the time on both sides. This stream reads
// whatever the socket has (up to 64 KiB) and serves the exact reads from it, and gathers
// the small writes made during one turn of the event loop into one writev() at its end.
// Order is kept; a large write flushes what is gathered and goes out directly.
#pragma once

#include <kj/async-io.h>
#include <kj/vector.h>

namespace xproc::rpc {

class BufferedStream final : public kj::AsyncIoStream {
 public:
  explicit BufferedStream(kj::Own<kj::AsyncIoStream> inner);

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override { inner_->shutdownWrite(); }
  void abortRead() override { inner_->abortRead(); }
  kj::Maybe<int> getFd() const override { return inner_->getFd(); }

 private:
  // Copies what the buffer holds into `out`, up to `max_bytes`; returns how much.
  size_t take(kj::byte* out, size_t max_bytes);
  kj::Promise<size_t> read_more(kj::byte* out, size_t min_bytes, size_t max_bytes, size_t already);
  // Writes out what is gathered; resolves when the socket took it.
  kj::Promise<void> flush();

  kj::Own<kj::AsyncIoStream> inner_;
  kj::Array<kj::byte> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;

  kj::Vector<kj::byte> gathered_;  // small writes not yet handed to the socket
  // The last write handed to the socket: each waits for the one before (a kj stream takes
  // one write at a time), and a failure fails the ones after it.
  kj::ForkedPromise<void> last_write_;
  kj::Promise<void> scheduled_flush_ = nullptr;  // the end-of-turn flush, once asked for
  bool flush_scheduled_ = false;
};

}  // namespace xproc::rpc
