// multiprocessing.connection's HMAC challenge-response, compatible with CPython both as
// the challenger and as the answerer: challenges are "#CHALLENGE#{sha256}" + 40 random
// bytes; answers are "{sha256}" + HMAC-SHA256 of the whole challenge payload, and the
// legacy raw HMAC-MD5 answer that Python 3.11 and older send is accepted (told apart by
// its length, as CPython does). A peer's challenge may name any digest CPython allows
// (md5, sha256, sha384, sha3_256, sha3_384). HMAC and
// randomness come from OpenSSL; digests are compared in constant time.
#pragma once

#include <string>
#include <string_view>

#include "xproc/byte_connection.h"

namespace xproc {

// The messages of the handshake, for a caller that moves the bytes itself (the Listener
// runs several handshakes at once). Each is one frame's payload.
inline constexpr std::string_view kWelcome = "#WELCOME#";
inline constexpr std::string_view kFailure = "#FAILURE#";
// The longest handshake message accepted (as CPython).
inline constexpr size_t kHandshakeMessageLimit = 256;
// A fresh challenge: "#CHALLENGE#{sha256}" and 40 random bytes.
std::string make_challenge();
// Whether `response` answers `challenge` (as make_challenge made it) for `authkey`; false
// for anything that is not a challenge.
bool answers(std::string_view authkey, std::string_view challenge, std::string_view response);
// The answer to the challenge message received; AuthenticationError when it is not one.
std::string answer_to(std::string_view authkey, std::string_view challenge);

// Sends a challenge and checks the answer; sends #WELCOME# or #FAILURE#. Throws
// AuthenticationError when the answer is wrong, EOFError when the peer leaves.
void deliver_challenge(ByteConnection& connection, std::string_view authkey);

// Answers the peer's challenge. Throws AuthenticationError when the peer rejects us or
// sends something that is not a challenge.
void answer_challenge(ByteConnection& connection, std::string_view authkey);

// HMAC-SHA256(key, message): the Manager's login digest.
std::string hmac_sha256(std::string_view key, std::string_view message);

// Equality that takes the same time wherever the inputs differ.
bool equal_constant_time(std::string_view a, std::string_view b);

// `n` bytes from OpenSSL's CSPRNG (nonces, authkeys). OSError if it fails.
std::string random_bytes(size_t n);

}  // namespace xproc
