// See bridge_command.h. Prints "bridge: ... running" once connected and set up (scripts wait
// for that line), a stats line every --stats-interval seconds, and the totals when it stops.
// SIGINT and SIGTERM stop it after the message in hand (exit status 0); an error stops it
// with one line on stderr (exit status 1).
#include "bridge_command.h"

#include <csignal>
#include <cstdlib>

#include <atomic>
#include <chrono>
#include <ctime>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "local_time.h"
#include "xproc/errors.h"
#include "xproc/nats/bridge.h"
#include "xproc/nats/connection.h"

namespace xproc::cli {
namespace {

// Set by SIGINT and SIGTERM; the bridge checks it between slices of its waits.
std::atomic<bool> stop_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");

extern "C" void request_stop(int) { stop_requested.store(true); }

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  for (int signal : {SIGINT, SIGTERM}) sigaction(signal, &action, nullptr);
}

struct ServerOptions {
  std::vector<std::string> servers;
  std::string user;
  std::string password;
  std::string credentials_file;
  std::string ca_file;
  double connect_timeout = 2;
  double stats_interval = 60;
};

std::shared_ptr<nats::Connection> connect(const ServerOptions& options, const std::string& name) {
  if (!(options.connect_timeout > 0 && options.connect_timeout <= 3600)) {
    throw ValueError("--connect-timeout takes 0 to 3600 seconds");
  }
  nats::Options o;
  o.servers = options.servers;
  o.user = options.user;
  o.password = options.password;
  if (!o.user.empty() && o.password.empty()) {
    if (const char* password = std::getenv("XPROC_NATS_PASSWORD")) o.password = password;
  }
  o.credentials_file = options.credentials_file;
  o.ca_file = options.ca_file;
  o.connect_timeout = std::chrono::milliseconds(int64_t(options.connect_timeout * 1000));
  o.name = name;
  return nats::connect(o);
}

// Runs `bridge` until a signal stops it, logging its stats meanwhile; the totals are printed
// whether it stops or fails.
template <typename Bridge>
void run(Bridge& bridge, const ServerOptions& options) {
  std::atomic<bool> finished{false};
  std::thread stats_logger;
  if (options.stats_interval > 0) {
    stats_logger = std::thread([&] {
      const auto every = std::chrono::duration<double>(options.stats_interval);
      auto next = std::chrono::steady_clock::now() + every;
      while (!finished.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (std::chrono::steady_clock::now() < next) continue;
        log_line("bridge: " + nats::stats_line(bridge.stats()));
        next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(every);
      }
    });
  }
  auto finish = [&](const char* how) {
    finished.store(true);
    if (stats_logger.joinable()) stats_logger.join();
    log_line(std::string("bridge: ") + how + "; " + nats::stats_line(bridge.stats()));
  };
  try {
    bridge.run(stop_requested);
  } catch (...) {
    finish("failed");
    throw;
  }
  finish("stopped");
}

void add_server_options(CLI::App& command, ServerOptions& options) {
  command.add_option("--servers", options.servers, "NATS server URLs, comma-separated (nats://host:4222, tls://...)")
      ->delimiter(',')
      ->required();
  command.add_option("--user", options.user, "user name to log in with");
  command.add_option("--password", options.password,
                     "password of --user (default: the XPROC_NATS_PASSWORD environment variable, which other users' "
                     "ps cannot show)");
  command.add_option("--creds", options.credentials_file, "credentials file (.creds: user JWT and NKey seed)")
      ->check(CLI::ExistingFile);
  command.add_option("--ca", options.ca_file, "require TLS and trust these CA certificates (PEM)")
      ->check(CLI::ExistingFile);
  command.add_option("--connect-timeout", options.connect_timeout,
                     "seconds to reach a server at start (default 2); once running, a lost cluster is waited for");
  command.add_option("--stats-interval", options.stats_interval,
                     "seconds between stats lines (default 60; 0: only the totals at the end)");
}

}  // namespace

void add_bridge_command(CLI::App& app) {
  auto* command = app.add_subcommand("bridge", "forward a named queue to NATS JetStream, or a stream into a queue");
  command->require_subcommand(1);
  command->footer(
      "`out` publishes a local queue's messages on a JetStream subject and removes each once the stream has stored "
      "it; `in` puts a stream's messages into a local queue through a durable consumer and acknowledges each once "
      "it is in the queue. Messages keep their Cap'n Proto bytes and carry the queue's schema id. Each runs until "
      "SIGINT or SIGTERM.\n\n"
      "Examples:\n"
      "  xproc bridge out orders --subject orders.eu --replicas 3 --servers nats://10.0.0.2:4222,nats://10.0.0.3:4222\n"
      "  xproc bridge in orders --stream orders_eu --consumer warehouse --servers nats://10.0.0.2:4222\n");

  auto out_options = std::make_shared<nats::BridgeOutOptions>();
  auto out_servers = std::make_shared<ServerOptions>();
  auto* out = command->add_subcommand("out", "publish a named queue's messages on a JetStream subject");
  out->footer(
      "The bridge must be the queue's only consumer. A message leaves the queue once the stream has stored it; a "
      "bridge killed in between republishes it under the same message id, and the stream drops the copy "
      "(within its de-duplication window, 2 minutes). The stream (limits retention, so that any number of "
      "consumers may read it) is created unless --stream-exists.\n\n"
      "Examples:\n"
      "  xproc bridge out orders --subject orders.eu --servers nats://10.0.0.2:4222\n"
      "  xproc bridge out orders --subject orders.eu --stream ORDERS --replicas 3 \\\n"
      "      --servers nats://10.0.0.2:4222,nats://10.0.0.3:4222,nats://10.0.0.4:4222 --user bridge\n"
      "  xproc bridge out metrics --subject metrics.host7 --stream METRICS --stream-exists --creds bridge.creds \\\n"
      "      --ca ca.pem --servers tls://nats.example.com:4222\n");
  out->add_option("QUEUE", out_options->queue, "the local queue's name (without the xproc. prefix)")->required();
  out->add_option("--subject", out_options->subject, "the subject to publish on")->required();
  out->add_option("--stream", out_options->stream, "the stream's name (default: the subject, '.' as '_')");
  out->add_option("--replicas", out_options->replicas, "copies of the stream in the cluster, when created (default 1)")
      ->check(CLI::Range(1, 5));
  auto stream_exists = std::make_shared<bool>(false);
  out->add_flag("--stream-exists", *stream_exists, "the stream exists (made by an operator): use it as it is");
  add_server_options(*out, *out_servers);
  out->callback([out_options, out_servers, stream_exists] {
    install_stop_handlers();
    out_options->create_stream = !*stream_exists;
    out_options->log = log_line;
    auto connection = connect(*out_servers, "xproc bridge out " + out_options->queue);
    nats::BridgeOut bridge(connection, *out_options);
    log_line("bridge: " + out_options->queue + " -> " + out_options->subject + " (stream " + bridge.stream() +
             ") running");
    run(bridge, *out_servers);
  });

  auto in_options = std::make_shared<nats::BridgeInOptions>();
  auto in_servers = std::make_shared<ServerOptions>();
  auto ack_wait = std::make_shared<double>(30);
  auto* in = command->add_subcommand("in", "put a JetStream stream's messages into a named queue");
  in->footer(
      "Reads through the durable pull consumer --consumer (created when absent: explicit acknowledgements, from "
      "the stream's first message), which the bridge must be the only client of. Each message's schema id must be "
      "the queue's: another stops the bridge with an error, the message left in the stream. A full queue (its "
      "maxsize) holds the stream back. At least once, in stream order: a bridge killed between a put and its "
      "acknowledgement leaves that message to be put again by the next bridge; the messages it had fetched and "
      "not put come again after --ack-wait, and the next bridge waits for them.\n\n"
      "Examples:\n"
      "  xproc bridge in orders --stream orders_eu --consumer warehouse --servers nats://10.0.0.2:4222\n"
      "  XPROC_NATS_PASSWORD=... xproc bridge in orders --stream ORDERS --consumer eu-1 --batch 16 --ack-wait 60 \\\n"
      "      --user bridge --servers nats://10.0.0.2:4222,nats://10.0.0.3:4222\n");
  in->add_option("QUEUE", in_options->queue, "the local queue's name (without the xproc. prefix)")->required();
  in->add_option("--stream", in_options->stream, "the stream to read")->required();
  in->add_option("--consumer", in_options->consumer, "the durable consumer's name")->required();
  in->add_option("--batch", in_options->batch, "messages fetched at once (default 64)")->check(CLI::Range(1, 10000));
  in->add_option("--ack-wait", *ack_wait,
                 "seconds before an unacknowledged message is delivered again, for a consumer created here "
                 "(default 30)")
      ->check(CLI::Range(1.0, 86400.0));
  add_server_options(*in, *in_servers);
  in->callback([in_options, in_servers, ack_wait] {
    install_stop_handlers();
    in_options->ack_wait = std::chrono::milliseconds(int64_t(*ack_wait * 1000));
    in_options->log = log_line;
    auto connection = connect(*in_servers, "xproc bridge in " + in_options->queue);
    nats::BridgeIn bridge(connection, *in_options);
    log_line("bridge: " + in_options->stream + "/" + in_options->consumer + " -> " + in_options->queue + " running");
    run(bridge, *in_servers);
  });
}

}  // namespace xproc::cli
