// See bridge.h. Every wait here is a slice of at most 100 ms (a peek, a put, a fetch) or one
// bounded request (a publish, an acknowledgement), so that `stop` is seen within about a
// second whatever the cluster does.
#include "xproc/nats/bridge.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <optional>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "xproc/byte_queue.h"
#include "xproc/errors.h"
#include "xproc/message.h"
#include "xproc/nats/nats_internal.h"

namespace xproc::nats {

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kSlice = std::chrono::milliseconds(100);
// How long one publish or acknowledgement waits for the cluster's answer before it is sent
// again: long enough for a replicated store under load, short enough that a stop is seen.
constexpr int64_t kRequestWaitMs = 1000;
// Errors the cluster recovers from are logged once they have lasted this long, then again
// every kLogEvery, so that a bridge waiting on the cluster says so without flooding.
constexpr auto kLogAfter = std::chrono::seconds(2);
constexpr auto kLogEvery = std::chrono::seconds(10);
// After a stop, how long an acknowledgement of a message already put is still retried.
constexpr auto kAckGrace = std::chrono::seconds(2);

struct MessageHandle {
  natsMsg* msg = nullptr;
  ~MessageHandle() { natsMsg_Destroy(msg); }
};

struct MessageList {
  natsMsgList list{};
  ~MessageList() { natsMsgList_Destroy(&list); }
};

struct ConsumerInfo {
  jsConsumerInfo* info = nullptr;
  ~ConsumerInfo() { jsConsumerInfo_Destroy(info); }
};

// What no retry mends: refused credentials or permissions, a closed connection, a message
// or subject the servers refuse, a stream that is not the one expected. Anything else (no
// responders while a leader is elected, timeouts, a lost connection being re-established)
// is retried.
bool fatal(natsStatus status, jsErrCode js_error) {
  switch (status) {
    case NATS_CONNECTION_AUTH_FAILED:
    case NATS_NOT_PERMITTED:
    case NATS_CONNECTION_CLOSED:
    case NATS_INVALID_ARG:
    case NATS_INVALID_SUBJECT:
    case NATS_INVALID_SUBSCRIPTION:
    case NATS_MAX_PAYLOAD:
    case NATS_ILLEGAL_STATE: return true;
    default: break;
  }
  switch (int(js_error)) {
    case JSStreamMessageExceedsMaximumErr:
    case JSStreamNotMatchErr:
    case JSStreamNotFoundErr:
    case JSConsumerNotFoundErr: return true;
    default: return false;
  }
}

// Retries of one operation: counts them and logs while they last (see kLogAfter).
class Retrying {
 public:
  Retrying(std::atomic<uint64_t>& retries, const std::function<void(const std::string&)>& log, std::string what)
      : retries_(retries), log_(log), what_(std::move(what)) {}

  void failed(natsStatus status, jsErrCode js_error) {
    retries_.fetch_add(1, std::memory_order_relaxed);
    const auto now = Clock::now();
    if (!first_) first_ = now;
    if (log_ && now - *first_ >= kLogAfter && (!logged_ || now - *logged_ >= kLogEvery)) {
      logged_ = now;
      const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(now - *first_).count();
      log_("bridge: " + what_ + " failing for " + std::to_string(seconds) + " s (" +
           detail::status_text(status, js_error) + "); retrying");
    }
  }
  // Says so in the log if the failures were logged.
  void succeeded() {
    if (logged_ && log_) log_("bridge: " + what_ + " works again");
    first_.reset();
    logged_.reset();
  }

 private:
  std::atomic<uint64_t>& retries_;
  const std::function<void(const std::string&)>& log_;
  std::string what_;
  std::optional<Clock::time_point> first_;
  std::optional<Clock::time_point> logged_;
};

// Sleeps one slice unless `stop` is set.
void pause(const std::atomic<bool>& stop) {
  if (!stop.load()) std::this_thread::sleep_for(kSlice);
}

// A stream name made of the subject: the characters a name may not hold become '_'.
std::string stream_name_for(const std::string& subject) {
  std::string name = subject;
  for (char& c : name) {
    const bool keep =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!keep) c = '_';
  }
  return name;
}

struct Counters {
  std::atomic<uint64_t> messages{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> duplicates{0};
  std::atomic<uint64_t> retries{0};

  BridgeStats snapshot() const noexcept {
    return {messages.load(std::memory_order_relaxed), bytes.load(std::memory_order_relaxed),
            duplicates.load(std::memory_order_relaxed), retries.load(std::memory_order_relaxed)};
  }
};

std::string counted(uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

std::string stats_line(const BridgeStats& stats) {
  return "forwarded " + counted(stats.messages, "message", "messages") + " (" + counted(stats.bytes, "byte", "bytes") +
         "), " + counted(stats.duplicates, "duplicate", "duplicates") + ", " +
         counted(stats.retries, "retry", "retries");
}

// ---------------------------------------------------------------------------------------
// BridgeOut

struct BridgeOut::Impl {
  std::shared_ptr<Connection> connection;
  BridgeOutOptions options;
  ByteQueue queue;
  std::string schema_header;
  // "<queue>:<created_unix_ns>:": the part of every message id that names this queue.
  std::string id_prefix;
  // Messages ever got from the queue, widened past 2^32 from the header's 32-bit count.
  uint64_t got = 0;
  Counters counters;

  Impl(std::shared_ptr<Connection> c, BridgeOutOptions o)
      : connection(std::move(c)), options(std::move(o)), queue(ByteQueue::open(options.queue)) {}

  // The count the header says now, widened: the 32-bit counter moved on by less than 2^32
  // since it was last read.
  uint64_t widened_got() {
    const uint32_t now = queue.info().got_count;
    got += uint32_t(now - uint32_t(got));
    return got;
  }

  // Starts the widened count where the ids already in the stream leave it: the last message
  // on the subject, when it came from this queue, carries the count of its predecessor run;
  // the header's count is read as the number nearest to it. Without one the count starts
  // at the header's (ids repeat only after 2^32 messages, far outside any de-duplication
  // window).
  void seed_count() {
    got = queue.info().got_count;
    MessageHandle last;
    jsErrCode error = jsErrCode(0);
    if (js_GetLastMsg(&last.msg, connection->jetstream(), options.stream.c_str(), options.subject.c_str(), nullptr,
                      &error) != NATS_OK) {
      return;  // no message yet, or no permission to read one: the count stays the header's
    }
    const char* id = nullptr;
    if (natsMsgHeader_Get(last.msg, detail::kMessageIdHeader, &id) != NATS_OK || id == nullptr) return;
    const std::string_view text(id);
    if (!text.starts_with(id_prefix)) return;
    // Another publisher on the subject may have written it: digits only, and no more than a
    // count can have (19 digits stay below 2^64).
    const std::string_view digits = text.substr(id_prefix.size());
    if (digits.empty() || digits.size() > 19) return;
    uint64_t previous = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return;
      previous = previous * 10 + uint64_t(c - '0');
    }
    constexpr uint64_t kWrap = uint64_t{1} << 32;
    uint64_t nearest = (previous & ~(kWrap - 1)) | uint32_t(got);
    if (nearest > previous + kWrap / 2 && nearest >= kWrap) nearest -= kWrap;
    if (nearest + kWrap / 2 < previous) nearest += kWrap;
    got = nearest;
  }

  // JetStream dropped `message` as a duplicate of what it stored under `id` at `sequence`:
  // this bridge's own publish from before a crash (stored, not yet removed from the queue),
  // unless another publisher on the subject used the id, and then removing the message from
  // the queue would lose it. Compared where the stored message is still there to compare (a
  // work-queue stream drops it once consumed; then nothing tells the two apart).
  void check_duplicate_is_ours(natsMsg* message, const std::string& id, uint64_t sequence) {
    jsOptions get_options;
    jsOptions_Init(&get_options);
    get_options.Wait = kRequestWaitMs;
    MessageHandle stored;
    jsErrCode error = jsErrCode(0);
    const natsStatus status =
        js_GetMsg(&stored.msg, connection->jetstream(), options.stream.c_str(), sequence, &get_options, &error);
    if (status != NATS_OK) {
      if (status != NATS_NOT_FOUND && options.log) {
        options.log("bridge: message " + id + " was stored before (stream sequence " + std::to_string(sequence) +
                    "), and reading that copy to compare failed: " + detail::status_text(status, error));
      }
      return;
    }
    const int length = natsMsg_GetDataLength(message);
    const bool same_bytes = natsMsg_GetDataLength(stored.msg) == length &&
                            std::memcmp(natsMsg_GetData(stored.msg), natsMsg_GetData(message), size_t(length)) == 0;
    if (!same_bytes || detail::schema_id_of(stored.msg) != detail::schema_id_of(message)) {
      throw RuntimeError("bridge: message id " + id + " is held by message " + std::to_string(sequence) +
                         " of stream '" + options.stream + "', which is another message: another publisher on " +
                         options.subject + " uses this bridge's ids; the message stays in queue '" + options.queue +
                         "'");
    }
  }

  // Publishes `message` under `id` until the stream acknowledges it; false when `stop` was
  // set first (the stream may hold it: a republish under the same id is dropped).
  bool publish(natsMsg* message, const std::string& id, const std::atomic<bool>& stop) {
    jsPubOptions publish_options;
    jsPubOptions_Init(&publish_options);
    publish_options.MaxWait = kRequestWaitMs;
    publish_options.ExpectStream = options.stream.c_str();
    Retrying retrying(counters.retries, options.log, "publishing to " + options.subject);
    while (!stop.load()) {
      jsPubAck* ack = nullptr;
      jsErrCode error = jsErrCode(0);
      const auto started = Clock::now();
      const natsStatus status = js_PublishMsg(&ack, connection->jetstream(), message, &publish_options, &error);
      if (status == NATS_OK) {
        const bool duplicate = ack->Duplicate;
        const uint64_t sequence = ack->Sequence;
        jsPubAck_Destroy(ack);
        retrying.succeeded();
        if (duplicate) {
          check_duplicate_is_ours(message, id, sequence);
          counters.duplicates.fetch_add(1, std::memory_order_relaxed);
        }
        return true;
      }
      if (status == NATS_MAX_PAYLOAD) {
        throw MessageTooLarge("bridge: message " + id + " of queue '" + options.queue +
                              "' exceeds the server's max_payload: " + detail::status_text(status, error) +
                              "; it stays in the queue");
      }
      if (fatal(status, error)) detail::throw_status(status, "bridge: publishing to " + options.subject, error);
      retrying.failed(status, error);
      // A refusal that came at once (no responders while a leader is elected) is not
      // repeated at once.
      if (Clock::now() - started < kSlice) pause(stop);
    }
    return false;
  }

  void run(const std::atomic<bool>& stop) {
    while (!stop.load()) {
      std::vector<std::byte> bytes;
      try {
        bytes = queue.peek_bytes(true, kSlice);
      } catch (const Empty&) {
        continue;
      }
      const uint64_t count = widened_got();
      const std::string id = id_prefix + std::to_string(count);
      MessageHandle message;
      detail::check(natsMsg_Create(&message.msg, options.subject.c_str(), nullptr,
                                   reinterpret_cast<const char*>(bytes.data()), int(bytes.size())),
                    "bridge: message");
      detail::check(natsMsgHeader_Set(message.msg, detail::kSchemaIdHeader, schema_header.c_str()), "bridge: header");
      detail::check(natsMsgHeader_Set(message.msg, detail::kMessageIdHeader, id.c_str()), "bridge: header");
      if (!publish(message.msg, id, stop)) return;
      // Stored: now it may leave the queue. What leaves must be what was published, and the
      // only message taken since the peek.
      auto taken = queue.try_get_bytes(std::chrono::seconds(0));
      const bool alone = widened_got() == count + 1;
      if (!taken || *taken != bytes || !alone) {
        throw RuntimeError("bridge: another process takes messages from queue '" + options.queue +
                           "' (the bridge must be its only consumer); message " + id +
                           " was published, and what left the queue after it " +
                           (taken && *taken == bytes ? "was not the only message taken" : "is another message"));
      }
      counters.messages.fetch_add(1, std::memory_order_relaxed);
      counters.bytes.fetch_add(bytes.size(), std::memory_order_relaxed);
    }
  }
};

BridgeOut::BridgeOut(std::shared_ptr<Connection> connection, BridgeOutOptions options) {
  if (options.subject.empty()) throw ValueError("bridge: no subject to publish on");
  if (options.stream.empty()) options.stream = stream_name_for(options.subject);
  impl_ = std::make_unique<Impl>(std::move(connection), std::move(options));
  Impl& s = *impl_;
  const QueueInfo info = s.queue.info();
  s.schema_header = schema_id_hex(s.queue.schema_id());
  s.id_prefix = s.options.queue + ":" + std::to_string(info.created_unix_ns) + ":";
  if (s.options.create_stream) {
    detail::StreamSpec spec;
    spec.name = s.options.stream;
    spec.subject = s.options.subject;
    spec.replicas = s.options.replicas;
    spec.work_queue = false;
    spec.description = "xproc bridge: Cap'n Proto messages of schema " + s.schema_header;
    spec.duplicate_window = s.options.duplicate_window;
    detail::ensure_stream(*s.connection, spec);
  } else {
    detail::stream_messages(*s.connection, s.options.stream);  // exists, or a clear error
  }
  s.seed_count();
}

BridgeOut::~BridgeOut() = default;
void BridgeOut::run(const std::atomic<bool>& stop) { impl_->run(stop); }
BridgeStats BridgeOut::stats() const noexcept { return impl_->counters.snapshot(); }
const std::string& BridgeOut::stream() const noexcept { return impl_->options.stream; }

// ---------------------------------------------------------------------------------------
// BridgeIn

struct BridgeIn::Impl {
  std::shared_ptr<Connection> connection;
  BridgeInOptions options;
  ByteQueue queue;
  natsSubscription* subscription = nullptr;
  // How often a put waiting for room tells JetStream the messages in hand are in progress.
  std::chrono::milliseconds progress_every{10000};
  // The stream sequence expected next: the one after the last message put (at start, after
  // the consumer's acknowledgement floor). A later one means messages in between are either
  // gone from the stream or delivered and unacknowledged elsewhere (a killed predecessor's,
  // or lost in flight with a server); the bridge waits for the latter, so that the queue
  // gets the stream's order. Off when the consumer limits deliveries (MaxDeliver): handing
  // messages back while waiting would use them up.
  uint64_t next_sequence = 0;
  bool keep_order = true;
  // Stream sequences of the messages this run put, most recent last (a bounded window): a
  // redelivery of one is acknowledged, not put; what tells them apart when the order is not
  // kept.
  std::deque<uint64_t> put_order;
  std::unordered_set<uint64_t> put_sequences;
  Counters counters;

  Impl(std::shared_ptr<Connection> c, BridgeInOptions o)
      : connection(std::move(c)), options(std::move(o)), queue(ByteQueue::open(options.queue)) {}
  ~Impl() { natsSubscription_Destroy(subscription); }

  std::string where() const { return "consumer '" + options.consumer + "' of stream '" + options.stream + "'"; }

  natsStatus consumer_info(ConsumerInfo& found, jsErrCode& error) const {
    return js_GetConsumerInfo(&found.info, connection->jetstream(), options.stream.c_str(), options.consumer.c_str(),
                              nullptr, &error);
  }

  // The consumer, made when absent; checked to be one the bridge can work with.
  void find_or_create_consumer() {
    ConsumerInfo found;
    jsErrCode error = jsErrCode(0);
    natsStatus status = consumer_info(found, error);
    if (status != NATS_OK && error == JSStreamNotFoundErr) {
      throw ValueError("bridge: no stream '" + options.stream + "' on the servers");
    }
    if (status != NATS_OK && error == JSConsumerNotFoundErr) {
      jsConsumerConfig config;
      jsConsumerConfig_Init(&config);
      const std::string description = "xproc bridge into queue " + options.queue;
      config.Durable = options.consumer.c_str();
      config.Description = description.c_str();
      config.AckPolicy = js_AckExplicit;
      config.DeliverPolicy = js_DeliverAll;
      config.AckWait = std::chrono::duration_cast<std::chrono::nanoseconds>(options.ack_wait).count();
      ConsumerInfo created;
      status = js_AddConsumer(&created.info, connection->jetstream(), options.stream.c_str(), &config, nullptr, &error);
      if (status != NATS_OK) {
        // Another bridge may have made it meanwhile: then it is found now.
        error = jsErrCode(0);
        status = consumer_info(found, error);
      } else {
        std::swap(found.info, created.info);
      }
    }
    detail::check(status, "bridge: " + where(), error);
    const jsConsumerConfig* config = found.info->Config;
    if (config->DeliverSubject != nullptr && *config->DeliverSubject != '\0') {
      throw ValueError("bridge: " + where() + " is a push consumer; the bridge reads through a pull consumer");
    }
    if (config->AckPolicy != js_AckExplicit) {
      throw ValueError("bridge: " + where() +
                       " does not take explicit acknowledgements; the bridge acknowledges each message once it "
                       "is in the queue");
    }
    const auto ack_wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds(config->AckWait));
    progress_every = std::max<std::chrono::milliseconds>(kSlice, ack_wait / 3);
    keep_order = config->MaxDeliver <= 0;
    next_sequence = found.info->AckFloor.Stream + 1;
  }

  void subscribe() {
    jsSubOptions sub_options;
    jsSubOptions_Init(&sub_options);
    sub_options.Stream = options.stream.c_str();
    sub_options.Consumer = options.consumer.c_str();
    jsErrCode error = jsErrCode(0);
    detail::check(
        js_PullSubscribe(&subscription, connection->jetstream(), nullptr, nullptr, nullptr, &sub_options, &error),
        "bridge: subscribing to " + where(), error);
  }

  // Whether messages before the ones in hand are delivered and unacknowledged elsewhere:
  // the consumer counts more pending than the `held` messages this bridge holds. A consumer
  // info refused for good (permissions) turns the order keeping off.
  bool held_elsewhere(int held) {
    ConsumerInfo info;
    jsErrCode error = jsErrCode(0);
    const natsStatus status = consumer_info(info, error);
    if (status == NATS_OK) return info.info->NumAckPending > held;
    if (fatal(status, error)) {
      keep_order = false;
      if (options.log) {
        options.log("bridge: cannot read " + where() + " (" + detail::status_text(status, error) +
                    "); messages delivered again after a failure may come out of order");
      }
      return false;
    }
    return true;  // the cluster is not answering now: ask again after a pause
  }

  void remember_put(uint64_t sequence) {
    const size_t window = size_t(std::max(1024, 4 * options.batch));
    put_order.push_back(sequence);
    put_sequences.insert(sequence);
    while (put_order.size() > window) {
      put_sequences.erase(put_order.front());
      put_order.pop_front();
    }
  }

  // Acknowledges, waiting for the server's confirmation, retrying through lost servers.
  // After a stop it gives up after kAckGrace: JetStream then delivers the message again.
  void acknowledge(natsMsg* message, uint64_t sequence, const std::atomic<bool>& stop) {
    jsOptions ack_options;
    jsOptions_Init(&ack_options);
    ack_options.Wait = kRequestWaitMs;
    Retrying retrying(counters.retries, options.log, "acknowledging to " + where());
    std::optional<Clock::time_point> stopped;
    for (;;) {
      jsErrCode error = jsErrCode(0);
      const auto started = Clock::now();
      const natsStatus status = natsMsg_AckSync(message, &ack_options, &error);
      if (status == NATS_OK) {
        retrying.succeeded();
        return;
      }
      if (fatal(status, error)) {
        detail::throw_status(status, "bridge: acknowledging message " + std::to_string(sequence) + " to " + where(),
                             error);
      }
      retrying.failed(status, error);
      if (stop.load()) {
        if (!stopped) stopped = Clock::now();
        if (Clock::now() - *stopped >= kAckGrace) return;
      }
      if (Clock::now() - started < kSlice) std::this_thread::sleep_for(kSlice);
    }
  }

  // Hands messages back (NAK: JetStream delivers them again at once, in this order), best
  // effort: one not handed back comes again after the consumer's ack_wait.
  static void hand_back(natsMsgList& list, int from) {
    for (int i = from; i < list.Count; ++i) natsMsg_Nak(list.Msgs[i], nullptr);
  }

  // Hands back what arrived for a fetch after it gave up (a message the server sent as the
  // request expired), which would otherwise stay delivered to this bridge, and the next one
  // would wait ack_wait for it. The fetch asks for nothing new beyond what is there now.
  void hand_back_buffered() {
    jsFetchRequest request;
    jsFetchRequest_Init(&request);
    request.Batch = options.batch;
    request.NoWait = true;
    request.Expires = std::chrono::duration_cast<std::chrono::nanoseconds>(5 * kSlice).count();
    MessageList rest;
    if (natsSubscription_FetchRequest(&rest.list, subscription, &request) == NATS_OK) hand_back(rest.list, 0);
  }

  static uint64_t stream_sequence(natsMsg* message) {
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, message) != NATS_OK) return 0;
    const uint64_t sequence = meta->Sequence.Stream;
    jsMsgMetaData_Destroy(meta);
    return sequence;
  }

  // A message of a schema (not raw bytes) must be one a reader of the queue can read: the
  // stream's publishers are checked here, where the message can stay in the stream, rather
  // than by each reader of the queue.
  void check_message(std::span<const std::byte> bytes, uint64_t sequence) const {
    try {
      xproc::detail::with_validated_root<capnp::AnyStruct>(bytes, DecodeLimits{},
                                                           [](capnp::AnyStruct::Reader) { return 0; });
    } catch (const DecodeError& error) {
      throw DecodeError("bridge: message " + std::to_string(sequence) + " of stream '" + options.stream +
                        "' is not a Cap'n Proto message a reader of queue '" + options.queue + "' can read (" +
                        error.what() + "); it is not acknowledged and stays in the stream");
    }
  }

  enum class Forwarded { kAll, kStopped, kGap };

  // Puts `list`'s messages in order and acknowledges each. kStopped when `stop` came first,
  // kGap when earlier messages are held elsewhere; `unput` is kept at the first message not
  // put yet: what the caller hands back.
  Forwarded forward(natsMsgList& list, int& unput, const std::atomic<bool>& stop) {
    const uint64_t expected = queue.schema_id();
    for (int i = 0; i < list.Count; ++i) {
      if (stop.load()) return Forwarded::kStopped;  // the message in hand is finished
      natsMsg* message = list.Msgs[i];
      const uint64_t sequence = stream_sequence(message);  // 0: unknown, neither checked nor remembered
      // In the queue already: its acknowledgement was lost (with a server that confirmed it
      // and died before its peers recorded it) and JetStream sent it again. Kept in order,
      // every message before the next expected one is in the queue: put by this run, or,
      // below the acknowledgement floor found at the start, by an earlier bridge.
      const bool in_queue =
          sequence != 0 && ((keep_order && sequence < next_sequence) || put_sequences.count(sequence) != 0);
      if (in_queue) {
        unput = i + 1;
        counters.duplicates.fetch_add(1, std::memory_order_relaxed);
        acknowledge(message, sequence, stop);
        continue;
      }
      if (keep_order && sequence > next_sequence && held_elsewhere(list.Count - i)) return Forwarded::kGap;
      const std::optional<uint64_t> carried = detail::schema_id_of(message);
      if (carried != expected) {
        const char* raw = nullptr;
        const bool has_header = natsMsgHeader_Get(message, detail::kSchemaIdHeader, &raw) == NATS_OK && raw != nullptr;
        throw DecodeError(
            "bridge: message " + std::to_string(sequence) + " of stream '" + options.stream + "' carries " +
            (has_header ? "schema id " + std::string(raw) : std::string("no ") + detail::kSchemaIdHeader + " header") +
            ", and queue '" + options.queue + "' carries schema id " + schema_id_hex(expected) +
            "; it is not acknowledged and stays in the stream");
      }
      const auto* data = reinterpret_cast<const std::byte*>(natsMsg_GetData(message));
      const std::span<const std::byte> bytes(data, size_t(natsMsg_GetDataLength(message)));
      if (expected != 0) check_message(bytes, sequence);
      auto progress_at = Clock::now() + progress_every;
      while (!queue.try_put_bytes(bytes, kSlice)) {
        if (stop.load()) return Forwarded::kStopped;
        if (Clock::now() >= progress_at) {
          // Still working on every message in hand: JetStream restarts their ack_wait.
          for (int j = i; j < list.Count; ++j) natsMsg_InProgress(list.Msgs[j], nullptr);
          progress_at = Clock::now() + progress_every;
        }
      }
      unput = i + 1;
      if (sequence != 0) {
        next_sequence = std::max(next_sequence, sequence + 1);
        remember_put(sequence);
      }
      counters.messages.fetch_add(1, std::memory_order_relaxed);
      counters.bytes.fetch_add(bytes.size(), std::memory_order_relaxed);
      acknowledge(message, sequence, stop);
    }
    return Forwarded::kAll;
  }

  void run(const std::atomic<bool>& stop) {
    Retrying fetching(counters.retries, options.log, "fetching from " + where());
    std::optional<Clock::time_point> gap_since;
    while (!stop.load()) {
      MessageList fetched;
      jsErrCode error = jsErrCode(0);
      const auto started = Clock::now();
      const natsStatus status =
          natsSubscription_Fetch(&fetched.list, subscription, options.batch, kSlice.count(), &error);
      if (status == NATS_TIMEOUT) continue;  // nothing to fetch in this slice
      if (status != NATS_OK) {
        if (fatal(status, error)) detail::throw_status(status, "bridge: fetching from " + where(), error);
        fetching.failed(status, error);
        if (Clock::now() - started < kSlice) pause(stop);
        continue;
      }
      fetching.succeeded();
      int unput = 0;
      Forwarded forwarded;
      try {
        forwarded = forward(fetched.list, unput, stop);
      } catch (...) {
        hand_back(fetched.list, unput);
        hand_back_buffered();
        throw;
      }
      if (forwarded != Forwarded::kAll) hand_back(fetched.list, unput);
      if (forwarded == Forwarded::kStopped) break;
      if (forwarded == Forwarded::kGap) {
        // JetStream delivers the missing messages again once their ack_wait has run out;
        // until then the ones handed back come first again, once a second.
        if (!gap_since) {
          gap_since = Clock::now();
          if (options.log) {
            options.log("bridge: waiting for messages from " + std::to_string(next_sequence) + " of stream '" +
                        options.stream +
                        "', delivered and not acknowledged elsewhere (a bridge stopped by a "
                        "failure, or lost in flight), so that the queue gets them in order");
          }
        }
        for (int i = 0; i < 10 && !stop.load(); ++i) std::this_thread::sleep_for(kSlice);
      } else if (gap_since) {
        gap_since.reset();
        if (options.log) options.log("bridge: the messages waited for came, in order; carrying on");
      }
    }
    hand_back_buffered();
  }
};

BridgeIn::BridgeIn(std::shared_ptr<Connection> connection, BridgeInOptions options) {
  if (options.batch < 1) throw ValueError("bridge: batch must be at least 1");
  if (options.ack_wait < std::chrono::seconds(1)) throw ValueError("bridge: ack_wait must be at least 1 second");
  impl_ = std::make_unique<Impl>(std::move(connection), std::move(options));
  impl_->find_or_create_consumer();
  impl_->subscribe();
}

BridgeIn::~BridgeIn() = default;
void BridgeIn::run(const std::atomic<bool>& stop) { impl_->run(stop); }
BridgeStats BridgeIn::stats() const noexcept { return impl_->counters.snapshot(); }

}  // namespace xproc::nats
