// See tls.h.
#include "xproc/rpc/tls.h"

#include <fstream>
#include <sstream>

#include <kj/debug.h>

#include "xproc/errors.h"
#include "xproc/kj_errors_internal.h"

namespace xproc::rpc {
namespace {

std::string read_pem(const std::string& path, const char* what) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw ValueError(std::string("cannot read the TLS ") + what + " file '" + path + "'");
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// Runs `make`, turning kj's complaint about a PEM file into ValueError.
template <typename Make>
auto parsed(Make&& make) {
  try {
    return make();
  } catch (const kj::Exception& e) {
    detail::rethrow_kj(e, ErrorKind::kValueError, "a TLS certificate or key cannot be used: ");
  }
}

}  // namespace

ServerTlsFiles ServerTlsFiles::read(const TlsServerOptions& options) {
  if (options.cert_file.empty() || options.key_file.empty()) {
    throw ValueError("a Manager listening on TLS needs a certificate and a key");
  }
  ServerTlsFiles files{read_pem(options.cert_file, "certificate"), read_pem(options.key_file, "key"),
                       options.client_ca_file.empty() ? "" : read_pem(options.client_ca_file, "client CA")};
  parsed([&] {
    kj::TlsCertificate parsed_cert(files.cert);
    kj::TlsPrivateKey parsed_key(files.key);
    if (!files.client_ca.empty()) kj::TlsCertificate parsed_ca(files.client_ca);
    return 0;
  });
  return files;
}

kj::Own<TlsSetup> server_tls(const ServerTlsFiles& files, kj::Timer& timer, kj::Duration handshake_timeout) {
  auto setup = kj::heap<TlsSetup>();
  kj::TlsContext::Options options;
  options.defaultKeypair =
      setup->keypair.emplace(kj::TlsKeypair{kj::TlsPrivateKey(files.key), kj::TlsCertificate(files.cert)});
  if (!files.client_ca.empty()) {
    setup->trusted.add(kj::TlsCertificate(files.client_ca));
    options.verifyClients = true;
    options.useSystemTrustStore = false;
    options.trustedCertificates = setup->trusted.asPtr();
  }
  options.timer = timer;
  options.acceptTimeout = handshake_timeout;
  setup->context = kj::heap<kj::TlsContext>(kj::mv(options));
  return setup;
}

kj::Own<TlsSetup> client_tls(const TlsClientOptions& tls) {
  auto setup = kj::heap<TlsSetup>();
  kj::TlsContext::Options options;
  if (!tls.ca_file.empty()) {
    setup->trusted.add(parsed([&] { return kj::TlsCertificate(read_pem(tls.ca_file, "CA")); }));
    options.useSystemTrustStore = false;
    options.trustedCertificates = setup->trusted.asPtr();
  }
  if (!tls.cert_file.empty() || !tls.key_file.empty()) {
    options.defaultKeypair = setup->keypair.emplace(parsed([&] {
      return kj::TlsKeypair{kj::TlsPrivateKey(read_pem(tls.key_file, "key")),
                            kj::TlsCertificate(read_pem(tls.cert_file, "certificate"))};
    }));
  }
  setup->context = kj::heap<kj::TlsContext>(kj::mv(options));
  return setup;
}

}  // namespace xproc::rpc
