// See buffered_message_stream.h.
#include "xproc/rpc/buffered_message_stream.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include <kj/debug.h>

#include "xproc/rpc/framing.h"

namespace xproc::rpc {
namespace {

constexpr size_t kReadBufferBytes = 64 * 1024;
// Gathered bytes past which a writer waits for the transport to take them (a peer that
// does not read must not make the sender buffer without bound).
constexpr size_t kBacklogBytes = 4 * 1024 * 1024;

kj::Exception ended_mid_message() {
  return KJ_EXCEPTION(DISCONNECTED, "the peer closed the connection in the middle of a message");
}

}  // namespace

BufferedMessageStream::BufferedMessageStream(MessageGuard* guard)
    : guard_(guard),
      buffer_(kj::heapArray<capnp::word>(kReadBufferBytes / sizeof(capnp::word))),
      flushes_(kj::heap<kj::TaskSet>(ignore_errors_)) {}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> BufferedMessageStream::tryReadMessage(kj::ArrayPtr<kj::AutoCloseFd>,
                                                                                         capnp::ReaderOptions options,
                                                                                         kj::ArrayPtr<capnp::word>) {
  // A message over the guard's limit is refused as soon as its size is known.
  if (guard_ != nullptr)
    options.traversalLimitInWords = std::min(options.traversalLimitInWords, guard_->message_limit_words());
  auto* bytes = buffer_bytes();
  const size_t capacity = buffer_.size() * sizeof(capnp::word);
  for (;;) {
    std::optional<size_t> size;
    Read read{Read::kNone};
    KJ_IF_MAYBE (error, kj::runCatchingExceptions([&] {
                   size = framed_message_bytes(bytes + begin_, end_ - begin_, options.traversalLimitInWords);
                   if (size) return;
                   if (begin_ > 0) {  // room at the end; messages are whole words, so this stays aligned
                     std::memmove(bytes, bytes + begin_, end_ - begin_);
                     end_ -= begin_;
                     begin_ = 0;
                   }
                   read = read_some(bytes + end_, capacity - end_);
                 })) {
      if (guard_ != nullptr) guard_->refused(*error);
      return kj::mv(*error);
    }
    if (size) return take_message(*size, options);
    switch (read.kind) {
      case Read::kBytes: end_ += read.bytes; break;
      case Read::kEnd:
        if (end_ == begin_) return kj::Maybe<capnp::MessageReaderAndFds>(nullptr);  // a clean end
        return ended_mid_message();
      case Read::kNone: return readable().then([this, options] { return tryReadMessage(nullptr, options, nullptr); });
    }
  }
}

// The message of `size` bytes at the front of the buffer, or (when the buffer holds only
// its start) its start, with the rest read straight into its own words.
kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> BufferedMessageStream::take_message(size_t size,
                                                                                       capnp::ReaderOptions options) {
  auto words = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
  const size_t have = std::min(size, end_ - begin_);
  std::memcpy(words.begin(), buffer_bytes() + begin_, have);
  begin_ += have;
  if (begin_ == end_) begin_ = end_ = 0;
  if (have == size) return deliver(kj::mv(words), options);
  return read_rest(kj::mv(words), have, options);
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> BufferedMessageStream::deliver(kj::Array<capnp::word> words,
                                                                                  capnp::ReaderOptions options) {
  auto message = reader_owning(kj::mv(words), options);
  KJ_IF_MAYBE (delivered, message) {
    if (guard_ != nullptr) {
      KJ_IF_MAYBE (error, kj::runCatchingExceptions([&] { guard_->check(*delivered->reader); })) {
        return kj::mv(*error);
      }
    }
  }
  return kj::mv(message);
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> BufferedMessageStream::read_rest(kj::Array<capnp::word> words,
                                                                                    size_t have,
                                                                                    capnp::ReaderOptions options) {
  auto* out = reinterpret_cast<kj::byte*>(words.begin());
  const size_t size = words.size() * sizeof(capnp::word);
  while (have < size) {
    Read read{Read::kNone};
    KJ_IF_MAYBE (error, kj::runCatchingExceptions([&] { read = read_some(out + have, size - have); })) {
      return kj::mv(*error);
    }
    switch (read.kind) {
      case Read::kBytes: have += read.bytes; break;
      case Read::kEnd: return ended_mid_message();
      case Read::kNone:
        return readable().then(
            [this, words = kj::mv(words), have, options]() mutable { return read_rest(kj::mv(words), have, options); });
    }
  }
  return deliver(kj::mv(words), options);
}

kj::Promise<void> BufferedMessageStream::writeMessage(kj::ArrayPtr<const int>,
                                                      kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  KJ_IF_MAYBE (failure, failure_) {
    return kj::cp(*failure);
  }
  append_framed(gathered_, segments);
  return after_append();
}

kj::Promise<void> BufferedMessageStream::writeMessages(
    kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) {
  KJ_IF_MAYBE (failure, failure_) {
    return kj::cp(*failure);
  }
  for (auto segments : messages) append_framed(gathered_, segments);
  return after_append();
}

kj::Promise<void> BufferedMessageStream::end() {
  return drained(0).then([this] { shutdown_write(); });
}

// Writes what was gathered at the end of this turn of the event loop (or when the
// transport has room again); a writer that has gathered too much waits.
kj::Promise<void> BufferedMessageStream::after_append() {
  if (!flush_scheduled_ && !waiting_for_room_) {
    flush_scheduled_ = true;
    flushes_->add(kj::evalLast([this] {
      flush_scheduled_ = false;
      return flush();
    }));
  }
  if (gathered_.size() - sent_ > kBacklogBytes) return drained(kBacklogBytes);
  return kj::READY_NOW;
}

kj::Promise<void> BufferedMessageStream::flush() {
  if (failed()) return kj::READY_NOW;
  KJ_IF_MAYBE (error, kj::runCatchingExceptions([&] {
                 while (sent_ < gathered_.size()) {
                   const size_t n = write_some(gathered_.data() + sent_, gathered_.size() - sent_);
                   if (n == 0) break;
                   sent_ += n;
                 }
               })) {
    fail(kj::mv(*error));
    return kj::READY_NOW;
  }
  wake_drained_waiters();
  if (sent_ < gathered_.size()) {
    waiting_for_room_ = true;
    return writable().then([this] {
      waiting_for_room_ = false;
      return flush();
    });
  }
  gathered_.clear();
  sent_ = 0;
  return kj::READY_NOW;
}

// Resolves once no more than `limit` gathered bytes wait for the transport.
kj::Promise<void> BufferedMessageStream::drained(size_t limit) {
  KJ_IF_MAYBE (failure, failure_) {
    return kj::cp(*failure);
  }
  if (gathered_.size() - sent_ <= limit) return kj::READY_NOW;
  auto waiter = kj::newPromiseAndFulfiller<void>();
  drained_waiters_.push_back({limit, kj::mv(waiter.fulfiller)});
  return kj::mv(waiter.promise);
}

void BufferedMessageStream::wake_drained_waiters() {
  const size_t pending = gathered_.size() - sent_;
  for (auto it = drained_waiters_.begin(); it != drained_waiters_.end();) {
    if (pending <= it->limit) {
      it->fulfiller->fulfill();
      it = drained_waiters_.erase(it);
    } else {
      ++it;
    }
  }
}

void BufferedMessageStream::fail(kj::Exception&& error) {
  if (failure_ == nullptr) failure_ = kj::cp(error);
  for (auto& waiter : drained_waiters_) waiter.fulfiller->reject(kj::cp(error));
  drained_waiters_.clear();
}

void BufferedMessageStream::cancel_flushes() noexcept { flushes_ = nullptr; }

}  // namespace xproc::rpc
