// TLS for a Manager on a "tls:host:port" address: what the server presents and what a
// client checks. Certificates and keys are PEM files. (TLS runs on kj's TlsContext, over
// OpenSSL.)
#pragma once

#include <string>

namespace xproc {

// The server's side: its certificate (a chain: the server's first) and private key; with
// client_ca_file, a client must present a certificate that CA signed.
struct TlsServerOptions {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
};

// A client's side: the server's certificate must chain to ca_file's CAs (empty: the
// system's trusted CAs) and name server_name (empty: the host of the address; a DNS name,
// as certificates carry them). With cert_file and key_file the client presents its own.
struct TlsClientOptions {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string server_name;
};

}  // namespace xproc
