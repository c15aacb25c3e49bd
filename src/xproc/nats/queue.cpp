// StreamQueue: one JetStream work-queue stream per queue and its one durable pull consumer,
// with every wait (publish confirmations, fetches, acknowledgements) cut into slices of at
// most 100 ms so that the interrupt check runs.
#include "xproc/nats/queue.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <mutex>
#include <thread>

#include "xproc/nats/nats_internal.h"

namespace xproc::nats {

namespace {

using Clock = std::chrono::steady_clock;

// Queue and bucket names: NATS allows longer stream names; these also stay portable as the
// server's store directory names and as subject tokens.
constexpr size_t kMaxNameLength = 200;

// The durable consumer every handle of a queue shares, so that a message goes to one getter.
constexpr const char* kConsumerName = "xproc";
// The least time a put tries again with: a confirmation takes a round trip to the stream's
// leader and its replicas.
constexpr auto kShortestTry = std::chrono::milliseconds(50);
// How long a JetStream cluster may take to elect a new leader for a consumer whose leader's
// server died, during which nobody answers its acknowledgements: about 2 to 6 s with
// nats-server 2.9 on an idle machine, over 10 s seen on a loaded one.
constexpr std::chrono::milliseconds kFailover{30000};
// The shortest fetch: the server ends a pull request 10 ms before the client gives up on it
// (libnats) only for requests of 20 ms and more; a shorter one can deliver a message to a
// fetch that has returned, leaving it unseen until the next get or ack_wait.
constexpr int64_t kMinFetchMs = 20;

// JetStream's refusal of a publish into a stream at MaxMsgs with DiscardNew: the generic
// store failure (JSStreamStoreFailedErr), told apart by its description.
constexpr int kStoreFailed = 10077;
constexpr std::string_view kMaximumMessages = "maximum messages exceeded";

// The value of "key" in a JetStream reply, which the server writes without spaces:
// {"stream":"jobs","seq":7} or {"error":{"code":503,"err_code":10077,"description":"..."}}.
std::optional<int64_t> json_int(std::string_view json, std::string_view key) {
  const std::string quoted = "\"" + std::string(key) + "\":";
  const size_t at = json.find(quoted);
  if (at == std::string_view::npos) return std::nullopt;
  const char* first = json.data() + at + quoted.size();
  int64_t value = 0;
  if (std::from_chars(first, json.data() + json.size(), value).ec != std::errc()) return std::nullopt;
  return value;
}

std::string json_text(std::string_view json, std::string_view key) {
  const std::string quoted = "\"" + std::string(key) + "\":\"";
  const size_t at = json.find(quoted);
  if (at == std::string_view::npos) return {};
  std::string text;
  for (size_t i = at + quoted.size(); i < json.size() && json[i] != '"'; ++i) {
    if (json[i] == '\\' && i + 1 < json.size()) ++i;
    text += json[i];
  }
  return text;
}

// The statuses (409) that end a pull request while the consumer lives on: its leader moved
// to another server, its server is stopping, or too many getters wait on it at once.
bool transient_refusal(const char* description) {
  if (description == nullptr) return false;
  for (const char* transient : {"Leadership Change", "Server Shutdown", "Exceeded MaxWaiting"}) {
    if (std::strstr(description, transient) != nullptr) return true;
  }
  return false;
}

void pause(std::chrono::milliseconds at_most, const Deadline& deadline) {
  auto wait = std::chrono::duration_cast<Clock::duration>(at_most);
  if (deadline) wait = std::min(wait, std::max(Clock::duration::zero(), *deadline - Clock::now()));
  std::this_thread::sleep_for(wait);
}

struct Subscription {
  natsSubscription* sub = nullptr;
  Subscription() = default;
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  ~Subscription() {
    if (sub == nullptr) return;
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
  }
};

struct MessageHandle {
  natsMsg* message = nullptr;
  MessageHandle() = default;
  explicit MessageHandle(natsMsg* m) : message(m) {}
  MessageHandle(const MessageHandle&) = delete;
  MessageHandle& operator=(const MessageHandle&) = delete;
  ~MessageHandle() { natsMsg_Destroy(message); }
};

// What one publish came to.
enum class Outcome {
  kStored,
  kFull,        // the stream is at maxsize
  kUnanswered,  // no confirmation within the time allowed: stored or not, nobody says
  kNoStream,    // nothing listens on the subject now (a stream leader being elected, or no stream)
};

}  // namespace

namespace detail {

void check_name(std::string_view what, const std::string& name) {
  const bool valid_characters = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
  if (name.empty() || name.size() > kMaxNameLength || !valid_characters) {
    throw ValueError("nats: " + std::string(what) + " name '" + name + "' must be 1 to " +
                     std::to_string(kMaxNameLength) + " letters, digits, '-' or '_'");
  }
}

}  // namespace detail

struct StreamQueue::Impl {
  std::shared_ptr<Connection> connection;
  std::string name;
  std::string subject;
  uint64_t schema_id = 0;
  std::string schema_header;
  QueueOptions options;

  // Puts: one at a time per handle, each confirmed on this handle's inbox. A confirmation
  // that comes after its put gave up carries an older token and is dropped.
  std::mutex put_mutex;
  Subscription replies;
  std::string inbox;
  uint64_t next_token = 0;
  // Why the last try was refused (Outcome::kNoStream), for the error that ends the put.
  std::string refusal;

  // Gets: libnats refuses two fetches at once on one subscription.
  std::mutex fetch_mutex;
  Subscription pull;

  // Got and not acknowledged, oldest first (Acknowledge::kOnTaskDone).
  std::mutex unacked_mutex;
  std::deque<natsMsg*> unacked;

  ~Impl() {
    // Handed back at once rather than after ack_wait. Nak publishes without waiting.
    for (natsMsg* message : unacked) {
      natsMsg_Nak(message, nullptr);
      natsMsg_Destroy(message);
    }
  }

  std::string where() const { return "nats: queue " + name; }

  // Creates the queue's consumer unless it exists. An existing one is left as it is: JetStream
  // would apply this handle's settings to every handle's consumer (ack_wait) silently.
  void create_consumer() {
    const detail::Answer found = detail::sliced_request(*connection, [&](int64_t wait_ms, jsErrCode* error) {
      jsConsumerInfo* info = nullptr;
      jsOptions wait = detail::request_options(wait_ms);
      const natsStatus status =
          js_GetConsumerInfo(&info, connection->jetstream(), name.c_str(), kConsumerName, &wait, error);
      jsConsumerInfo_Destroy(info);
      return status;
    });
    if (found.status == NATS_OK) return;
    if (found.error != JSConsumerNotFoundErr) {
      detail::throw_status(found.status, where() + ": finding its consumer", found.error);
    }

    jsConsumerConfig config;
    jsConsumerConfig_Init(&config);
    config.Durable = kConsumerName;
    config.AckPolicy = js_AckExplicit;
    config.AckWait = std::chrono::duration_cast<std::chrono::nanoseconds>(options.ack_wait).count();
    config.MaxDeliver = -1;
    config.FilterSubject = subject.c_str();
    config.DeliverPolicy = js_DeliverAll;
    const detail::Answer made = detail::sliced_request(*connection, [&](int64_t wait_ms, jsErrCode* error) {
      jsConsumerInfo* info = nullptr;
      jsOptions wait = detail::request_options(wait_ms);
      const natsStatus status = js_AddConsumer(&info, connection->jetstream(), name.c_str(), &config, &wait, error);
      jsConsumerInfo_Destroy(info);
      return status;
    });
    // Another handle made it between the two requests, or an earlier try whose answer was lost
    // did: the same consumer.
    if (made.status == NATS_OK || made.error == JSConsumerNameExistErr || made.error == JSConsumerExistingActiveErr) {
      return;
    }
    detail::throw_status(made.status, where() + ": creating its consumer", made.error);
  }

  void subscribe() {
    jsSubOptions bind;
    jsSubOptions_Init(&bind);
    bind.Stream = name.c_str();
    bind.Consumer = kConsumerName;
    // libnats's one request here, the consumer's lookup, waits one slice: unanswered, libnats
    // subscribes all the same, only without the consumer's MaxAckPending to size its buffer by
    // (fetches here take one message at a time).
    jsOptions wait = detail::request_options(detail::kSliceMs);
    jsErrCode error = jsErrCode(0);
    detail::check(
        js_PullSubscribe(&pull.sub, connection->jetstream(), subject.c_str(), kConsumerName, &wait, &bind, &error),
        where() + ": subscribing to its consumer", error);

    natsInbox* box = nullptr;
    detail::check(natsInbox_Create(&box), where() + ": inbox");
    inbox = box;
    natsInbox_Destroy(box);
    detail::check(natsConnection_SubscribeSync(&replies.sub, connection->native(), (inbox + ".*").c_str()),
                  where() + ": subscribing to its inbox");
  }

  // Publishes once and waits for the stream's answer until `until`.
  Outcome publish(std::span<const std::byte> bytes, std::string_view message_id, Clock::time_point until) {
    const std::string reply = inbox + "." + std::to_string(++next_token);
    natsMsg* raw = nullptr;
    detail::check(natsMsg_Create(&raw, subject.c_str(), reply.c_str(), reinterpret_cast<const char*>(bytes.data()),
                                 int(bytes.size())),
                  where() + ": message");
    MessageHandle message(raw);
    detail::check(natsMsgHeader_Set(raw, detail::kSchemaIdHeader, schema_header.c_str()), where() + ": header");
    if (!message_id.empty()) {
      detail::check(natsMsgHeader_Set(raw, detail::kMessageIdHeader, std::string(message_id).c_str()),
                    where() + ": header");
    }
    // While the connection is being re-established this is buffered, and sent on reconnect.
    detail::check(natsConnection_PublishMsg(connection->native(), raw), where() + ": publishing");

    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
      if (left <= 0) return Outcome::kUnanswered;
      detail::check_interrupt();
      natsMsg* answer_raw = nullptr;
      const natsStatus status =
          natsSubscription_NextMsg(&answer_raw, replies.sub, std::min<int64_t>(left, detail::kSliceMs));
      if (status == NATS_TIMEOUT) continue;
      // libnats turns the server's 503 status into this status, and drops the message.
      if (status == NATS_NO_RESPONDERS) {
        refusal = "no stream listens on " + subject;
        return Outcome::kNoStream;
      }
      detail::check(status, where() + ": waiting for the stream's confirmation");
      MessageHandle answer(answer_raw);
      if (reply != natsMsg_GetSubject(answer_raw)) continue;  // an earlier put's, too late
      const char* code = nullptr;
      if (natsMsgHeader_Get(answer_raw, "Status", &code) == NATS_OK && code != nullptr) {
        throw RuntimeError(where() + ": publishing: status " + code);
      }
      const std::string_view json(natsMsg_GetData(answer_raw), size_t(natsMsg_GetDataLength(answer_raw)));
      if (json.find("\"error\":") == std::string_view::npos) return Outcome::kStored;
      const int err_code = int(json_int(json, "err_code").value_or(0));
      const int http_code = int(json_int(json, "code").value_or(0));
      const std::string description = json_text(json, "description");
      if (err_code == kStoreFailed && description == kMaximumMessages) return Outcome::kFull;
      const std::string text = description + " [JetStream error " + std::to_string(err_code) + "]";
      if (err_code == JSStreamMessageExceedsMaximumErr) throw MessageTooLarge(where() + ": publishing: " + text);
      // 503: the cluster has no quorum for the stream now (a member restarting).
      if (http_code == 503) {
        refusal = text;
        return Outcome::kNoStream;
      }
      throw RuntimeError(where() + ": publishing: " + text);
    }
  }

  // Acknowledges `message`, retrying while nobody confirms (the consumer's leader died and
  // another is being elected) for request_timeout, ack_wait or kFailover, whichever is
  // longest. A second acknowledgement of one message is harmless.
  void acknowledge(natsMsg* message) {
    const auto until = Clock::now() + std::max({connection->options().request_timeout, options.ack_wait, kFailover});
    for (;;) {
      detail::check_interrupt();
      jsOptions wait;
      jsOptions_Init(&wait);
      wait.Wait = detail::kSliceMs;
      jsErrCode error = jsErrCode(0);
      const natsStatus status = natsMsg_AckSync(message, &wait, &error);
      if (status == NATS_OK) return;
      const bool again = status == NATS_TIMEOUT || status == NATS_NO_RESPONDERS;
      if (!again || Clock::now() >= until) detail::throw_status(status, where() + ": acknowledging", error);
      if (status == NATS_NO_RESPONDERS) pause(detail::kRetryPause, std::nullopt);
    }
  }

  // One message from the consumer, or nullptr: waiting up to `wait_ms`, or (0) asking the
  // server for what it has now without waiting.
  natsMsg* fetch(int64_t wait_ms) {
    natsMsgList list{};
    natsStatus status;
    jsErrCode error = jsErrCode(0);
    {
      std::lock_guard lock(fetch_mutex);
      if (wait_ms == 0) {
        jsFetchRequest request;
        jsFetchRequest_Init(&request);
        request.Batch = 1;
        request.NoWait = true;
        // How long to wait for the server's answer (a message, or 404 at once), in ns.
        request.Expires =
            std::min<int64_t>(connection->options().request_timeout.count(), detail::kSliceMs) * 1'000'000;
        status = natsSubscription_FetchRequest(&list, pull.sub, &request);
      } else {
        status = natsSubscription_Fetch(&list, pull.sub, 1, std::max(wait_ms, kMinFetchMs), &error);
      }
    }
    if (status == NATS_OK && list.Count > 0) {
      natsMsg* message = list.Msgs[0];
      list.Msgs[0] = nullptr;
      natsMsgList_Destroy(&list);
      return message;
    }
    natsMsgList_Destroy(&list);
    switch (status) {
      case NATS_OK:
      case NATS_TIMEOUT:    // nothing within the wait (408 from the server, or the client's clock)
      case NATS_NOT_FOUND:  // nothing now (404, the answer to a request that does not wait)
        return nullptr;
      case NATS_NO_RESPONDERS:  // the consumer's leader is being elected: ask again shortly
        pause(detail::kRetryPause, std::nullopt);
        return nullptr;
      case NATS_ERR:
        // A 409 status ending the pull request; these ones say "ask again".
        if (transient_refusal(nats_GetLastError(nullptr))) {
          pause(detail::kRetryPause, std::nullopt);
          return nullptr;
        }
        [[fallthrough]];
      default: detail::throw_status(status, where() + ": getting", error);
    }
  }

  std::vector<std::byte> take(natsMsg* raw) {
    MessageHandle message(raw);
    const std::optional<uint64_t> carried = detail::schema_id_of(raw);
    if (carried != schema_id) {
      uint64_t sequence = 0;
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, raw) == NATS_OK) {
        sequence = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
      }
      // Removed, as a local queue's get removes what it cannot decode.
      acknowledge(raw);
      throw DecodeError(where() + ": message " + std::to_string(sequence) + " carries schema " +
                        (carried ? schema_id_hex(*carried) : std::string("(none)")) + ", expected " +
                        schema_id_hex(schema_id));
    }
    const auto* data = reinterpret_cast<const std::byte*>(natsMsg_GetData(raw));
    std::vector<std::byte> bytes(data, data + natsMsg_GetDataLength(raw));
    if (options.acknowledge == Acknowledge::kOnGet) {
      acknowledge(raw);
      return bytes;
    }
    std::lock_guard lock(unacked_mutex);
    unacked.push_back(raw);
    message.message = nullptr;
    return bytes;
  }
};

StreamQueue::StreamQueue(std::shared_ptr<Connection> connection, std::string name, uint64_t schema_id,
                         const QueueOptions& options)
    : impl_(std::make_unique<Impl>()) {
  detail::check_name("queue", name);
  XPROC_REQUIRE(connection != nullptr, "nats: a queue needs a connection");
  XPROC_REQUIRE(options.replicas >= 1, "nats: replicas must be at least 1", options.replicas);
  XPROC_REQUIRE(options.ack_wait.count() > 0, "nats: ack_wait must be positive", options.ack_wait.count());
  impl_->connection = std::move(connection);
  impl_->name = std::move(name);
  impl_->subject = options.subject.empty() ? "xproc.queue." + impl_->name : options.subject;
  impl_->schema_id = schema_id;
  impl_->schema_header = schema_id_hex(schema_id);
  impl_->options = options;

  detail::StreamSpec spec;
  spec.name = impl_->name;
  spec.subject = impl_->subject;
  spec.replicas = options.replicas;
  spec.work_queue = true;
  spec.max_msgs = int64_t(options.maxsize);
  spec.description = "xproc queue, schema " + impl_->schema_header;
  detail::ensure_stream(*impl_->connection, spec);
  impl_->create_consumer();
  impl_->subscribe();
}

StreamQueue::~StreamQueue() = default;
StreamQueue::StreamQueue(StreamQueue&&) noexcept = default;
StreamQueue& StreamQueue::operator=(StreamQueue&&) noexcept = default;

void StreamQueue::put_bytes(std::span<const std::byte> message, bool block, const Timeout& timeout,
                            std::string_view message_id) {
  Impl& q = *impl_;
  const Deadline deadline = detail::deadline_after(timeout);
  std::lock_guard lock(q.put_mutex);
  for (;;) {
    detail::check_interrupt();
    // One try without block; with it, a confirmation may take up to request_timeout before
    // the same message (the same Nats-Msg-Id) is published again.
    auto until = Clock::now() + q.connection->options().request_timeout;
    if (block && deadline) until = std::min(until, *deadline);
    const Outcome outcome = q.publish(message, message_id, until);
    if (outcome == Outcome::kStored) return;
    // A refusal stands unless the next try has time to be answered: a try cut short by the
    // deadline would turn "full" into "unknown".
    const bool refused = outcome != Outcome::kUnanswered;
    const bool another =
        block && (!deadline || (refused ? *deadline - Clock::now() >= detail::kRetryPause + kShortestTry
                                        : !detail::passed(deadline)));
    if (!another) {
      switch (outcome) {
        case Outcome::kFull: throw Full();
        case Outcome::kNoStream: throw ConnectionError(q.where() + ": publishing: " + q.refusal);
        default:
          throw TimeoutError(q.where() + ": the stream did not confirm the message in time (it may have stored it)");
      }
    }
    if (refused) pause(detail::kRetryPause, deadline);
  }
}

std::optional<std::vector<std::byte>> StreamQueue::get_bytes(bool block, const Timeout& timeout) {
  Impl& q = *impl_;
  const Deadline deadline = detail::deadline_after(timeout);
  const bool wait = block && !(timeout && timeout->count() == 0);
  for (;;) {
    detail::check_interrupt();
    natsMsg* message = q.fetch(wait ? std::max<int64_t>(detail::slice_ms(deadline), 1) : 0);
    if (message != nullptr) return q.take(message);
    if (!wait || detail::passed(deadline)) return std::nullopt;
  }
}

void StreamQueue::task_done() {
  Impl& q = *impl_;
  if (q.options.acknowledge == Acknowledge::kOnGet) return;
  natsMsg* message;
  {
    std::lock_guard lock(q.unacked_mutex);
    if (q.unacked.empty()) throw ValueError("task_done() called too many times");
    message = q.unacked.front();
    q.unacked.pop_front();
  }
  try {
    q.acknowledge(message);
  } catch (...) {
    // Still owed: a later task_done() tries it again, the destructor hands it back.
    std::lock_guard lock(q.unacked_mutex);
    q.unacked.push_front(message);
    throw;
  }
  natsMsg_Destroy(message);
}

void StreamQueue::join(const Timeout& timeout) {
  const Deadline deadline = detail::deadline_after(timeout);
  for (;;) {
    detail::check_interrupt();
    if (detail::stream_messages(*impl_->connection, impl_->name) == 0) return;
    if (detail::passed(deadline)) throw TimeoutError(impl_->where() + ": join() timed out");
    pause(std::chrono::milliseconds(50), deadline);
  }
}

size_t StreamQueue::qsize() const { return size_t(detail::stream_messages(*impl_->connection, impl_->name)); }
const std::string& StreamQueue::name() const noexcept { return impl_->name; }
uint64_t StreamQueue::schema_id() const noexcept { return impl_->schema_id; }
const std::shared_ptr<Connection>& StreamQueue::connection() const noexcept { return impl_->connection; }

}  // namespace xproc::nats
