// multiprocessing's HMAC handshake (auth.h) against a peer that sends anything: the input is
// the byte stream the peer writes before it hangs up. The handshake ends in a pass or in
// AuthenticationError, EOFError, OSError or a broken pipe, and never waits for more than
// the peer sent; where xproc challenges (alone, or as the Listener) it never passes: the
// peer cannot know the key, nor the challenge's random bytes in advance. The messages themselves: a challenge's
// answer made with the key is accepted for every digest xproc answers with.
//
// Input: a byte choosing the side (answerer, challenger, the Listener's side-by-side
// handshakes, the messages alone), then the peer's bytes.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "fuzz_check.h"
#include "xproc/auth.h"
#include "xproc/byte_connection.h"
#include "xproc/errors.h"
#include "xproc/listener.h"

namespace {

const std::string kKey = "fuzz key";

// The peer's bytes already on the socket, and the peer gone.
xproc::ByteConnection connection_fed(std::span<const std::byte> bytes) {
  int pair[2];
  FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  // A fuzz input fits the socket's buffer (libFuzzer's inputs are at most a few KiB).
  if (!bytes.empty())
    FUZZ_CHECK(::send(pair[1], bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  ::close(pair[1]);
  return xproc::ByteConnection(pair[0], true, true);
}

// Runs a handshake: true when it passed, false when it failed as documented (anything else
// escapes and is a finding).
template <typename Handshake>
bool passes(Handshake&& handshake) {
  try {
    handshake();
    return true;
  } catch (const xproc::AuthenticationError&) {
  } catch (const xproc::EOFError&) {
  } catch (const xproc::ConnectionError&) {  // a broken pipe: the peer is gone
  } catch (const xproc::OSError&) {          // a frame over the handshake's limit
  }
  return false;
}

void the_messages(std::span<const std::byte> bytes) {
  const std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const size_t half = text.size() / 2;
  (void)xproc::answers(kKey, text.substr(0, half), text.substr(half));
  std::string answer;
  try {
    answer = xproc::answer_to(kKey, text);
  } catch (const xproc::AuthenticationError&) {
    return;  // not a challenge, or a digest xproc does not have
  }
  FUZZ_CHECK(text.starts_with("#CHALLENGE#"));
  // What xproc answers is an answer xproc accepts, whatever the challenge's random bytes
  // (a legacy answer, a raw HMAC-MD5, may begin with '{' and hold a '}').
  FUZZ_CHECK(xproc::answers(kKey, text, answer), "xproc refuses its own answer");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  xproc::fuzz::Input input(data, size);
  const uint8_t side = input.take<uint8_t>() % 4;
  const auto peer = input.rest();
  switch (side) {
    case 0: {  // xproc answers (a Client's first half): it proves its key; a peer may welcome it
      auto connection = connection_fed(peer);
      (void)passes([&] { xproc::answer_challenge(connection, kKey); });
      break;
    }
    case 1: {  // xproc challenges: the peer must prove the key over fresh random bytes
      auto connection = connection_fed(peer);
      FUZZ_CHECK(!passes([&] { xproc::deliver_challenge(connection, kKey); }),
                 "a peer without the key passed the challenge");
      break;
    }
    case 2: {  // the Listener, which reads handshakes a message at a time
      xproc::Listener listener("", 4, kKey, {}, std::chrono::milliseconds(500));
      auto client = xproc::Client(listener.address());  // no key: the raw socket
      if (!peer.empty()) (void)::send(client.fileno(), peer.data(), peer.size(), MSG_NOSIGNAL);
      client.close();
      bool done = false;
      for (int attempt = 0; attempt < 4 && !done; ++attempt) {
        try {
          FUZZ_CHECK(!listener.try_accept(std::chrono::milliseconds(200)).has_value(),
                     "the Listener accepted a client without the key");
        } catch (const xproc::AuthenticationError&) {
          done = true;
        }
      }
      FUZZ_CHECK(done, "a client that hung up was not done with at once");
      break;
    }
    default: the_messages(peer);
  }
  return 0;
}
