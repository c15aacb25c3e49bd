// `xproc serve --address ADDRESS [--authkey-file FILE] [--cert F --key F [--client-ca F]]
// [limits]`: runs a Manager server in the foreground until a client calls shutdown (or the
// process is stopped).
// Prints "serving on <address>" once it listens, so scripts can wait for that line.
#include "serve_command.h"

#include <ctime>
#include <iostream>

#include "authkey_file.h"
#include "local_time.h"
#include "xproc/errors.h"
#include "xproc/manager_server.h"

namespace xproc::cli {
namespace {}  // namespace

void add_serve_command(CLI::App& app) {
  auto* serve = app.add_subcommand("serve", "Run a Manager server in the foreground");
  auto options = std::make_shared<ServerOptions>();
  auto authkey_file = std::make_shared<std::string>();
  auto tls = std::make_shared<TlsServerOptions>();
  auto spin_us = std::make_shared<int64_t>(50);
  auto login_timeout_s = std::make_shared<double>(10);
  serve->footer(
      "Examples:\n"
      "  xproc serve --address /run/app/manager.sock --authkey-file key\n"
      "  xproc serve --address tls:0.0.0.0:7000 --authkey-file key --cert server.pem --key server.key\n");
  serve
      ->add_option("--address", options->address,
                   "unix:/path, /path, tls:host:port or tcp:host:port (port 0 picks one); tcp: is clear text: use "
                   "tls: for anything that leaves the machine")
      ->required();
  serve->add_option("--authkey-file", *authkey_file, "file holding the authkey (required for tls: and tcp:)")
      ->check(CLI::ExistingFile);
  serve->add_option("--cert", tls->cert_file, "tls: the server's certificate chain (PEM)")->check(CLI::ExistingFile);
  serve->add_option("--key", tls->key_file, "tls: the server's private key (PEM)")->check(CLI::ExistingFile);
  serve->add_option("--client-ca", tls->client_ca_file, "tls: require client certificates signed by this CA (PEM)")
      ->check(CLI::ExistingFile);
  serve->add_option("--allow-uid", options->allowed_uids, "unix sockets: also let this user's processes connect");
  serve->add_option("--allow-gid", options->allowed_gids, "unix sockets: also let this group's processes connect");
  serve->add_option("--max-connections", options->max_connections,
                    "connections served at once (default: a quarter of the descriptor limit)");
  serve->add_option("--login-timeout", *login_timeout_s, "seconds a connection has to log in")
      ->check(CLI::PositiveNumber);
  serve->add_option("--max-message-bytes", options->limits.max_message_bytes, "largest message a client may send");
  serve->add_option("--max-calls", options->limits.max_outstanding_calls, "calls a client may have open at once");
  serve->add_option("--max-reply-backlog", options->limits.max_queued_reply_bytes,
                    "reply bytes held for a client that does not read them");
  serve->add_option("--spin-us", *spin_us, "microseconds to poll after a call before sleeping")
      ->check(CLI::NonNegativeNumber);
  serve->callback([options, authkey_file, tls, spin_us, login_timeout_s] {
    if (!authkey_file->empty()) options->authkey = read_authkey(*authkey_file);
    if (!tls->cert_file.empty() || !tls->key_file.empty() || !tls->client_ca_file.empty()) options->tls = *tls;
    if (!options->tls && options->address.starts_with("tls:"))
      throw ValueError("a tls: address needs --cert and --key");
    options->spin = std::chrono::microseconds(*spin_us);
    options->login_timeout = std::chrono::milliseconds(static_cast<int64_t>(*login_timeout_s * 1000));
    options->log = [](const std::string& event) { log_line(event); };
    const bool clear_text = !options->address.starts_with('/') && !options->address.starts_with("unix:") &&
                            !options->address.starts_with("tls:");
    ManagerServer server(std::move(*options));
    std::cout << "serving on " << server.address() << std::endl;
    if (clear_text) {
      std::cerr << "xproc: warning: " << server.address()
                << " carries every call in clear text; use tls:host:port across machines" << std::endl;
    }
    server.serve_forever();
  });
}

}  // namespace xproc::cli
