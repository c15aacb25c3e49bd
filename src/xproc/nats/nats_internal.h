// What the NATS layer's files share: libnats's statuses as xproc's errors, waits sliced so
// that the interrupt check runs, and the JetStream streams that queues and the bridge use.
#pragma once

#include <nats/nats.h>

#include <chrono>
#include <cstdint>
#include <functional>
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

// The longest slice of any wait in this layer, so that the interrupt check runs between slices.
inline constexpr int64_t kSliceMs = 100;
// Between the tries of a request refused at once for a reason that passes (no responders
// while a leader is elected, a full queue): long enough not to spin, short beside a slice.
inline constexpr auto kRetryPause = std::chrono::milliseconds(20);
// JetStream's de-duplication window for Nats-Msg-Id: its default, which the tries of one write
// (within request_timeout) must fit in.
inline constexpr std::chrono::minutes kDuplicateWindow{2};

// The point where a wait of `timeout` ends (nullopt: never), and how long the next slice of
// it may last: at most kSliceMs.
Deadline deadline_after(const Timeout& timeout);
// Milliseconds left until `deadline`, capped at the slice length; 0 once it has passed.
int64_t slice_ms(const Deadline& deadline);
bool passed(const Deadline& deadline);
// Calls the process-wide interrupt check, if any (set_wait_interrupt_check).
void check_interrupt();

// What a JetStream request came to: libnats's status and JetStream's error code (0: none).
struct Answer {
  natsStatus status = NATS_OK;
  jsErrCode error = jsErrCode(0);
};
// One JetStream request (an API call or a publish) that waits at most request_timeout, as tries
// that each wait at most kSliceMs for the answer: `attempt(wait_ms, &error)` makes one try with
// jsOptions.Wait (or jsPubOptions.MaxWait) = wait_ms, 1 to kSliceMs. A try is made again while
// unanswered (NATS_TIMEOUT), while nobody listens (NATS_NO_RESPONDERS: a leader being elected;
// after a pause) and while the stream is still storing a message of the same Nats-Msg-Id
// (JetStream 2.10's "duplicate message id is in process"); the interrupt check runs before each
// try, and what it throws ends the request. Returns the last try's answer, NATS_TIMEOUT when
// none came in time; the caller throws (throw_status) what it does not expect. Every try must
// be safe to repeat, since an unanswered one may have been done: reads, creations whose repeat
// answers "exists", publishes that carry one Nats-Msg-Id for all their tries.
Answer sliced_request(Connection& connection,
                      const std::function<natsStatus(int64_t wait_ms, jsErrCode* error)>& attempt);
// jsOptions for one try of sliced_request.
jsOptions request_options(int64_t wait_ms);
// A Nats-Msg-Id for one write and all its tries: 32 random hex digits from the kernel, so that
// forked processes do not repeat each other's.
std::string new_message_id();

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
  // JetStream's de-duplication window for Nats-Msg-Id.
  std::chrono::milliseconds duplicate_window{kDuplicateWindow};
};
// ValueError unless `name` is 1 to 200 letters, digits, '-' or '_': a queue's stream or a
// dict's bucket (`what` names which, for the message).
void check_name(std::string_view what, const std::string& name);

// Creates the stream, or finds it made already; ValueError when the one found differs in
// subject, retention or description (another program's stream of that name). Each of its
// requests as sliced_request.
void ensure_stream(Connection& connection, const StreamSpec& spec);

// Messages in the stream now (its state's count), ConnectionError/TimeoutError as above; one
// sliced_request.
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
