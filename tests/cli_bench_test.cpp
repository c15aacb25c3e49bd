// `xproc bench` hands over to the comparison harness of this checkout (bench/run.sh).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "support/test_support.h"

namespace {

const std::string kXproc = XPROC_BINARY_DIR "/src/cli/xproc";

TEST(CliBenchTest, UnknownTopicIsRefusedWithTheKnownOnes) {
  auto [status, out] = xproc::testing::run_command(kXproc + " bench no-such-topic 2>&1");
  EXPECT_NE(status, 0);
  if (!std::filesystem::exists(XPROC_BINARY_DIR "/bench")) {
    // The sanitizer presets build no benchmarks: the command says so rather than run.
    EXPECT_NE(out.find("has no benchmarks"), std::string::npos) << out;
    return;
  }
  EXPECT_NE(out.find("no benchmark for topic 'no-such-topic'"), std::string::npos) << out;
  EXPECT_NE(out.find("queue pipe manager python"), std::string::npos) << out;
}

}  // namespace
