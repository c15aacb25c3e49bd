// See buffered_stream.h.
#include "xproc/rpc/buffered_stream.h"

#include <algorithm>
#include <cstring>

namespace xproc::rpc {

namespace {
constexpr size_t kBufferBytes = 64 * 1024;
constexpr size_t kGatherLimit = 64 * 1024;  // larger writes go out directly
}  // namespace

BufferedStream::BufferedStream(kj::Own<kj::AsyncIoStream> inner)
    : inner_(kj::mv(inner)),
      buffer_(kj::heapArray<kj::byte>(kBufferBytes)),
      last_write_(kj::Promise<void>(kj::READY_NOW).fork()) {}

size_t BufferedStream::take(kj::byte* out, size_t max_bytes) {
  size_t n = std::min(max_bytes, end_ - begin_);
  if (n == 0) return 0;  // `out` may be null for an empty read
  std::memcpy(out, buffer_.begin() + begin_, n);
  begin_ += n;
  if (begin_ == end_) begin_ = end_ = 0;
  return n;
}

kj::Promise<size_t> BufferedStream::tryRead(void* buffer, size_t min_bytes, size_t max_bytes) {
  auto* out = static_cast<kj::byte*>(buffer);
  size_t got = take(out, max_bytes);
  if (got >= min_bytes) return got;
  return read_more(out, min_bytes, max_bytes, got);
}

kj::Promise<size_t> BufferedStream::read_more(kj::byte* out, size_t min_bytes, size_t max_bytes, size_t already) {
  size_t wanted = max_bytes - already;
  if (wanted >= buffer_.size()) {
    // A large read goes straight to the caller's memory.
    return inner_->tryRead(out + already, min_bytes - already, wanted).then([already](size_t n) { return already + n; });
  }
  return inner_->tryRead(buffer_.begin(), 1, buffer_.size())
      .then([this, out, min_bytes, max_bytes, already](size_t n) -> kj::Promise<size_t> {
        if (n == 0) return already;  // end of stream
        end_ = n;
        size_t got = already + take(out + already, max_bytes - already);
        if (got >= min_bytes) return got;
        return read_more(out, min_bytes, max_bytes, got);
      });
}

kj::Promise<void> BufferedStream::write(const void* buffer, size_t size) {
  kj::ArrayPtr<const kj::byte> piece(static_cast<const kj::byte*>(buffer), size);
  return write(kj::arrayPtr(&piece, 1));
}

kj::Promise<void> BufferedStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  size_t size = 0;
  for (auto piece : pieces) size += piece.size();
  if (size > kGatherLimit) {
    // Large: after what is gathered, straight from the caller's memory (which the caller
    // keeps until the returned promise resolves).
    flush();
    last_write_ = last_write_.addBranch().then([this, pieces] { return inner_->write(pieces); }).fork();
    return last_write_.addBranch();
  }
  for (auto piece : pieces) gathered_.addAll(piece);
  if (gathered_.size() > 4 * kGatherLimit) {
    // The peer is not reading fast enough: make the writer wait for the socket.
    return flush();
  }
  if (!flush_scheduled_) {
    flush_scheduled_ = true;
    // Once the event queue is empty: everything written meanwhile goes in one write().
    scheduled_flush_ = kj::evalLast([this] {
                         flush_scheduled_ = false;
                         flush();
                       }).eagerlyEvaluate(nullptr);
  }
  return kj::READY_NOW;
}

kj::Promise<void> BufferedStream::flush() {
  if (!gathered_.empty()) {
    auto bytes = gathered_.releaseAsArray();
    last_write_ = last_write_.addBranch()
                      .then([this, bytes = kj::mv(bytes)]() mutable {
                        auto promise = inner_->write(bytes.begin(), bytes.size());
                        return promise.attach(kj::mv(bytes));
                      })
                      .fork();
  }
  return last_write_.addBranch();
}

}  // namespace xproc::rpc
