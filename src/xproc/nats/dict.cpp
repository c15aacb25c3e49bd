// Dict: a JetStream key-value bucket holding xproc Values as their Cap'n Proto bytes, with
// compare-and-set on the bucket's per-key revisions.
#include "xproc/nats/dict.h"

#include <algorithm>
#include <cstring>

#include "xproc/nats/nats_internal.h"

namespace xproc::nats {

namespace {

// The header libnats and every other NATS client mark deletes and purges with.
constexpr const char* kOperationHeader = "KV-Operation";

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

struct EntryHandle {
  kvEntry* entry = nullptr;
  ~EntryHandle() { kvEntry_Destroy(entry); }
};

struct MessageHandle {
  natsMsg* message = nullptr;
  ~MessageHandle() { natsMsg_Destroy(message); }
};

std::span<const std::byte> bytes_of(const kj::Array<capnp::word>& words) {
  return std::as_bytes(std::span(words.begin(), words.size()));
}

}  // namespace

struct Dict::Impl {
  std::shared_ptr<Connection> connection;
  std::string name;
  kvStore* kv = nullptr;

  ~Impl() { kvStore_Destroy(kv); }

  std::string where() const { return "nats: dict " + name; }
  // The bucket's stream and a key's subject, as every NATS client names them.
  std::string stream() const { return "KV_" + name; }
  std::string subject(std::string_view key) const { return "$KV." + name + "." + std::string(key); }

  // Publishes `bytes` under `key` if the key's last message (a value or a delete marker) has
  // revision `last`, 0: if the key has no message at all. False when it has another. Done
  // here rather than with kvStore_Update, which keeps JetStream's error code to itself.
  bool publish_expecting(std::string_view key, std::span<const std::byte> bytes, uint64_t last) {
    jsPubOptions expect;
    jsPubOptions_Init(&expect);
    if (last == 0) {
      expect.ExpectNoMessage = true;
    } else {
      expect.ExpectLastSubjectSeq = last;
    }
    jsErrCode error = jsErrCode(0);
    const natsStatus status = js_Publish(nullptr, connection->jetstream(), subject(key).c_str(), bytes.data(),
                                         int(bytes.size()), &expect, &error);
    if (status == NATS_OK) return true;
    if (error == JSStreamWrongLastSequenceErr) return false;
    detail::throw_status(status, where() + ": setting '" + std::string(key) + "'", error);
  }

  // The revision of the delete or purge marker that is the key's last message, if it is.
  std::optional<uint64_t> deleted_revision(std::string_view key) {
    MessageHandle last;
    jsErrCode error = jsErrCode(0);
    const natsStatus status =
        js_GetLastMsg(&last.message, connection->jetstream(), stream().c_str(), subject(key).c_str(), nullptr, &error);
    if (status == NATS_NOT_FOUND) return std::nullopt;
    detail::check(status, where() + ": reading '" + std::string(key) + "'", error);
    const char* operation = nullptr;
    if (natsMsgHeader_Get(last.message, kOperationHeader, &operation) != NATS_OK || operation == nullptr) {
      return std::nullopt;
    }
    return natsMsg_GetSequence(last.message);
  }
};

Dict::Dict(std::shared_ptr<Connection> connection, std::string name, const DictOptions& options)
    : impl_(std::make_unique<Impl>()) {
  detail::check_name("dict", name);
  XPROC_REQUIRE(connection != nullptr, "nats: a dict needs a connection");
  XPROC_REQUIRE(options.replicas >= 1, "nats: replicas must be at least 1", options.replicas);
  impl_->connection = std::move(connection);
  impl_->name = std::move(name);
  jsCtx* js = impl_->connection->jetstream();
  natsStatus status = js_KeyValue(&impl_->kv, js, impl_->name.c_str());
  if (status == NATS_NOT_FOUND) {
    kvConfig config;
    kvConfig_Init(&config);
    config.Bucket = impl_->name.c_str();
    config.History = 1;
    config.Replicas = options.replicas;
    // Made by another process meanwhile: libnats binds to it when its settings are these.
    status = js_CreateKeyValue(&impl_->kv, js, &config);
  }
  detail::check(status, impl_->where() + ": binding to its bucket");
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
  EntryHandle found;
  const std::string k(key);
  const natsStatus status = kvStore_Get(&found.entry, impl_->kv, k.c_str());
  if (status == NATS_NOT_FOUND) return std::nullopt;
  detail::check(status, impl_->where() + ": getting '" + k + "'");
  if (kvEntry_Operation(found.entry) != kvOp_Put) return std::nullopt;
  const auto* data = static_cast<const std::byte*>(kvEntry_Value(found.entry));
  const std::span<const std::byte> bytes(data, size_t(kvEntry_ValueLen(found.entry)));
  try {
    return Entry{Value::decode(bytes), kvEntry_Revision(found.entry)};
  } catch (const DecodeError& error) {
    throw DecodeError(impl_->where() + ": the value of '" + k + "' is not an xproc Value: " + error.what());
  }
}

uint64_t Dict::set(std::string_view key, const Value& value) {
  check_key(key);
  const auto words = value.encode();
  const auto bytes = bytes_of(words);
  const std::string k(key);
  uint64_t revision = 0;
  detail::check(kvStore_Put(&revision, impl_->kv, k.c_str(), bytes.data(), int(bytes.size())),
                impl_->where() + ": setting '" + k + "'");
  return revision;
}

void Dict::erase(std::string_view key) {
  check_key(key);
  const std::string k(key);
  // Present, whatever its bytes: a value another program wrote can be deleted too.
  EntryHandle found;
  const natsStatus status = kvStore_Get(&found.entry, impl_->kv, k.c_str());
  if (status == NATS_NOT_FOUND || (status == NATS_OK && kvEntry_Operation(found.entry) != kvOp_Put)) {
    throw KeyError("'" + k + "'");
  }
  detail::check(status, impl_->where() + ": getting '" + k + "'");
  detail::check(kvStore_Delete(impl_->kv, k.c_str()), impl_->where() + ": deleting '" + k + "'");
}

std::vector<std::string> Dict::keys() const {
  kvKeysList list{};
  const natsStatus status = kvStore_Keys(&list, impl_->kv, nullptr);
  if (status == NATS_NOT_FOUND) return {};
  detail::check(status, impl_->where() + ": listing keys");
  std::vector<std::string> keys(list.Keys, list.Keys + list.Count);
  kvKeysList_Destroy(&list);
  return keys;
}

bool Dict::compare_and_set(std::string_view key, const Value& value, uint64_t revision) {
  check_key(key);
  const auto words = value.encode();
  const auto bytes = bytes_of(words);
  if (impl_->publish_expecting(key, bytes, revision)) return true;
  if (revision != 0) return false;
  // Absent, to a reader, includes deleted: its delete marker is then the last message.
  const std::optional<uint64_t> marker = impl_->deleted_revision(key);
  return marker && impl_->publish_expecting(key, bytes, *marker);
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
