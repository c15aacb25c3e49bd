// See connection_guard.h.
#include "xproc/rpc/connection_guard.h"

#include <capnp/rpc.capnp.h>
#include <kj/debug.h>

namespace xproc::rpc {

ConnectionGuard::ConnectionGuard(const ConnectionLimits& limits, const kj::Timer& clock)
    : limits_(limits), clock_(clock), last_activity_(clock.now()) {}

void ConnectionGuard::check(capnp::MessageReader& message) {
  last_activity_ = clock_.now();
  switch (message.getRoot<capnp::rpc::Message>().which()) {
    case capnp::rpc::Message::CALL:
    case capnp::rpc::Message::BOOTSTRAP:
      KJ_IF_MAYBE (refused, refused_) {
        cut_off(kj::cp(*refused));
      }
      ++open_questions_;
      break;
    case capnp::rpc::Message::FINISH:
      if (open_questions_ > 0) --open_questions_;
      break;
    default: break;
  }
  if (open_questions_ > call_limit()) {
    cut_off(KJ_EXCEPTION(
        DISCONNECTED,
        logged_in_ ? "the client has too many calls open at once" : "the client called more than a login needs",
        open_questions_, call_limit()));
  }
  if (queued_bytes_) {
    const size_t queued = queued_bytes_();
    if (queued > limits_.max_queued_reply_bytes) {
      cut_off(
          KJ_EXCEPTION(DISCONNECTED, "the client does not read its replies", queued, limits_.max_queued_reply_bytes));
    }
  }
}

void ConnectionGuard::refused(const kj::Exception& why) noexcept {
  if (cut_off_ == nullptr) cut_off_ = kj::cp(why);
}

void ConnectionGuard::cut_off(kj::Exception why) {
  cut_off_ = kj::cp(why);
  kj::throwFatalException(kj::mv(why));
}

namespace {

// A message stream whose reads `guard` checks.
class GuardedStream final : public capnp::MessageStream {
 public:
  GuardedStream(kj::Own<capnp::MessageStream> inner, ConnectionGuard& guard) : inner_(kj::mv(inner)), guard_(guard) {}

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(kj::ArrayPtr<kj::AutoCloseFd> fds,
                                                                    capnp::ReaderOptions options,
                                                                    kj::ArrayPtr<capnp::word> scratch) override {
    // The stream below refuses a message over the limit as soon as its size is known.
    options.traversalLimitInWords = std::min(options.traversalLimitInWords, guard_.message_limit_words());
    return inner_->tryReadMessage(fds, options, scratch)
        .then(
            [this](kj::Maybe<capnp::MessageReaderAndFds>&& message) {
              KJ_IF_MAYBE (m, message) {
                guard_.check(*m->reader);
              }
              return kj::mv(message);
            },
            [this](kj::Exception&& error) -> kj::Maybe<capnp::MessageReaderAndFds> {
              guard_.refused(error);
              kj::throwFatalException(kj::mv(error));
            });
  }
  kj::Promise<void> writeMessage(kj::ArrayPtr<const int> fds,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override {
    return inner_->writeMessage(fds, segments);
  }
  kj::Promise<void> writeMessages(kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override {
    return inner_->writeMessages(messages);
  }
  kj::Maybe<int> getSendBufferSize() override { return inner_->getSendBufferSize(); }
  kj::Promise<void> end() override { return inner_->end(); }

 private:
  kj::Own<capnp::MessageStream> inner_;
  ConnectionGuard& guard_;
};

}  // namespace

kj::Own<capnp::MessageStream> guarded_stream(kj::Own<capnp::MessageStream> inner, ConnectionGuard& guard) {
  return kj::heap<GuardedStream>(kj::mv(inner), guard);
}

}  // namespace xproc::rpc
