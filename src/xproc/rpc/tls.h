// TLS for the Manager on kj's TlsContext (kj/compat/tls.h, over OpenSSL): the server's
// context and a client's, made from the options users give (tls_options.h).
#pragma once

#include <string>

#include <kj/compat/tls.h>
#include <kj/timer.h>
#include <kj/vector.h>

#include "xproc/tls_options.h"

namespace xproc::rpc {

// The PEM text of TlsServerOptions' files, read and parsed when a server is made, so that a
// bad file is an error then (ValueError naming it), not at the first client.
struct ServerTlsFiles {
  std::string cert;
  std::string key;
  std::string client_ca;  // empty: clients need no certificate
  static ServerTlsFiles read(const TlsServerOptions& options);
};

// A context with the key pair and certificates it refers to (kj's context holds references
// to them, so they live as long as it does).
struct TlsSetup {
  kj::Vector<kj::TlsCertificate> trusted;
  kj::Maybe<kj::TlsKeypair> keypair;
  kj::Own<kj::TlsContext> context;
};

// The server's: its certificate and key; with a client CA, every client must present a
// certificate that CA signed. A handshake not done within `handshake_timeout` fails.
kj::Own<TlsSetup> server_tls(const ServerTlsFiles& files, kj::Timer& timer, kj::Duration handshake_timeout);

// A client's: trusts ca_file's CAs (or the system's when empty) and presents cert_file and
// key_file when given. ValueError when a file cannot be read or parsed.
kj::Own<TlsSetup> client_tls(const TlsClientOptions& options);

}  // namespace xproc::rpc
