// What the NATS layer's files share: libnats's statuses as xproc's errors, waits sliced so
// that the interrupt check runs, and the JetStream streams that queues and the bridge use.
#pragma once

#include <nats/nats.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "xproc/nats/connection.h"
#include "xproc/timeout.h"

namespace xproc::nats::detail {

// libnats's text for `status`, its last error's text when that says more, and the
// JetStream error code when not 0: what errors and the bridge's log lines say.
std::string status_text(natsStatus status, jsErrCode js_error = jsErrCode(0));
// [[noreturn]]: the xproc error for a failed libnats call: TimeoutError (NATS_TIMEOUT),
// AuthenticationError (refused credentials or permissions), ConnectionError (no server,
// connection closed or lost), else RuntimeError. `what` says what was attempted; libnats's
// own last error text and the JetStream error code (when not 0) are appended.
[[noreturn]] void throw_status(natsStatus status, std::string_view what, jsErrCode js_error = jsErrCode(0));
// Throws as above unless `status` is NATS_OK.
inline void check(natsStatus status, std::string_view what, jsErrCode js_error = jsErrCode(0)) {
  if (status != NATS_OK) throw_status(status, what, js_error);
}

// The point where a wait of `timeout` ends (nullopt: never), and how long the next slice of
// it may last: at most 100 ms, so that the interrupt check runs between slices.
Deadline deadline_after(const Timeout& timeout);
// Milliseconds left until `deadline`, capped at the slice length; 0 once it has passed.
int64_t slice_ms(const Deadline& deadline);
bool passed(const Deadline& deadline);
// Calls the process-wide interrupt check, if any (set_wait_interrupt_check).
void check_interrupt();

// A stream as xproc makes it: `subject` its one subject, `replicas` copies in the cluster,
// work-queue retention (a message leaves when acknowledged) or limits retention (it stays
// until the limits say), at most `max_msgs` messages (0: no limit) with new messages refused
// when full, a `description` xproc checks on open (it carries the schema id).
struct StreamSpec {
  std::string name;
  std::string subject;
  int replicas = 1;
  bool work_queue = true;
  int64_t max_msgs = 0;
  std::string description;
  // JetStream's de-duplication window for Nats-Msg-Id (JetStream's default is 2 minutes).
  std::chrono::milliseconds duplicate_window{std::chrono::minutes(2)};
};
// ValueError unless `name` is 1 to 200 letters, digits, '-' or '_': a queue's stream or a
// dict's bucket (`what` names which, for the message).
void check_name(std::string_view what, const std::string& name);

// Creates the stream, or finds it made already; ValueError when the one found differs in
// subject, retention or description (another program's stream of that name).
void ensure_stream(Connection& connection, const StreamSpec& spec);

// Messages in the stream now (its state's count), ConnectionError/TimeoutError as above.
uint64_t stream_messages(Connection& connection, const std::string& stream);

// The headers xproc sets on every message it publishes: the Cap'n Proto schema id of the
// message's root ("0x" + 16 hex digits, as schema_id_hex writes it; 0x0000000000000000
// for raw bytes), checked by every reader against the schema it expects.
inline constexpr const char* kSchemaIdHeader = "Xproc-Schema-Id";
// JetStream's own de-duplication header.
inline constexpr const char* kMessageIdHeader = "Nats-Msg-Id";

// The schema id a message carries, nullopt when the header is missing or not 0x + 16 hex.
std::optional<uint64_t> schema_id_of(natsMsg* message);

}  // namespace xproc::nats::detail
