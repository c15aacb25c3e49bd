// The Manager's front door: the Gate each connection bootstraps, and the Manager
// capability it hands out after login.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "xproc/manager_server.h"
#include "xproc/rpc/server_core.h"

namespace xproc::rpc {

struct ServiceConfig {
  std::optional<std::string> authkey;  // none: any digest logs in
  const UserTypes& types;
  std::function<void()> stop;  // a client called shutdown
  // A connection's login succeeded or failed (after a failure the server closes it).
  std::function<void(uint64_t session_id, bool succeeded)> login_result;
};

// A Gate for one connection; its Manager acts for `session`.
schema::Gate::Client make_gate(Runtime& runtime, const ServiceConfig& config, kj::Own<Session> session);

}  // namespace xproc::rpc
