// Tests for Message<T>: round trips, the standard flat format, and hostile bytes.
#include "xproc/message.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include "support/test_support.h"

#include <unistd.h>
#include <cstdio>
#include <fstream>
#include <random>

#include "xproc/value.capnp.h"

namespace {

using xproc::Message;
using xproc::schema::Value;

std::span<const std::byte> as_bytes(const kj::Array<capnp::word>& words) {
  return {reinterpret_cast<const std::byte*>(words.begin()), words.size() * sizeof(capnp::word)};
}

kj::Array<capnp::word> text_value(const char* text) {
  capnp::MallocMessageBuilder builder;
  builder.initRoot<Value>().setText(text);
  return xproc::serialize(builder.getRoot<Value>().asReader());
}

TEST(MessageTest, DecodeOfSerializedReaderRoundTrips) {
  auto words = text_value("hello");
  auto message = Message<Value>::decode(as_bytes(words));
  ASSERT_TRUE(message->isText());
  EXPECT_STREQ(message->getText().cStr(), "hello");
  EXPECT_EQ(message.bytes().size(), words.size() * 8);
}

TEST(MessageTest, SerializeOfReaderMatchesCapnpFlatArray) {
  capnp::MallocMessageBuilder builder;
  auto list = builder.initRoot<Value>().initList(3);
  for (int i = 0; i < 3; ++i) list[i].setInt64(i);
  auto ours = xproc::serialize(builder.getRoot<Value>().asReader());
  auto theirs = capnp::messageToFlatArray(builder);
  ASSERT_EQ(ours.size(), theirs.size());
  EXPECT_EQ(0, memcmp(ours.begin(), theirs.begin(), ours.size() * 8));
}

TEST(MessageTest, MessageStaysValidAfterMove) {
  auto words = text_value("moved");
  auto first = Message<Value>::decode(as_bytes(words));
  Message<Value> second = std::move(first);
  EXPECT_STREQ(second->getText().cStr(), "moved");
}

TEST(MessageTest, DecodeOfOddLengthThrowsDecodeError) {
  std::byte bytes[13] = {};
  EXPECT_THROW(Message<Value>::decode(bytes), xproc::DecodeError);
}

TEST(MessageTest, DecodeOfEmptyInputThrowsDecodeError) { EXPECT_THROW(Message<Value>::decode({}), xproc::DecodeError); }

TEST(MessageTest, DecodeOfSegmentTableClaimingTooMuchThrowsDecodeError) {
  uint32_t words[4] = {0, 1000, 0, 0};  // one segment of 1000 words, but only 1 present
  EXPECT_THROW(Message<Value>::decode(std::as_bytes(std::span(words))), xproc::DecodeError);
}

TEST(MessageTest, DecodeWithTrailingBytesThrowsDecodeError) {
  auto words = text_value("x");
  std::vector<std::byte> padded(as_bytes(words).begin(), as_bytes(words).end());
  padded.resize(padded.size() + 8);
  EXPECT_THROW(Message<Value>::decode(padded), xproc::DecodeError);
}

TEST(MessageTest, DecodeOfOutOfBoundsPointerThrowsDecodeError) {
  // Segment of 2 words: a root struct pointer whose offset points far past the segment.
  uint64_t words[3] = {uint64_t{2} << 32, (uint64_t{1} << 32) | (uint64_t{1000} << 2), 0};
  EXPECT_THROW(Message<Value>::decode(std::as_bytes(std::span(words))), xproc::DecodeError);
}

TEST(MessageTest, DecodeOfRandomBytesNeverCrashes) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 2000; ++round) {
    std::vector<uint64_t> words(1 + rng() % 16);
    for (auto& w : words) w = rng();
    words[0] = (uint64_t{words.size() - 1} << 32);  // a plausible one-segment table
    try {
      auto message = Message<Value>::decode(std::as_bytes(std::span(words)));
      (void)message->which();
    } catch (const xproc::DecodeError&) {
    }
  }
}

TEST(MessageTest, DeepNestingBeyondLimitThrowsDecodeError) {
  capnp::MallocMessageBuilder builder;
  auto value = builder.initRoot<Value>();
  for (int depth = 0; depth < 100; ++depth) value = value.initList(1)[0];
  auto words = xproc::serialize(builder.getRoot<Value>().asReader());
  EXPECT_THROW(Message<Value>::decode(as_bytes(words)), xproc::DecodeError);
  xproc::DecodeLimits generous;
  generous.nesting_limit = 1000;
  EXPECT_NO_THROW(Message<Value>::decode(as_bytes(words), generous));
}

TEST(MessageTest, CapnpDecodeToolReadsSerializedBytes) {
  auto words = text_value("from xproc");
  const std::string path = "/tmp/xproc-message-test-" + std::to_string(getpid()) + ".bin";
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(words.begin()), words.size() * 8);
  }
  auto [status, output] = xproc::testing::capnp_decode_value(path);
  EXPECT_EQ(status, 0) << output;
  std::remove(path.c_str());
  EXPECT_NE(output.find("text = \"from xproc\""), std::string::npos) << output;
}

}  // namespace
