// multiprocessing's HMAC challenge and answer (auth.h), as messages.
#include "xproc/auth.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace xproc
