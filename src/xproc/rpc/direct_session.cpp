// See direct_session.h.
#include "xproc/rpc/direct_session.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include <capnp/serialize.h>

#include "xproc/doorbell_internal.h"
#include "xproc/rpc/framing.h"
#include "xproc/rpc/thread_loop.h"
#include "xproc/syscall_internal.h"

namespace xproc::rpc {
namespace {

namespace wire = capnp::rpc;

// Appends what capnp::writeMessage writes to a byte vector.
class ByteSink final : public kj::OutputStream {
 public:
  explicit ByteSink(std::vector<kj::byte>& out) : out_(out) {}
  void write(const void* buffer, size_t size) override {
    const auto* bytes = static_cast<const kj::byte*>(buffer);
    out_.insert(out_.end(), bytes, bytes + size);
  }

 private:
  std::vector<kj::byte>& out_;
};

kj::Exception::Type local_type(wire::Exception::Type type) {
  switch (type) {
    case wire::Exception::Type::OVERLOADED: return kj::Exception::Type::OVERLOADED;
    case wire::Exception::Type::DISCONNECTED: return kj::Exception::Type::DISCONNECTED;
    case wire::Exception::Type::UNIMPLEMENTED: return kj::Exception::Type::UNIMPLEMENTED;
    default: return kj::Exception::Type::FAILED;
  }
}

}  // namespace

// One message from the server, with the words it is read from. A Return's results stay
// readable through it for as long as a Response (or a pipeline) holds it.
class DirectSession::Incoming final : public capnp::ResponseHook, public kj::Refcounted {
 public:
  Incoming(kj::Array<capnp::word> words, capnp::ReaderOptions options)
      : words_(kj::mv(words)), reader_(words_, options) {}

  wire::Message::Reader root() { return reader_.getRoot<wire::Message>(); }

  // The results, with their capabilities resolved through `caps`.
  capnp::AnyPointer::Reader imbue(capnp::AnyPointer::Reader content,
                                  kj::Array<kj::Maybe<kj::Own<capnp::ClientHook>>> caps) {
    caps_ = kj::heap<capnp::ReaderCapabilityTable>(kj::mv(caps));
    return caps_->imbue(content);
  }

 private:
  kj::Array<capnp::word> words_;
  capnp::FlatArrayMessageReader reader_;
  kj::Own<capnp::ReaderCapabilityTable> caps_;
};

namespace {

// Pipelined calls on a result: the reply is already in, so they go to the capability it
// holds.
class ReplyPipeline final : public capnp::PipelineHook, public kj::Refcounted {
 public:
  ReplyPipeline(kj::Own<capnp::ResponseHook> owner, capnp::AnyPointer::Reader content)
      : owner_(kj::mv(owner)), content_(content) {}
  kj::Own<capnp::PipelineHook> addRef() override { return kj::addRef(*this); }
  kj::Own<capnp::ClientHook> getPipelinedCap(kj::ArrayPtr<const capnp::PipelineOp> ops) override {
    return content_.getPipelinedCap(ops);
  }

 private:
  kj::Own<capnp::ResponseHook> owner_;
  capnp::AnyPointer::Reader content_;
};

// A call being built: its Call message, sent by send().
class DirectRequest final : public capnp::RequestHook {
 public:
  DirectRequest(std::shared_ptr<DirectSession> session, uint32_t target, uint64_t interface_id, uint16_t method_id,
                kj::Maybe<capnp::MessageSize> size_hint)
      : session_(std::move(session)),
        message_(first_segment_words(size_hint)),
        call_(session_->start_call(message_, target, interface_id, method_id)) {}

  // The parameters, with a table that takes any capability put in them, so send() can
  // refuse it by name (without one, capnp would write a capability pointer that indexes
  // nothing, and the server would end the connection).
  capnp::AnyPointer::Builder content() { return exported_.imbue(call_.getParams().getContent()); }

  capnp::RemotePromise<capnp::AnyPointer> send() override {
    refuse_capabilities();
    auto response = session_->finish_call(message_, call_);
    capnp::AnyPointer::Reader content = response;
    auto owner = capnp::ResponseHook::from(kj::mv(response));
    auto pipeline = kj::refcounted<ReplyPipeline>(kj::addRef(static_cast<DirectSession::Incoming&>(*owner)), content);
    return capnp::RemotePromise<capnp::AnyPointer>(
        kj::Promise<capnp::Response<capnp::AnyPointer>>(capnp::Response<capnp::AnyPointer>(content, kj::mv(owner))),
        capnp::AnyPointer::Pipeline(kj::mv(pipeline)));
  }

  kj::Promise<void> sendStreaming() override {
    refuse_capabilities();
    session_->finish_call(message_, call_);
    return kj::READY_NOW;
  }

  const void* getBrand() override { return &kBrand; }

 private:
  static constexpr int kBrand = 0;
  void refuse_capabilities() {
    if (exported_.getTable().size() > 0) {
      kj::throwFatalException(KJ_EXCEPTION(UNIMPLEMENTED,
                                           "capabilities in parameters need the event-loop connection "
                                           "(Manager::publish, Proxy::client())"));
    }
  }

  static uint first_segment_words(kj::Maybe<capnp::MessageSize> hint) {
    KJ_IF_MAYBE (size, hint) {
      return static_cast<uint>(std::min<uint64_t>(size->wordCount + 32, 1u << 20));
    }
    return 256;
  }

  std::shared_ptr<DirectSession> session_;
  capnp::MallocMessageBuilder message_;
  wire::Call::Builder call_;
  capnp::BuilderCapabilityTable exported_;  // stays empty: this session exports nothing
};

// A capability the server exported to this session.
class ImportHook final : public capnp::ClientHook, public kj::Refcounted {
 public:
  ImportHook(std::shared_ptr<DirectSession> session, uint32_t id) : session_(std::move(session)), id_(id) {}
  ~ImportHook() noexcept(false) { session_->drop_import(id_); }

  capnp::Request<capnp::AnyPointer, capnp::AnyPointer> newCall(uint64_t interface_id, uint16_t method_id,
                                                               kj::Maybe<capnp::MessageSize> size_hint) override {
    auto request = kj::heap<DirectRequest>(session_, id_, interface_id, method_id, size_hint);
    auto content = request->content();
    return capnp::Request<capnp::AnyPointer, capnp::AnyPointer>(content, kj::mv(request));
  }

  VoidPromiseAndPipeline call(uint64_t, uint16_t, kj::Own<capnp::CallContextHook>&&) override {
    kj::throwFatalException(KJ_EXCEPTION(UNIMPLEMENTED, "forwarding a call through the synchronous Manager session"));
  }
  kj::Maybe<capnp::ClientHook&> getResolved() override { return nullptr; }
  kj::Maybe<kj::Promise<kj::Own<capnp::ClientHook>>> whenMoreResolved() override { return nullptr; }
  kj::Own<capnp::ClientHook> addRef() override { return kj::addRef(*this); }
  const void* getBrand() override { return &kBrand; }
  kj::Maybe<int> getFd() override { return nullptr; }

 private:
  static constexpr int kBrand = 0;
  std::shared_ptr<DirectSession> session_;
  uint32_t id_;
};

}  // namespace

DirectSession::DirectSession(Fd fd, capnp::ReaderOptions options, std::chrono::microseconds spin)
    : fd_(std::move(fd)), options_(options), spin_(spin), buffer_(8192) {}

DirectSession::~DirectSession() { close(); }

void DirectSession::close() noexcept { fd_.reset(); }

void DirectSession::fail(kj::Exception::Type type, kj::StringPtr why) {
  broken_ = true;
  kj::throwFatalException(kj::Exception(type, __FILE__, __LINE__, kj::heapString(why)));
}

uint32_t DirectSession::next_question() {
  if (!free_questions_.empty()) {
    uint32_t id = free_questions_.back();
    free_questions_.pop_back();
    return id;
  }
  return question_count_++;
}

void DirectSession::queue(capnp::MessageBuilder& message) {
  ByteSink sink(outgoing_);
  capnp::writeMessage(sink, message);
}

void DirectSession::flush() {
  if (lane_) return flush_to_lane();
  const int error = send_all(fd_.get(), std::as_bytes(std::span(outgoing_)));
  outgoing_.clear();
  if (error == EPIPE || error == ECONNRESET) fail_with_abort_if_sent();
  if (error) fail(kj::Exception::Type::DISCONNECTED, kj::str("sending to the manager: ", strerror(error)));
}

void DirectSession::fail_with_abort_if_sent() {
  // The manager refuses a message over its limits as soon as it has read the message's
  // head, and closes the connection while this side is still sending the rest. Its Abort
  // came before the close and the kernel keeps it: the peer is gone, so these reads end at
  // the close and never wait.
  kj::Own<Incoming> incoming;
  for (;;) {
    try {
      incoming = read_message();
    } catch (const kj::Exception&) {
      return;  // no Abort: the caller reports the failed send
    }
    if (incoming->root().isAbort()) break;
  }
  handle_unsolicited(*incoming);
}

capnp::Capability::Client DirectSession::bootstrap() {
  if (broken_ || !fd_) fail(kj::Exception::Type::DISCONNECTED, "the manager connection is closed");
  capnp::MallocMessageBuilder message(16);
  uint32_t question = next_question();
  message.initRoot<wire::Message>().initBootstrap().setQuestionId(question);
  queue(message);
  flush();
  auto response = take_results(await_return(question), question);
  return capnp::Capability::Client(response.getPipelinedCap(nullptr));
}

wire::Call::Builder DirectSession::start_call(capnp::MessageBuilder& message, uint32_t target, uint64_t interface_id,
                                              uint16_t method_id) {
  auto call = message.initRoot<wire::Message>().initCall();
  call.initTarget().setImportedCap(target);
  call.setInterfaceId(interface_id);
  call.setMethodId(method_id);
  call.initSendResultsTo().setCaller();
  call.initParams();
  return call;
}

capnp::Response<capnp::AnyPointer> DirectSession::finish_call(capnp::MessageBuilder& message,
                                                              wire::Call::Builder call) {
  if (broken_ || !fd_) fail(kj::Exception::Type::DISCONNECTED, "the manager connection is closed");
  const uint32_t question = next_question();
  call.setQuestionId(question);
  queue(message);
  flush();
  kj::Own<Incoming> reply;
  try {
    reply = await_return(question);
  } catch (...) {
    if (!broken_) {
      // Interrupted while waiting: cancel the call now (the server may be blocked in it,
      // taking a lock or a queue item for nobody) and ignore its Return when it comes.
      abandoned_.insert(question);
      capnp::MallocMessageBuilder finish(16);
      auto body = finish.initRoot<wire::Message>().initFinish();
      body.setQuestionId(question);
      body.setReleaseResultCaps(true);
      try {
        queue(finish);
        flush();
      } catch (...) {
      }
    }
    throw;
  }
  return take_results(kj::mv(reply), question);
}

capnp::Response<capnp::AnyPointer> DirectSession::take_results(kj::Own<Incoming> incoming, uint32_t question) {
  auto answer = incoming->root().getReturn();
  // The Return is in: the Finish the server waits for goes out with the next message,
  // and the question id is free again after it.
  capnp::MallocMessageBuilder finish(16);
  auto body = finish.initRoot<wire::Message>().initFinish();
  body.setQuestionId(question);
  body.setReleaseResultCaps(false);  // this side releases what it imports
  queue(finish);
  free_questions_.push_back(question);

  switch (answer.which()) {
    case wire::Return::RESULTS: {
      auto payload = answer.getResults();
      auto content = payload.getContent();
      // Most results carry no capability: no table to make for them.
      if (payload.getCapTable().size() > 0) content = incoming->imbue(content, import_caps(payload.getCapTable()));
      return capnp::Response<capnp::AnyPointer>(content, kj::mv(incoming));
    }
    case wire::Return::EXCEPTION: {
      auto error = answer.getException();
      kj::throwFatalException(kj::Exception(local_type(error.getType()), __FILE__, __LINE__,
                                            kj::str("remote exception: ", error.getReason())));
    }
    case wire::Return::CANCELED: kj::throwFatalException(KJ_EXCEPTION(FAILED, "the manager cancelled the call"));
    default: fail(kj::Exception::Type::DISCONNECTED, "the manager answered in a way this client does not support");
  }
}

kj::Array<kj::Maybe<kj::Own<capnp::ClientHook>>> DirectSession::import_caps(
    capnp::List<wire::CapDescriptor>::Reader table) {
  auto caps = kj::heapArrayBuilder<kj::Maybe<kj::Own<capnp::ClientHook>>>(table.size());
  for (auto descriptor : table) {
    switch (descriptor.which()) {
      case wire::CapDescriptor::NONE: caps.add(nullptr); break;
      case wire::CapDescriptor::SENDER_HOSTED: caps.add(import_cap(descriptor.getSenderHosted())); break;
      case wire::CapDescriptor::SENDER_PROMISE:
        // Calls to a promise are queued by the server and forwarded once it resolves.
        caps.add(import_cap(descriptor.getSenderPromise()));
        break;
      default: fail(kj::Exception::Type::DISCONNECTED, "the manager sent a capability this client never exported");
    }
  }
  return caps.finish();
}

kj::Own<capnp::ClientHook> DirectSession::import_cap(uint32_t id) {
  auto& entry = imports_[id];
  ++entry.remote_refs;
  if (entry.hook != nullptr) return entry.hook->addRef();
  auto hook = kj::refcounted<ImportHook>(shared_from_this(), id);
  entry.hook = hook.get();
  return hook;
}

void DirectSession::drop_import(uint32_t id) noexcept {
  auto it = imports_.find(id);
  if (it == imports_.end()) return;
  const uint32_t refs = it->second.remote_refs;
  imports_.erase(it);
  if (broken_ || !fd_) return;
  try {
    capnp::MallocMessageBuilder message(16);
    auto release = message.initRoot<wire::Message>().initRelease();
    release.setId(id);
    release.setReferenceCount(refs);
    queue(message);  // goes out with the next call
  } catch (...) {
    // Out of memory: the server frees the object when the connection closes instead.
  }
}

kj::Own<DirectSession::Incoming> DirectSession::await_return(uint32_t question) {
  for (;;) {
    auto incoming = read_message();
    auto root = incoming->root();
    if (root.isReturn() && root.getReturn().getAnswerId() == question) return incoming;
    handle_unsolicited(*incoming);
  }
}

void DirectSession::handle_unsolicited(Incoming& incoming) {
  auto root = incoming.root();
  switch (root.which()) {
    case wire::Message::RETURN: {
      // The answer to a call given up on: its Finish already went out.
      uint32_t answer = root.getReturn().getAnswerId();
      if (abandoned_.erase(answer) == 0) fail(kj::Exception::Type::DISCONNECTED, "a reply to no question");
      free_questions_.push_back(answer);
      break;
    }
    case wire::Message::RESOLVE: {
      // A promise this session imported resolved. Calls keep going to the promise (the
      // server forwards them), so the new reference is given back at once.
      auto resolve = root.getResolve();
      if (resolve.isCap()) {
        auto cap = resolve.getCap();
        uint32_t id = cap.isSenderHosted() ? cap.getSenderHosted() : cap.isSenderPromise() ? cap.getSenderPromise() : 0;
        if (cap.isSenderHosted() || cap.isSenderPromise()) {
          capnp::MallocMessageBuilder message(16);
          auto release = message.initRoot<wire::Message>().initRelease();
          release.setId(id);
          release.setReferenceCount(1);
          queue(message);
        }
      }
      break;
    }
    case wire::Message::ABORT: {
      const kj::StringPtr reason = root.getAbort().getReason();
      // A refused login ends the connection with the error itself, which stays that error.
      if (reason.startsWith("AuthenticationError: ")) fail(kj::Exception::Type::FAILED, reason);
      fail(kj::Exception::Type::DISCONNECTED, kj::str("the manager ended the connection: ", reason));
    }
    case wire::Message::UNIMPLEMENTED:
      fail(kj::Exception::Type::DISCONNECTED, "the manager did not understand a message");
    case wire::Message::RELEASE:
    case wire::Message::FINISH:
    case wire::Message::DISEMBARGO: break;  // about exports and answers this session never has
    default: {
      // Calls and bootstraps to this side: it serves nothing.
      capnp::MallocMessageBuilder message;
      message.initRoot<wire::Message>().setUnimplemented(root);
      queue(message);
      break;
    }
  }
}

std::optional<size_t> DirectSession::buffered_frame_bytes() {
  try {
    return framed_message_bytes(reinterpret_cast<const kj::byte*>(buffer_.data()) + begin_, end_ - begin_,
                                options_.traversalLimitInWords);
  } catch (const kj::Exception&) {
    broken_ = true;
    throw;
  }
}

kj::Own<DirectSession::Incoming> DirectSession::read_message() {
  if (broken_ || !fd_) fail(kj::Exception::Type::DISCONNECTED, "the manager connection is closed");
  auto* bytes = reinterpret_cast<kj::byte*>(buffer_.data());
  const size_t capacity = buffer_.size() * sizeof(capnp::word);
  std::optional<size_t> frame_bytes;
  while (!(frame_bytes = buffered_frame_bytes())) {
    if (begin_ > 0) {  // make room at the end; frames are whole words, so this stays aligned
      std::memmove(bytes, bytes + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    end_ += receive(bytes + end_, capacity - end_, end_ == begin_ ? Expect::kNewMessage : Expect::kRestOfFrame);
  }
  // The frame gets words of its own (a Response may keep them); what the buffer does not
  // hold yet of a large one is read straight into them.
  auto frame = kj::heapArray<capnp::word>(*frame_bytes / sizeof(capnp::word));
  auto* out = reinterpret_cast<kj::byte*>(frame.begin());
  size_t have = std::min(*frame_bytes, end_ - begin_);
  std::memcpy(out, bytes + begin_, have);
  begin_ += have;
  if (begin_ == end_) begin_ = end_ = 0;
  while (have < *frame_bytes) have += receive(out + have, *frame_bytes - have, Expect::kRestOfFrame);

  auto incoming = kj::refcounted<Incoming>(kj::mv(frame), options_);
  try {
    (void)incoming->root().which();  // the root must at least be a message
  } catch (const kj::Exception& e) {
    fail(kj::Exception::Type::DISCONNECTED, kj::str("a malformed message from the manager: ", e.getDescription()));
  }
  return incoming;
}

size_t DirectSession::receive(kj::byte* out, size_t size, Expect expect) {
  if (lane_) return receive_from_lane(out, size);
  struct Read {
    ssize_t bytes;
    int error;
    bool would_block() const { return bytes < 0 && (error == EAGAIN || error == EWOULDBLOCK); }
  };
  auto read = [&] {
    const ssize_t bytes = detail::retry_on_eintr([&] { return ::recv(fd_.get(), out, size, MSG_DONTWAIT); });
    return Read{bytes, bytes < 0 ? errno : 0};
  };
  // The rest of a frame is usually there already. A new message is not, right after a
  // call went out (the server takes some microseconds): its first look comes after a
  // yield. Each look is the read itself, so the look that finds the reply has taken it:
  // one system call, not a readiness check and a read.
  std::optional<Read> last;
  if (expect == Expect::kRestOfFrame) last = read();
  if (!last || last->would_block()) {
    ready_within_spin(
        spin_, [&] { return !(last = read())->would_block(); }, FirstLook::kAfterYield);
    if (!last) last = read();  // no spin budget left: one look before sleeping
  }
  for (;;) {
    if (last->bytes > 0) return static_cast<size_t>(last->bytes);
    if (last->bytes == 0) fail(kj::Exception::Type::DISCONNECTED, "the manager closed the connection");
    if (!last->would_block()) {
      fail(kj::Exception::Type::DISCONNECTED, kj::str("reading from the manager: ", strerror(last->error)));
    }
    sleep_until_readable();
    last = read();
  }
}

void DirectSession::sleep_until_readable() {
  pollfd wanted{fd_.get(), POLLIN, 0};
  const auto interrupt = interrupt_check();
  const int slice = interrupt.check != nullptr ? static_cast<int>(interrupt.interval.count()) : -1;
  // Not retry_on_eintr: a signal (Ctrl-C in Python) is what the interrupt check is for, so
  // after EINTR it runs at once rather than at the end of the slice.
  for (;;) {
    int ready = ::poll(&wanted, 1, slice);
    if (ready > 0) return;
    if (ready < 0 && errno != EINTR) fail(kj::Exception::Type::DISCONNECTED, kj::str("poll: ", strerror(errno)));
    if (interrupt.check != nullptr) interrupt.check();
  }
}

// The server is usually still working on the call that just went out: the first look
// comes after a yield. Looks read shared memory only.
size_t DirectSession::receive_from_lane(kj::byte* out, size_t size) {
  try {
    bool spun = false;
    for (;;) {
      const size_t n = lane_->read(out, size);
      if (n > 0) {
        if (lane_->take_room_doorbell()) detail::ring_doorbell(fd_.get());
        return n;
      }
      if (!spun) {
        spun = true;
        if (ready_within_spin(
                spin_, [&] { return lane_->has_input(); }, FirstLook::kAfterYield))
          continue;
      }
      if (!lane_->sleep_for_input()) continue;
      const bool open = sleep_on_doorbell();
      if (!open && !lane_->has_input()) fail(kj::Exception::Type::DISCONNECTED, "the manager closed the connection");
    }
  } catch (const LaneError& e) {
    fail(kj::Exception::Type::DISCONNECTED, kj::str("the manager's lane broke: ", e.what()));
  }
}

void DirectSession::flush_to_lane() {
  try {
    size_t sent = 0;
    while (sent < outgoing_.size()) {
      const size_t n = lane_->write(outgoing_.data() + sent, outgoing_.size() - sent);
      if (n > 0) {
        sent += n;
        if (lane_->take_input_doorbell()) detail::ring_doorbell(fd_.get());
        continue;
      }
      // Full: the server takes bytes as it spins, or rings once it made room.
      if (ready_within_spin(spin_, [&] { return lane_->has_room(); })) continue;
      if (!lane_->sleep_for_room()) continue;
      if (!sleep_on_doorbell()) {
        outgoing_.clear();
        fail(kj::Exception::Type::DISCONNECTED, "the manager closed the connection");
      }
    }
  } catch (const LaneError& e) {
    outgoing_.clear();
    fail(kj::Exception::Type::DISCONNECTED, kj::str("the manager's lane broke: ", e.what()));
  }
  outgoing_.clear();
}

bool DirectSession::sleep_on_doorbell() {
  sleep_until_readable();
  const bool open = drain_doorbells(fd_.get());
  lane_->awake();
  return open;
}

}  // namespace xproc::rpc
