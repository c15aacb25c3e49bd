#include "xproc/nats/connection.h"

#include <sys/random.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <thread>

#include "xproc/errors.h"
#include "xproc/nats/nats_internal.h"
#include "xproc/syscall_internal.h"

namespace xproc::nats {

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<void (*)()> interrupt_check{nullptr};

// JetStream's "duplicate message id is in process" (JSStreamDuplicateMessageConflict, 2.10+;
// libnats 3.4 has no name for it): a try of a write whose earlier try is still being stored.
constexpr int kDuplicateInProcess = 10158;

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// libnats's options, destroyed on every path.
struct OptionsHandle {
  natsOptions* options = nullptr;
  ~OptionsHandle() { natsOptions_Destroy(options); }
};

}  // namespace

struct Connection::Impl {
  Options options;
  natsConnection* connection = nullptr;
  jsCtx* jetstream = nullptr;
  ~Impl() {
    jsCtx_Destroy(jetstream);
    if (connection != nullptr) {
      // Publishes acknowledged already; what is buffered goes out before the close.
      natsConnection_FlushTimeout(connection, 1000);
      natsConnection_Destroy(connection);
    }
  }
};

Connection::Connection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Connection::~Connection() = default;
const Options& Connection::options() const noexcept { return impl_->options; }
natsConnection* Connection::native() const noexcept { return impl_->connection; }
jsCtx* Connection::jetstream() const noexcept { return impl_->jetstream; }

std::shared_ptr<Connection> connect(const Options& options) {
  if (options.servers.empty()) throw ValueError("nats: no server to connect to");
  const int logins = int(!options.user.empty()) + int(!options.token.empty()) + int(!options.credentials_file.empty());
  if (logins > 1) throw ValueError("nats: give at most one of user/password, token and credentials_file");
  if (options.cert_file.empty() != options.key_file.empty()) {
    throw ValueError("nats: a client certificate needs both cert_file and key_file");
  }
  if (options.connect_timeout.count() <= 0 || options.request_timeout.count() <= 0) {
    throw ValueError("nats: connect_timeout and request_timeout must be positive");
  }

  OptionsHandle handle;
  detail::check(natsOptions_Create(&handle.options), "nats: options");
  natsOptions* o = handle.options;
  std::vector<const char*> servers;
  for (const auto& server : options.servers) servers.push_back(server.c_str());
  detail::check(natsOptions_SetServers(o, servers.data(), int(servers.size())), "nats: servers");
  detail::check(natsOptions_SetNoRandomize(o, true), "nats: server order");
  detail::check(natsOptions_SetName(o, options.name.c_str()), "nats: name");
  // Each server gets the whole budget's share; a cluster of three tried in turn stays
  // within connect_timeout.
  const int64_t per_server = std::max<int64_t>(100, options.connect_timeout.count() / int64_t(servers.size()));
  detail::check(natsOptions_SetTimeout(o, per_server), "nats: timeout");
  detail::check(natsOptions_SetAllowReconnect(o, true), "nats: reconnect");
  detail::check(natsOptions_SetMaxReconnect(o, -1), "nats: reconnect");
  detail::check(natsOptions_SetReconnectWait(o, options.reconnect_wait.count()), "nats: reconnect wait");
  if (!options.user.empty()) {
    detail::check(natsOptions_SetUserInfo(o, options.user.c_str(), options.password.c_str()), "nats: user");
  }
  if (!options.token.empty()) detail::check(natsOptions_SetToken(o, options.token.c_str()), "nats: token");
  if (!options.credentials_file.empty()) {
    detail::check(natsOptions_SetUserCredentialsFromFiles(o, options.credentials_file.c_str(), nullptr),
                  "nats: credentials file " + options.credentials_file);
  }
  if (!options.ca_file.empty()) {
    detail::check(natsOptions_SetSecure(o, true), "nats: TLS");
    detail::check(natsOptions_LoadCATrustedCertificates(o, options.ca_file.c_str()),
                  "nats: CA certificates " + options.ca_file);
  }
  if (!options.cert_file.empty()) {
    detail::check(natsOptions_LoadCertificatesChain(o, options.cert_file.c_str(), options.key_file.c_str()),
                  "nats: client certificate " + options.cert_file);
  }

  auto impl = std::make_unique<Connection::Impl>();
  impl->options = options;
  const natsStatus connected = natsConnection_Connect(&impl->connection, o);
  if (connected != NATS_OK) detail::throw_status(connected, "nats: connecting to " + joined(options.servers));
  jsOptions js_options;
  detail::check(jsOptions_Init(&js_options), "nats: JetStream options");
  js_options.Wait = options.request_timeout.count();
  detail::check(natsConnection_JetStream(&impl->jetstream, impl->connection, &js_options), "nats: JetStream");
  return std::shared_ptr<Connection>(new Connection(std::move(impl)));
}

void set_wait_interrupt_check(void (*check)()) { interrupt_check.store(check); }

namespace detail {

std::string status_text(natsStatus status, jsErrCode js_error) {
  std::string text = natsStatus_GetText(status);
  natsStatus last = NATS_OK;
  const char* detail = nats_GetLastError(&last);
  // libnats's last error often restates the status after a "(file.c:line): " prefix.
  if (detail != nullptr && *detail != '\0' && std::strstr(detail, text.c_str()) == nullptr) {
    text += std::string(" (") + detail + ")";
  }
  if (js_error != 0) text += " [JetStream error " + std::to_string(int(js_error)) + "]";
  return text;
}

void throw_status(natsStatus status, std::string_view what, jsErrCode js_error) {
  const std::string message = std::string(what) + ": " + status_text(status, js_error);
  switch (status) {
    case NATS_TIMEOUT: throw TimeoutError(message);
    case NATS_CONNECTION_AUTH_FAILED:
    case NATS_NOT_PERMITTED: throw AuthenticationError(message);
    case NATS_NO_SERVER:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_STALE_CONNECTION:
    case NATS_SSL_ERROR:
    case NATS_IO_ERROR:
    case NATS_NO_RESPONDERS: throw ConnectionError(message);
    case NATS_INVALID_ARG: throw ValueError(message);
    case NATS_MAX_PAYLOAD: throw MessageTooLarge(message);
    default: throw RuntimeError(message);
  }
}

Deadline deadline_after(const Timeout& timeout) {
  if (!timeout) return std::nullopt;
  if (timeout->count() < 0) throw ValueError("'timeout' must be a non-negative number");
  return std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(*timeout);
}

int64_t slice_ms(const Deadline& deadline) {
  if (!deadline) return kSliceMs;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
  return std::clamp<int64_t>(left.count(), 0, kSliceMs);
}

bool passed(const Deadline& deadline) { return deadline && std::chrono::steady_clock::now() >= *deadline; }

void check_interrupt() {
  if (auto check = interrupt_check.load()) check();
}

Answer sliced_request(Connection& connection,
                      const std::function<natsStatus(int64_t wait_ms, jsErrCode* error)>& attempt) {
  const auto until = Clock::now() + connection.options().request_timeout;
  for (;;) {
    check_interrupt();
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    Answer answer;
    // Never 0: libnats reads a wait of 0 as "the context's default".
    answer.status = attempt(std::clamp<int64_t>(left, 1, kSliceMs), &answer.error);
    const bool unanswered = answer.status == NATS_TIMEOUT;
    const bool again = unanswered || answer.status == NATS_NO_RESPONDERS || int(answer.error) == kDuplicateInProcess;
    if (!again || Clock::now() >= until) return answer;
    if (!unanswered) std::this_thread::sleep_for(std::min<Clock::duration>(kRetryPause, until - Clock::now()));
  }
}

jsOptions request_options(int64_t wait_ms) {
  jsOptions options;
  jsOptions_Init(&options);
  options.Wait = wait_ms;
  return options;
}

std::string new_message_id() {
  uint8_t bits[16];
  const ssize_t got = xproc::detail::retry_syscall("getrandom", [&] { return ::getrandom(bits, sizeof(bits), 0); });
  if (got != ssize_t(sizeof(bits))) throw RuntimeError("nats: getrandom returned too few bytes for a message id");
  std::string id;
  for (const uint8_t bit : bits) {
    constexpr const char* kHex = "0123456789abcdef";
    id += kHex[bit >> 4];
    id += kHex[bit & 0xf];
  }
  return id;
}

namespace {

struct StreamInfo {
  jsStreamInfo* info = nullptr;
  ~StreamInfo() { jsStreamInfo_Destroy(info); }
};

}  // namespace

void ensure_stream(Connection& connection, const StreamSpec& spec) {
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  const char* subjects[] = {spec.subject.c_str()};
  config.Name = spec.name.c_str();
  config.Description = spec.description.c_str();
  config.Subjects = subjects;
  config.SubjectsLen = 1;
  config.Retention = spec.work_queue ? js_WorkQueuePolicy : js_LimitsPolicy;
  config.MaxMsgs = spec.max_msgs > 0 ? spec.max_msgs : -1;
  config.Discard = js_DiscardNew;
  config.Storage = js_FileStorage;
  config.Replicas = spec.replicas;
  config.Duplicates = std::chrono::duration_cast<std::chrono::nanoseconds>(spec.duplicate_window).count();

  StreamInfo found;
  const Answer made = sliced_request(connection, [&](int64_t wait_ms, jsErrCode* error) {
    jsOptions options = request_options(wait_ms);
    return js_AddStream(&found.info, connection.jetstream(), &config, &options, error);
  });
  if (made.status == NATS_OK) return;
  // Made already (by another process, by this one earlier, or by a try of this call whose
  // answer was lost): the same stream, or a refusal naming what differs.
  if (made.error != JSStreamNameExistErr) throw_status(made.status, "nats: creating stream " + spec.name, made.error);
  StreamInfo existing;
  const Answer looked_up = sliced_request(connection, [&](int64_t wait_ms, jsErrCode* error) {
    jsOptions options = request_options(wait_ms);
    return js_GetStreamInfo(&existing.info, connection.jetstream(), spec.name.c_str(), &options, error);
  });
  check(looked_up.status, "nats: stream " + spec.name, looked_up.error);
  const jsStreamConfig* have = existing.info->Config;
  const bool same_subject = have->SubjectsLen == 1 && spec.subject == have->Subjects[0];
  const bool same_retention = have->Retention == config.Retention;
  const std::string description = have->Description != nullptr ? have->Description : "";
  if (!same_subject || !same_retention || description != spec.description) {
    throw ValueError("nats: stream " + spec.name + " exists with another configuration (subject " +
                     (have->SubjectsLen > 0 ? std::string(have->Subjects[0]) : std::string("none")) +
                     ", description '" + description + "'); expected subject " + spec.subject + ", description '" +
                     spec.description + "'");
  }
}

uint64_t stream_messages(Connection& connection, const std::string& stream) {
  StreamInfo info;
  const Answer answer = sliced_request(connection, [&](int64_t wait_ms, jsErrCode* error) {
    jsOptions options = request_options(wait_ms);
    return js_GetStreamInfo(&info.info, connection.jetstream(), stream.c_str(), &options, error);
  });
  check(answer.status, "nats: stream " + stream, answer.error);
  return info.info->State.Msgs;
}

std::optional<uint64_t> schema_id_of(natsMsg* message) {
  const char* value = nullptr;
  if (natsMsgHeader_Get(message, kSchemaIdHeader, &value) != NATS_OK || value == nullptr) return std::nullopt;
  if (std::strlen(value) != 18 || value[0] != '0' || value[1] != 'x') return std::nullopt;
  uint64_t id = 0;
  for (const char* c = value + 2; *c != '\0'; ++c) {
    int digit;
    if (*c >= '0' && *c <= '9')
      digit = *c - '0';
    else if (*c >= 'a' && *c <= 'f')
      digit = *c - 'a' + 10;
    else
      return std::nullopt;
    id = id << 4 | uint64_t(digit);
  }
  return id;
}

}  // namespace detail
}  // namespace xproc::nats
