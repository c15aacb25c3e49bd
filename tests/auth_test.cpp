// multiprocessing's HMAC challenge and answer (auth.h), as messages.
#include "xproc/auth.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "xproc/errors.h"

namespace xproc {
namespace {

TEST(AuthTest, AnAnswerWithTheKeyIsAcceptedAndOneWithoutIsNot) {
  const std::string challenge = make_challenge();
  ASSERT_TRUE(challenge.starts_with("#CHALLENGE#{sha256}"));
  EXPECT_TRUE(answers("key", challenge, answer_to("key", challenge)));
  EXPECT_FALSE(answers("key", challenge, answer_to("other key", challenge)));
  EXPECT_FALSE(answers("key", make_challenge(), answer_to("key", challenge)));  // fresh bytes each time
}

// Found by the handshake fuzz target: anything shorter than the challenge prefix threw
// std::out_of_range out of a function that decides.
TEST(AuthTest, WhatIsNotAChallengeIsAnsweredByNothing) {
  for (std::string_view not_a_challenge : {"", "x", "#CHALLENGE", "#challenge#{sha256}abc"}) {
    EXPECT_FALSE(answers("key", not_a_challenge, "")) << not_a_challenge;
    EXPECT_FALSE(answers("key", not_a_challenge, "{sha256}0123")) << not_a_challenge;
    EXPECT_THROW(answer_to("key", not_a_challenge), AuthenticationError) << not_a_challenge;
  }
}

// Python 3.11 and older answer a challenge with a raw HMAC-MD5 of 16 bytes, which begins with
// '{' and holds a '}' about once in 4000 challenges. Its length says it is no "{name}"
// answer, as CPython decides; read as one, it failed such a client's login at random.
TEST(AuthTest, ALegacyAnswerThatLooksNamedIsReadByItsLength) {
  bool found = false;
  for (uint32_t i = 0; i < 1'000'000 && !found; ++i) {
    std::string challenge = "#CHALLENGE#" + std::string(20, 'x');
    challenge.replace(11, sizeof(i), reinterpret_cast<const char*>(&i), sizeof(i));
    const std::string answer = answer_to("key", challenge);
    ASSERT_EQ(answer.size(), 16u);
    if (answer.starts_with('{') && answer.find('}') != std::string::npos) {
      found = true;
      EXPECT_TRUE(answers("key", challenge, answer));
      EXPECT_FALSE(answers("other key", challenge, answer));
    }
  }
  EXPECT_TRUE(found);
}

TEST(AuthTest, AChallengeOfTwentyBytesIsLegacyWhateverItsBytes) {
  const std::string challenge = "#CHALLENGE#{sha256}0123456789ab";  // 20 bytes after the prefix
  const std::string answer = answer_to("key", challenge);
  EXPECT_EQ(answer.size(), 16u);  // a raw HMAC-MD5, no "{sha256}"
  EXPECT_TRUE(answers("key", challenge, answer));
}

TEST(AuthTest, EveryDigestCPythonNamesIsAnsweredAndOthersAreRefused) {
  for (std::string name : {"md5", "sha256", "sha384", "sha3_256", "sha3_384"}) {
    const std::string challenge = "#CHALLENGE#{" + name + "}" + std::string(40, 'r');
    const std::string answer = answer_to("key", challenge);
    EXPECT_TRUE(answer.starts_with("{" + name + "}")) << name;
    EXPECT_TRUE(answers("key", challenge, answer)) << name;
    EXPECT_FALSE(answers("other key", challenge, answer)) << name;
  }
  for (std::string name : {"sha1", "md4", "", "sha256 "}) {
    const std::string challenge = "#CHALLENGE#{" + name + "}" + std::string(40, 'r');
    try {
      answer_to("key", challenge);
      ADD_FAILURE() << "answered " << name;
    } catch (const AuthenticationError& e) {
      EXPECT_NE(std::string(e.what()).find("md5, sha256, sha384, sha3_256, sha3_384"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(answers("key", challenge, "{" + name + "}" + std::string(32, 'a'))) << name;
  }
}

}  // namespace
}  // namespace xproc
