// Implementation of auth.h with OpenSSL's EVP_Q_mac, RAND_bytes and CRYPTO_memcmp.
#include "xproc/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <iterator>
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

// The digests a "{name}" prefix may name, as CPython's multiprocessing.connection allows
// them, with OpenSSL's names for them.
struct NamedDigest {
  std::string_view name;
  const char* openssl_name;
};
constexpr NamedDigest kNamedDigests[] = {
    {"md5", "MD5"}, {"sha256", "SHA256"}, {"sha384", "SHA384"}, {"sha3_256", "SHA3-256"}, {"sha3_384", "SHA3-384"}};

// A challenge of Python 3.11 and older (20 random bytes) and its raw HMAC-MD5 answer (16
// bytes) carry no digest name. The length decides first, as in CPython: 16 or 20 random
// bytes may well begin with '{' and hold a '}'.
constexpr size_t kLegacyLengths[] = {20, 16};

struct SplitMessage {
  const char* openssl_name;  // "MD5" for a legacy message; nullptr for a name not allowed
  bool legacy;
  std::string_view payload;
};

// "{name}payload" -> (name, payload); a legacy message -> (MD5, whole).
SplitMessage split_digest(std::string_view message) {
  if (std::find(std::begin(kLegacyLengths), std::end(kLegacyLengths), message.size()) != std::end(kLegacyLengths)) {
    return {"MD5", true, message};
  }
  if (message.starts_with('{')) {
    const size_t close = message.find('}', 1);
    if (close != std::string_view::npos) {
      const std::string_view name = message.substr(1, close - 1);
      for (const NamedDigest& digest : kNamedDigests) {
        if (digest.name == name) return {digest.openssl_name, false, message.substr(close + 1)};
      }
    }
  }
  return {nullptr, false, message};
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
  const SplitMessage answer = split_digest(response);
  // Python 3.11 and older answer any challenge with a raw HMAC-MD5 of all of it.
  return answer.openssl_name != nullptr &&
         equal_constant_time(answer.payload, hmac(answer.openssl_name, authkey, message));
}

std::string answer_to(std::string_view authkey, std::string_view challenge) {
  if (challenge.substr(0, kChallenge.size()) != kChallenge) {
    throw AuthenticationError("expected a challenge from the other end");
  }
  const std::string_view message = challenge.substr(kChallenge.size());
  const SplitMessage asked = split_digest(message);
  if (asked.openssl_name == nullptr) {
    std::string supported;
    for (const NamedDigest& digest : kNamedDigests) {
      supported += (supported.empty() ? "" : ", ") + std::string(digest.name);
    }
    throw AuthenticationError("the challenge names no digest this end supports (" + supported + ")");
  }
  // A legacy challenge wants a raw HMAC-MD5; a named one "{name}" and the MAC, both of the
  // whole message, prefix included.
  const std::string mac = hmac(asked.openssl_name, authkey, message);
  return asked.legacy ? mac : std::string(message.substr(0, message.size() - asked.payload.size())) + mac;
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
