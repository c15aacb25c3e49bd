// A connection to a NATS server or cluster with JetStream: what xproc's queues and dicts
// past one machine (nats/queue.h, nats/dict.h) and `xproc bridge` share.
//
//   auto nats = xproc::nats::connect({.servers = {"nats://10.0.0.2:4222", "nats://10.0.0.3:4222"}});
//   xproc::nats::Queue<xproc::Value> jobs(nats, "jobs", {.replicas = 3});
//
// NATS is the engine: it clusters, replicates streams, keeps work-queue acknowledgements,
// key-value revisions, TLS and credentials. This layer maps its C client (libnats) onto
// xproc's names, errors and timeouts; drop below it (native(), jetstream()) for anything
// NATS has and xproc does not say. Built only when libnats is found (XPROC_HAVE_NATS).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "xproc/timeout.h"

struct __natsConnection;
struct __jsCtx;

namespace xproc::nats {

struct Options {
  // The servers tried, in this order; a cluster's other members are learned from them.
  std::vector<std::string> servers{"nats://127.0.0.1:4222"};
  // At most one way of logging in: user and password, a token, or a credentials file
  // (.creds: a user JWT and its NKey seed, as `nsc` writes them).
  std::string user;
  std::string password;
  std::string token;
  std::string credentials_file;
  // TLS: trust these CA certificates (PEM) and require TLS; present this certificate and
  // key when the server asks for one.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // How long connect() may take in all, and each JetStream request after it.
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds request_timeout{5000};
  // After the connection is lost: reconnect forever, waiting this long between rounds of
  // the known servers (a cluster restarted as a whole comes back to the same clients).
  std::chrono::milliseconds reconnect_wait{250};
  // The name servers show for this client (monitoring, `nats server report connections`).
  std::string name = "xproc";
};

class Connection;

// Connects. ConnectionError when no server answers within connect_timeout (the message
// names the servers tried), AuthenticationError when the servers refuse the credentials,
// ValueError for options that contradict each other.
std::shared_ptr<Connection> connect(const Options& options);

// A connection and its JetStream context, shared by the queues and dicts made from it.
// Thread-safe (libnats's connection is); closed when the last holder lets go.
class Connection {
 public:
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const Options& options() const noexcept;
  // libnats's handles, owned by this Connection.
  __natsConnection* native() const noexcept;
  __jsCtx* jetstream() const noexcept;

  struct Impl;

 private:
  friend std::shared_ptr<Connection> connect(const Options& options);
  explicit Connection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// For language bindings that must stay responsive while a NATS call waits (Ctrl-C in
// Python): `check` is called at least every 100 ms of every wait in this layer; what it
// throws ends the wait and reaches the caller. nullptr turns it off. Process-wide.
void set_wait_interrupt_check(void (*check)());

}  // namespace xproc::nats
