// Implementation of auth.h with OpenSSL's EVP_Q_mac, RAND_bytes and CRYPTO_memcmp.
#include "xproc/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <string>
#include <vector>

#include "xproc/errors.h"

namespace xproc {
namespace {

constexpr std::string_view kChallenge = "#CHALLENGE#";
constexpr size_t kMessageLength = 40;

std::string hmac(std::string_view digest, std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t length = 0;
  const std::string digest_name(digest);
  if (!EVP_Q_mac(nullptr, "HMAC", nullptr, digest_name.c_str(), nullptr, key.data(), key.size(),
                 reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, sizeof(out), &length)) {
    throw AuthenticationError("unsupported digest '" + digest_name + "'");
  }
  return {reinterpret_cast<const char*>(out), length};
}

// "{name}payload" -> (name, payload); no braces -> ("", whole).
std::pair<std::string, std::string_view> split_digest(std::string_view message) {
  if (message.size() > 2 && message[0] == '{') {
    const size_t close = message.find('}');
    if (close != std::string_view::npos && close <= 20) {
      return {std::string(message.substr(1, close - 1)), message.substr(close + 1)};
    }
  }
  return {"", message};
}

std::string recv_text(ByteConnection& connection) {
  try {
    auto bytes = connection.recv_bytes(kHandshakeMessageLimit);
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  } catch (const OSError& e) {
    throw AuthenticationError(std::string("handshake message rejected: ") + e.what());
  }
}

void send_text(ByteConnection& connection, std::string_view text) {
  connection.send_bytes(std::as_bytes(std::span(text.data(), text.size())));
}

}  // namespace

std::string make_challenge() {
  unsigned char random[kMessageLength];
  if (RAND_bytes(random, sizeof(random)) != 1) throw AuthenticationError("no randomness for a challenge");
  return std::string(kChallenge) + "{sha256}" + std::string(reinterpret_cast<const char*>(random), sizeof(random));
}

bool answers(std::string_view authkey, std::string_view challenge, std::string_view response) {
  if (!challenge.starts_with(kChallenge)) return false;
  const std::string_view message = challenge.substr(kChallenge.size());
  auto [digest, mac] = split_digest(response);
  if (digest.empty()) return equal_constant_time(mac, hmac("md5", authkey, message));  // Python <= 3.11 answers so
  if (digest == "sha256" || digest == "sha512" || digest == "sha384") {
    return equal_constant_time(mac, hmac(digest, authkey, message));
  }
  return false;
}

std::string answer_to(std::string_view authkey, std::string_view challenge) {
  if (challenge.substr(0, kChallenge.size()) != kChallenge) {
    throw AuthenticationError("expected a challenge from the other end");
  }
  const std::string_view message = challenge.substr(kChallenge.size());
  auto [digest, payload] = split_digest(message);
  // A legacy challenge (no digest name) wants a raw HMAC-MD5; a named one "{name}" + MAC.
  return digest.empty() ? hmac("md5", authkey, message) : "{" + digest + "}" + hmac(digest, authkey, message);
}

void deliver_challenge(ByteConnection& connection, std::string_view authkey) {
  const std::string challenge = make_challenge();
  send_text(connection, challenge);
  if (!answers(authkey, challenge, recv_text(connection))) {
    send_text(connection, kFailure);
    throw AuthenticationError("digest received was wrong");
  }
  send_text(connection, kWelcome);
}

void answer_challenge(ByteConnection& connection, std::string_view authkey) {
  send_text(connection, answer_to(authkey, recv_text(connection)));
  if (recv_text(connection) != kWelcome) throw AuthenticationError("digest sent was rejected");
}

bool equal_constant_time(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string hmac_sha256(std::string_view key, std::string_view message) { return hmac("sha256", key, message); }

std::string random_bytes(size_t n) {
  std::string bytes(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(n)) != 1) {
    throw OSError("RAND_bytes failed", EIO);
  }
  return bytes;
}

}  // namespace xproc
