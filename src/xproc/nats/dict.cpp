// Dict: a JetStream key-value bucket holding xproc Values as their Cap'n Proto bytes, with
// compare-and-set on the bucket's per-key revisions. Made of libnats's JetStream calls rather
// than its kvStore ones, which wait up to the context's whole timeout in one call: each request
// here is a sliced_request, so that the interrupt check runs, and each write carries a
// Nats-Msg-Id, so that its tries store it once.
#include "xproc/nats/dict.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "xproc/nats/nats_internal.h"

namespace xproc::nats {

namespace {

using Clock = std::chrono::steady_clock;

// The header libnats and every other NATS client mark deletes and purges with, and its values.
constexpr const char* kOperationHeader = "KV-Operation";
constexpr const char* kDelete = "DEL";
constexpr const char* kPurge = "PURGE";

// How long the server keeps a listing's consumer (keys()) once nobody reads its inbox: keys()
// deletes it itself, but one whose creation went unanswered, or whose deletion did, goes so.
constexpr std::chrono::seconds kListingLeftFor{10};

bool key_character(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || std::strchr("-/_=.", c);
}

// A key is a subject's last tokens: '.' separates them, so none may be empty.
void check_key(std::string_view key) {
  const bool valid = !key.empty() && key.front() != '.' && key.back() != '.' &&
                     key.find("..") == std::string_view::npos &&
                     std::all_of(key.begin(), key.end(), [](char c) { return c != '\0' && key_character(c); });
  if (!valid) {
    throw ValueError("nats: dict key '" + std::string(key) +
                     "' must be letters, digits and '-/_=.', not starting or ending with '.'");
  }
}

// libnats's objects, each destroyed with its own function.
template <auto destroy>
struct Destroy {
  template <class T>
  void operator()(T* object) const noexcept {
    destroy(object);
  }
};
template <class T, auto destroy>
using Owned = std::unique_ptr<T, Destroy<destroy>>;
using OwnedMessage = Owned<natsMsg, natsMsg_Destroy>;
using OwnedPubAck = Owned<jsPubAck, jsPubAck_Destroy>;
using OwnedStreamInfo = Owned<jsStreamInfo, jsStreamInfo_Destroy>;
using OwnedConsumerInfo = Owned<jsConsumerInfo, jsConsumerInfo_Destroy>;
using OwnedMetaData = Owned<jsMsgMetaData, jsMsgMetaData_Destroy>;

void unsubscribe(natsSubscription* subscription) {
  natsSubscription_Unsubscribe(subscription);
  natsSubscription_Destroy(subscription);
}
using OwnedSubscription = Owned<natsSubscription, unsubscribe>;

// A delete or purge marker: a deleted key's last message, as every NATS client writes it.
bool is_marker(natsMsg* message) {
  const char* operation = nullptr;
  if (natsMsgHeader_Get(message, kOperationHeader, &operation) != NATS_OK || operation == nullptr) return false;
  return std::strcmp(operation, kDelete) == 0 || std::strcmp(operation, kPurge) == 0;
}

std::span<const std::byte> bytes_of(const kj::Array<capnp::word>& words) {
  return std::as_bytes(std::span(words.begin(), words.size()));
}

}  // namespace

struct Dict::Impl {
  std::shared_ptr<Connection> connection;
  std::string name;
  // The bucket answers reads from any of its replicas (as every NATS client's buckets do), not
  // only from its leader: what libnats's kvStore_Get uses when it can, and as fast.
  bool direct_reads = false;
  // The revision this handle last stored under each key it wrote (last_message). One entry per
  // key written; a handle that writes millions of distinct keys holds as many.
  mutable std::mutex written_mutex;
  std::unordered_map<std::string, uint64_t> written;

  std::string where() const { return "nats: dict " + name; }
  // The bucket's stream and a key's subject, as every NATS client names them.
  std::string stream() const { return "KV_" + name; }
  std::string subject(std::string_view key) const { return "$KV." + name + "." + std::string(key); }

  // Finds the bucket's stream, or creates it as js_CreateKeyValue does; one that another process
  // makes meanwhile is bound to as one found (whatever its settings, as js_KeyValue does).
  void bind(int replicas) {
    const std::string name_of_stream = stream();
    OwnedStreamInfo found;
    const auto look_up = [&] {
      return detail::sliced_request(*connection, [&](int64_t wait_ms, jsErrCode* error) {
        jsOptions options = detail::request_options(wait_ms);
        jsStreamInfo* info = nullptr;
        const natsStatus status =
            js_GetStreamInfo(&info, connection->jetstream(), name_of_stream.c_str(), &options, error);
        found.reset(info);
        return status;
      });
    };
    detail::Answer answer = look_up();
    if (answer.status == NATS_NOT_FOUND) {
      const std::string subjects = subject(">");
      const char* subject_list[] = {subjects.c_str()};
      jsStreamConfig config;
      jsStreamConfig_Init(&config);
      config.Name = name_of_stream.c_str();
      config.Subjects = subject_list;
      config.SubjectsLen = 1;
      config.MaxMsgsPerSubject = 1;  // history: the last value only
      config.MaxBytes = -1;
      config.MaxMsgSize = -1;
      config.Storage = js_FileStorage;
      config.Replicas = replicas;
      config.AllowRollup = true;
      config.DenyDelete = true;
      config.AllowDirect = true;
      config.Discard = js_DiscardNew;
      config.Duplicates = std::chrono::duration_cast<std::chrono::nanoseconds>(detail::kDuplicateWindow).count();
      answer = detail::sliced_request(*connection, [&](int64_t wait_ms, jsErrCode* error) {
        jsOptions options = detail::request_options(wait_ms);
        jsStreamInfo* info = nullptr;
        const natsStatus status = js_AddStream(&info, connection->jetstream(), &config, &options, error);
        found.reset(info);
        return status;
      });
      // Made by another process meanwhile, or by a try of this request whose answer was lost.
      if (answer.error == JSStreamNameExistErr) answer = look_up();
    }
    detail::check(answer.status, where() + ": binding to its bucket", answer.error);
    if (found->Config == nullptr || found->Config->MaxMsgsPerSubject < 1) {
      throw ValueError(where() + ": stream " + name_of_stream +
                       " is not a key-value bucket (it keeps no value per key)");
    }
    direct_reads = found->Config->AllowDirect;
  }

  // The key's last message (a value, or a marker), nullptr when it has none. Read from any
  // replica where the bucket allows it; a replica may lag behind the leader, so where this handle
  // wrote the key itself and the replica's answer is older than that write, read again from the
  // leader: a handle reads its own writes (others' writes, as with every NATS client's reads,
  // once the replica has them).
  OwnedMessage last_message(const std::string& key) const {
    if (!direct_reads) return read_last(key, false);
    OwnedMessage last = read_last(key, true);
    const uint64_t read = last ? natsMsg_GetSequence(last.get()) : 0;
    if (read < written_revision(key)) return read_last(key, false);
    return last;
  }

  OwnedMessage read_last(const std::string& key, bool direct) const {
    const std::string on = subject(key);
    OwnedMessage last;
    const detail::Answer answer = detail::sliced_request(*connection, [&](int64_t wait_ms, jsErrCode* error) {
      jsOptions options = detail::request_options(wait_ms);
      natsMsg* message = nullptr;
      natsStatus status;
      if (direct) {
        jsDirectGetMsgOptions which;
        jsDirectGetMsgOptions_Init(&which);
        which.LastBySubject = on.c_str();
        status = js_DirectGetMsg(&message, connection->jetstream(), stream().c_str(), &options, &which);
      } else {
        status = js_GetLastMsg(&message, connection->jetstream(), stream().c_str(), on.c_str(), &options, error);
      }
      last.reset(message);
      return status;
    });
    if (answer.status == NATS_NOT_FOUND) return nullptr;
    detail::check(answer.status, where() + ": getting '" + key + "'", answer.error);
    return last;
  }

  uint64_t written_revision(const std::string& key) const {
    std::lock_guard lock(written_mutex);
    const auto found = written.find(key);
    return found == written.end() ? 0 : found->second;
  }

  uint64_t remember_written(const std::string& key, uint64_t revision) {
    std::lock_guard lock(written_mutex);
    uint64_t& known = written[key];
    known = std::max(known, revision);
    return revision;
  }

  // Publishes `bytes` under `key`, marked with `operation` (a marker's) when not null, and
  // returns its revision. With `last`: only if the key's last message (a value or a marker) has
  // revision *last, 0: if it has none; nullopt, storing nothing, when it has another. `doing`
  // says what, for errors. Stored once whatever its tries: one Nats-Msg-Id for all of them.
  std::optional<uint64_t> publish(const std::string& key, std::span<const std::byte> bytes, const char* operation,
                                  std::optional<uint64_t> last, std::string_view doing) {
    const std::string id = detail::new_message_id();
    const std::string to = subject(key);
    jsPubOptions options;
    jsPubOptions_Init(&options);
    options.MsgId = id.c_str();
    if (last && *last == 0) options.ExpectNoMessage = true;
    if (last && *last > 0) options.ExpectLastSubjectSeq = *last;
    OwnedPubAck ack;
    bool unanswered = false;  // a try went unanswered: it may have stored the message
    const auto attempt = [&](int64_t wait_ms, jsErrCode* error) {
      natsMsg* raw = nullptr;
      natsStatus status =
          natsMsg_Create(&raw, to.c_str(), nullptr, reinterpret_cast<const char*>(bytes.data()), int(bytes.size()));
      const OwnedMessage message(raw);
      if (status == NATS_OK && operation != nullptr) status = natsMsgHeader_Set(raw, kOperationHeader, operation);
      if (status != NATS_OK) return status;
      options.MaxWait = wait_ms;
      jsPubAck* answer = nullptr;
      status = js_PublishMsg(&answer, connection->jetstream(), raw, &options, error);
      ack.reset(answer);
      unanswered = unanswered || status == NATS_TIMEOUT;
      return status;
    };
    detail::Answer answer = detail::sliced_request(*connection, attempt);
    // A second try of a stored message answers "duplicate", with the first one's revision.
    if (answer.status == NATS_OK) return remember_written(key, ack->Sequence);
    if (answer.error == JSStreamWrongLastSequenceErr && !unanswered) return std::nullopt;
    if (answer.error == JSStreamWrongLastSequenceErr) {
      // A clustered stream (nats-server 2.9) checks the expected revision before it checks for a
      // duplicate: a try after one that stored the message unseen is refused as a conflict. Ask
      // once more with the same id and, instead, an expected last message id that no stream has,
      // which JetStream checks after the duplicate: "duplicate" if stored, refused if not.
      const std::string none = id + "-none";
      options.ExpectNoMessage = false;
      options.ExpectLastSubjectSeq = 0;
      options.ExpectLastMsgId = none.c_str();
      answer = detail::sliced_request(*connection, attempt);
      if (answer.status == NATS_OK) return remember_written(key, ack->Sequence);
      if (answer.error == JSStreamWrongLastMsgIDErr) return std::nullopt;
    }
    detail::throw_status(answer.status, where() + ": " + std::string(doing) + " '" + key + "'", answer.error);
  }
};

Dict::Dict(std::shared_ptr<Connection> connection, std::string name, const DictOptions& options)
    : impl_(std::make_unique<Impl>()) {
  detail::check_name("dict", name);
  XPROC_REQUIRE(connection != nullptr, "nats: a dict needs a connection");
  XPROC_REQUIRE(options.replicas >= 1, "nats: replicas must be at least 1", options.replicas);
  impl_->connection = std::move(connection);
  impl_->name = std::move(name);
  impl_->bind(options.replicas);
}

Dict::~Dict() = default;
Dict::Dict(Dict&&) noexcept = default;
Dict& Dict::operator=(Dict&&) noexcept = default;

std::optional<Value> Dict::get(std::string_view key) const {
  auto found = entry(key);
  if (!found) return std::nullopt;
  return std::move(found->value);
}

Value Dict::at(std::string_view key) const {
  auto found = get(key);
  if (!found) throw KeyError("'" + std::string(key) + "'");
  return std::move(*found);
}

std::optional<Dict::Entry> Dict::entry(std::string_view key) const {
  check_key(key);
  const std::string k(key);
  const OwnedMessage last = impl_->last_message(k);
  if (!last || is_marker(last.get())) return std::nullopt;
  const auto* data = reinterpret_cast<const std::byte*>(natsMsg_GetData(last.get()));
  const std::span<const std::byte> bytes(data, size_t(natsMsg_GetDataLength(last.get())));
  try {
    return Entry{Value::decode(bytes), natsMsg_GetSequence(last.get())};
  } catch (const DecodeError& error) {
    throw DecodeError(impl_->where() + ": the value of '" + k + "' is not an xproc Value: " + error.what());
  }
}

uint64_t Dict::set(std::string_view key, const Value& value) {
  check_key(key);
  const auto words = value.encode();
  return *impl_->publish(std::string(key), bytes_of(words), nullptr, std::nullopt, "setting");
}

void Dict::erase(std::string_view key) {
  check_key(key);
  const std::string k(key);
  // Present, whatever its bytes: a value another program wrote can be deleted too.
  const OwnedMessage last = impl_->last_message(k);
  if (!last || is_marker(last.get())) throw KeyError("'" + k + "'");
  impl_->publish(k, {}, kDelete, std::nullopt, "deleting");
}

std::vector<std::string> Dict::keys() const {
  // As kvStore_Keys, with waits that can be sliced: an ephemeral consumer delivers the headers
  // of each key's last message to an inbox of this call, read until it has delivered as many
  // as were there at its creation; keys whose last message is a marker are deleted ones.
  Impl& d = *impl_;
  Connection& connection = *d.connection;
  const std::string prefix = d.subject("");
  const std::string filter = prefix + ">";
  OwnedSubscription inbox;
  OwnedConsumerInfo consumer;
  const detail::Answer made = detail::sliced_request(connection, [&](int64_t wait_ms, jsErrCode* error) {
    // An inbox for each try: the consumer of a try that went unanswered delivers to one that
    // nobody reads.
    inbox.reset();
    natsInbox* box = nullptr;
    natsStatus status = natsInbox_Create(&box);
    const std::string deliver = status == NATS_OK ? box : "";
    natsInbox_Destroy(box);
    natsSubscription* subscription = nullptr;
    if (status == NATS_OK) status = natsConnection_SubscribeSync(&subscription, connection.native(), deliver.c_str());
    inbox.reset(subscription);
    // Every key's headers wait here until read, however many keys.
    if (status == NATS_OK) status = natsSubscription_SetPendingLimits(subscription, -1, -1);
    if (status != NATS_OK) return status;
    jsConsumerConfig config;
    jsConsumerConfig_Init(&config);
    config.DeliverSubject = deliver.c_str();
    config.FilterSubject = filter.c_str();
    config.DeliverPolicy = js_DeliverLastPerSubject;
    config.AckPolicy = js_AckNone;
    config.HeadersOnly = true;
    config.MemoryStorage = true;
    config.Replicas = 1;
    config.InactiveThreshold = std::chrono::duration_cast<std::chrono::nanoseconds>(kListingLeftFor).count();
    jsOptions options = detail::request_options(wait_ms);
    jsConsumerInfo* info = nullptr;
    status = js_AddConsumer(&info, connection.jetstream(), d.stream().c_str(), &config, &options, error);
    consumer.reset(info);
    return status;
  });
  detail::check(made.status, d.where() + ": listing keys", made.error);

  std::vector<std::string> keys;
  // Counted as kvWatcher_Next counts: none at the consumer's creation, or as many as the first
  // message says are pending after it, plus itself (later writes come after those).
  if (consumer->NumPending + consumer->Delivered.Consumer > 0) {
    uint64_t received = 0;
    uint64_t first_pending = 0;
    auto until = Clock::now() + connection.options().request_timeout;
    for (;;) {
      detail::check_interrupt();
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
      if (left <= 0) throw TimeoutError(d.where() + ": listing keys: the server stopped sending them");
      natsMsg* raw = nullptr;
      const natsStatus status = natsSubscription_NextMsg(&raw, inbox.get(), std::min<int64_t>(left, detail::kSliceMs));
      if (status == NATS_TIMEOUT) continue;
      detail::check(status, d.where() + ": listing keys");
      const OwnedMessage message(raw);
      jsMsgMetaData* meta = nullptr;
      detail::check(natsMsg_GetMetaData(&meta, raw), d.where() + ": listing keys");
      const uint64_t pending = OwnedMetaData(meta)->NumPending;
      if (received++ == 0) first_pending = pending;
      // The inbox is a subject any client may publish to: only a subject of this bucket names a key.
      const std::string_view on(natsMsg_GetSubject(raw));
      if (on.size() > prefix.size() && on.starts_with(prefix) && !is_marker(raw)) {
        keys.emplace_back(on.substr(prefix.size()));
      }
      if (pending == 0 || received > first_pending) break;
      until = Clock::now() + connection.options().request_timeout;
    }
  }
  // One try, unchecked: a consumer left behind goes after kListingLeftFor.
  inbox.reset();
  jsOptions once = detail::request_options(detail::kSliceMs);
  js_DeleteConsumer(connection.jetstream(), d.stream().c_str(), consumer->Name, &once, nullptr);
  return keys;
}

bool Dict::compare_and_set(std::string_view key, const Value& value, uint64_t revision) {
  check_key(key);
  const auto words = value.encode();
  const auto bytes = bytes_of(words);
  const std::string k(key);
  if (impl_->publish(k, bytes, nullptr, revision, "setting")) return true;
  if (revision != 0) return false;
  // Absent, to a reader, includes deleted: its marker is then the last message.
  const OwnedMessage last = impl_->last_message(k);
  return last && is_marker(last.get()) &&
         impl_->publish(k, bytes, nullptr, natsMsg_GetSequence(last.get()), "setting").has_value();
}

int64_t Dict::increment(std::string_view key, int64_t by) {
  for (;;) {
    detail::check_interrupt();
    const std::optional<Entry> current = entry(key);
    const int64_t before = current ? current->value.as_int() : 0;
    int64_t after = 0;
    if (__builtin_add_overflow(before, by, &after)) {
      throw ValueError(impl_->where() + ": incrementing '" + std::string(key) + "' by " + std::to_string(by) +
                       " overflows 64 bits (it holds " + std::to_string(before) + ")");
    }
    if (compare_and_set(key, Value(after), current ? current->revision : 0)) return after;
  }
}

const std::string& Dict::name() const noexcept { return impl_->name; }

}  // namespace xproc::nats
