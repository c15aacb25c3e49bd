// See connection_guard.h.
#include "xproc/rpc/connection_guard.h"

#include <algorithm>

#include <capnp/rpc.capnp.h>
#include <kj/debug.h>

namespace xproc::rpc {

ConnectionGuard::ConnectionGuard(kj::Own<capnp::MessageStream> inner, const ConnectionLimits& limits)
    : inner_(kj::mv(inner)), limits_(limits), last_activity_(std::chrono::steady_clock::now()) {}

void ConnectionGuard::disconnect(kj::Exception why) {
  if (disconnected_ == nullptr) disconnected_ = kj::cp(why);
  KJ_IF_MAYBE(reader, pending_read_) {
    auto fulfiller = kj::mv(*reader);
    pending_read_ = nullptr;
    fulfiller->reject(kj::mv(why));
  }
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> ConnectionGuard::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd> fds, capnp::ReaderOptions options, kj::ArrayPtr<capnp::word> scratch) {
  KJ_IF_MAYBE(why, disconnected_) { return kj::cp(*why); }
  // The stream refuses a message over the limit as soon as its size is known, before its
  // bytes are read or room is made for them.
  options.traversalLimitInWords = std::min<uint64_t>(options.traversalLimitInWords, message_limit() / sizeof(capnp::word));
  auto cut = kj::newPromiseAndFulfiller<void>();
  pending_read_ = kj::mv(cut.fulfiller);
  auto read = inner_->tryReadMessage(fds, options, scratch);
  auto cut_off = cut.promise.then([]() -> kj::Maybe<capnp::MessageReaderAndFds> {
    KJ_FAIL_REQUIRE("a connection's read is only ever cut off with an error");
  });
  return read.exclusiveJoin(kj::mv(cut_off))
      .then(
          [this](kj::Maybe<capnp::MessageReaderAndFds>&& message) {
            pending_read_ = nullptr;
            KJ_IF_MAYBE(m, message) { check(*m->reader); }
            return kj::mv(message);
          },
          [this](kj::Exception&& error) -> kj::Maybe<capnp::MessageReaderAndFds> {
            // A message over the size limit is refused by the stream below: remember why.
            pending_read_ = nullptr;
            if (disconnected_ == nullptr) disconnected_ = kj::cp(error);
            kj::throwFatalException(kj::mv(error));
          });
}

void ConnectionGuard::check(capnp::MessageReader& message) {
  last_activity_ = std::chrono::steady_clock::now();
  switch (message.getRoot<capnp::rpc::Message>().which()) {
    case capnp::rpc::Message::CALL:
    case capnp::rpc::Message::BOOTSTRAP:
      KJ_IF_MAYBE(refused, refused_) { cut_off(kj::cp(*refused)); }
      ++open_questions_;
      break;
    case capnp::rpc::Message::FINISH:
      if (open_questions_ > 0) --open_questions_;
      break;
    default:
      break;
  }
  if (open_questions_ > call_limit()) {
    cut_off(KJ_EXCEPTION(DISCONNECTED, logged_in_ ? "the client has too many calls open at once"
                                                  : "the client called more than a login needs",
                         open_questions_, call_limit()));
  }
  if (queued_bytes_) {
    const size_t queued = queued_bytes_();
    if (queued > limits_.max_queued_reply_bytes) {
      cut_off(KJ_EXCEPTION(DISCONNECTED, "the client does not read its replies", queued,
                           limits_.max_queued_reply_bytes));
    }
  }
}

void ConnectionGuard::cut_off(kj::Exception why) {
  disconnected_ = kj::cp(why);
  kj::throwFatalException(kj::mv(why));
}

kj::Promise<void> ConnectionGuard::writeMessage(kj::ArrayPtr<const int> fds,
                                                kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  return inner_->writeMessage(fds, segments);
}

kj::Promise<void> ConnectionGuard::writeMessages(
    kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) {
  return inner_->writeMessages(messages);
}

}  // namespace xproc::rpc
