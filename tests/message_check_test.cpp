// Tests for check_flat, the walk that lets a queue read a message without building
// Cap'n Proto's checked reader: it must accept only what that reader accepts, and a
// message it accepts must read the same without bounds checks as with them.
#include "xproc/message_check.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <random>
#include <vector>

#include "xproc/message.h"
#include "xproc/value.capnp.h"
#include "xproc/value.h"

namespace {

using xproc::DecodeError;
using xproc::DecodeLimits;
using xproc::detail::check_flat;
using xproc::detail::FlatCheck;
using xproc::schema::Value;

std::vector<capnp::word> flat(capnp::MessageBuilder& builder) {
  auto words = capnp::messageToFlatArray(builder);
  return {words.begin(), words.end()};
}

kj::ArrayPtr<const capnp::word> ptr(const std::vector<capnp::word>& words) {
  return kj::arrayPtr(words.data(), words.size());
}

// One-segment message of raw words (the segment table is prepended).
std::vector<capnp::word> raw_message(std::initializer_list<uint64_t> segment) {
  std::vector<uint64_t> words{uint64_t{segment.size()} << 32};
  words.insert(words.end(), segment);
  std::vector<capnp::word> out(words.size());
  std::memcpy(static_cast<void*>(out.data()), words.data(), words.size() * sizeof(uint64_t));
  return out;
}

// A Value with most kinds of pointers: nested lists, a map (a struct list), text, data.
std::vector<capnp::word> rich_value() {
  capnp::MallocMessageBuilder builder;
  auto list = builder.initRoot<Value>().initList(4);
  list[0].setText("hello, queue");
  list[1].setData(kj::StringPtr("some bytes").asBytes());
  auto entries = list[2].initMap(2);
  entries[0].initKey().setInt64(7);
  entries[0].initValue().initList(2)[1].setFloat64(2.5);
  entries[1].initKey().setText("k");
  entries[1].initValue().setBool(true);
  list[3].initList(1)[0].setText("deep");
  return flat(builder);
}

// What Cap'n Proto's checked reader makes of `words`: a full copy of the root, or nothing
// when it rejects them.
std::optional<std::vector<capnp::word>> checked_copy(const std::vector<capnp::word>& words) {
  try {
    capnp::FlatArrayMessageReader reader(ptr(words));
    auto root = reader.getRoot<capnp::AnyStruct>();
    root.totalSize();
    capnp::MallocMessageBuilder copy;
    copy.setRoot(root);
    return flat(copy);
  } catch (const kj::Exception&) {
    return std::nullopt;
  }
}

std::vector<capnp::word> unchecked_copy(const std::vector<capnp::word>& words) {
  capnp::MallocMessageBuilder copy;
  copy.setRoot(capnp::readMessageUnchecked<capnp::AnyStruct>(words.data() + 1));
  return flat(copy);
}

TEST(MessageCheckTest, BuiltMessagesAreSafe) {
  EXPECT_EQ(check_flat(ptr(rich_value()), {}), FlatCheck::kSafe);
  capnp::MallocMessageBuilder empty;
  empty.initRoot<Value>();
  EXPECT_EQ(check_flat(ptr(flat(empty)), {}), FlatCheck::kSafe);
  EXPECT_EQ(check_flat(ptr(raw_message({0})), {}), FlatCheck::kSafe);  // a null root
}

TEST(MessageCheckTest, SeveralSegmentsAreLeftToTheCheckedReaderAndStillDecode) {
  // First segment of one word: the content lands in later segments, behind far pointers.
  capnp::MallocMessageBuilder builder(1, capnp::AllocationStrategy::FIXED_SIZE);
  builder.initRoot<Value>().initList(3)[2].setText("far away");
  auto words = flat(builder);
  ASSERT_GT(builder.getSegmentsForOutput().size(), 1u);
  EXPECT_EQ(check_flat(ptr(words), {}), FlatCheck::kNeedsReader);
  auto message = xproc::Message<Value>::decode(
      {reinterpret_cast<const std::byte*>(words.data()), words.size() * sizeof(capnp::word)});
  EXPECT_STREQ(message->getList()[2].getText().cStr(), "far away");
}

TEST(MessageCheckTest, FarAndCapabilityPointersAreLeftToTheCheckedReader) {
  EXPECT_EQ(check_flat(ptr(raw_message({2 /* far pointer */, 0})), {}), FlatCheck::kNeedsReader);
  // A struct with one pointer: a capability (kind 3, index 0).
  EXPECT_EQ(check_flat(ptr(raw_message({uint64_t{1} << 48, 3})), {}), FlatCheck::kNeedsReader);
}

TEST(MessageCheckTest, OutOfBoundsPointersThrowDecodeError) {
  // Root struct of one data word placed past the end; then one before the start.
  EXPECT_THROW(check_flat(ptr(raw_message({(uint64_t{1} << 32) | (5u << 2)})), {}), DecodeError);
  EXPECT_THROW(check_flat(ptr(raw_message({(uint64_t{1} << 32) | (static_cast<uint32_t>(-3) << 2)})), {}), DecodeError);
  // A byte list of 100 bytes in a segment of 3 words.
  EXPECT_THROW(check_flat(ptr(raw_message({uint64_t{1} << 48, (uint64_t{100 << 3 | 2} << 32) | 1, 0})), {}),
               DecodeError);
}

TEST(MessageCheckTest, CyclesThrowDecodeError) {
  // A root struct whose only pointer points back at the struct itself (offset -2).
  EXPECT_THROW(
      check_flat(ptr(raw_message({uint64_t{1} << 48, (uint64_t{1} << 48) | (static_cast<uint32_t>(-2) << 2)})), {}),
      DecodeError);
}

TEST(MessageCheckTest, NestingLimitMatchesTheCheckedReader) {
  for (int depth : {60, 62, 63, 64, 65, 70}) {
    capnp::MallocMessageBuilder builder;
    auto value = builder.initRoot<Value>();
    for (int i = 0; i < depth; ++i) value = value.initList(1)[0];
    const auto words = flat(builder);
    const bool checked_accepts = checked_copy(words).has_value();
    if (checked_accepts) {
      EXPECT_EQ(check_flat(ptr(words), {}), FlatCheck::kSafe) << depth;
    } else {
      EXPECT_THROW(check_flat(ptr(words), {}), DecodeError) << depth;
    }
  }
}

TEST(MessageCheckTest, ListsOfNothingCountAgainstTheTraversalLimit) {
  // A void list of 2^29 - 1 elements in two words (amplification).
  const uint64_t void_list = (uint64_t{((1u << 29) - 1) << 3} << 32) | 1;
  EXPECT_THROW(check_flat(ptr(raw_message({uint64_t{1} << 48, void_list})), {}), DecodeError);
  DecodeLimits generous;
  generous.traversal_limit_words = uint64_t{1} << 30;
  EXPECT_EQ(check_flat(ptr(raw_message({uint64_t{1} << 48, void_list})), generous), FlatCheck::kSafe);
  // A struct list of 2^29 - 1 zero-sized structs: the tag word only.
  const uint64_t struct_list = (uint64_t{0 << 3 | 7} << 32) | 1;
  const uint64_t tag = uint64_t{((1u << 29) - 1) << 2};
  EXPECT_THROW(check_flat(ptr(raw_message({uint64_t{1} << 48, struct_list, tag})), {}), DecodeError);
}

// Reading all of `words` through the checked reader under `limits` succeeds exactly when
// `readable`, and check_flat agrees.
void expect_read_in_full_exactly_when(bool readable, const std::vector<capnp::word>& words,
                                      const DecodeLimits& limits) {
  capnp::FlatArrayMessageReader reader(ptr(words), xproc::detail::reader_options(words.size(), limits));
  capnp::MallocMessageBuilder copy;
  if (readable) {
    copy.setRoot(reader.getRoot<capnp::AnyStruct>());
    EXPECT_EQ(check_flat(ptr(words), limits), FlatCheck::kSafe);
  } else {
    EXPECT_THROW(copy.setRoot(reader.getRoot<capnp::AnyStruct>()), kj::Exception);
    EXPECT_THROW(check_flat(ptr(words), limits), DecodeError);
  }
}

TEST(MessageCheckTest, TraversalLimitCountsTheRootPointerAsTheCheckedReaderDoes) {
  // A root struct of one pointer to a void list: the root pointer (counted twice by the
  // reader), the struct's word and the list's elements are read, as many words as the
  // limit allows and one more.
  DecodeLimits limits;
  limits.traversal_limit_words = 16;
  for (const uint32_t elements : {13u, 14u}) {
    const uint64_t void_list = (uint64_t{elements << 3} << 32) | 1;
    expect_read_in_full_exactly_when(elements == 13, raw_message({uint64_t{1} << 48, void_list}), limits);
  }
}

TEST(MessageCheckTest, StructListsCountTheWordsTheirPointerGivesAsTheCheckedReaderDoes) {
  // Four pointers to one struct list of no elements in 4 words: the reader counts 4 + 1
  // words for each (26 in all with the root and its struct), not the elements' size.
  const auto words = raw_message(
      {uint64_t{4} << 48, (uint64_t{4 << 3 | 7} << 32) | (3u << 2) | 1, (uint64_t{4 << 3 | 7} << 32) | (2u << 2) | 1,
       (uint64_t{4 << 3 | 7} << 32) | (1u << 2) | 1, (uint64_t{4 << 3 | 7} << 32) | (0u << 2) | 1, 0, 0, 0, 0, 0});
  for (const uint64_t limit : {22u, 26u}) {  // 22: twice the message, the least there is
    DecodeLimits limits;
    limits.traversal_limit_words = limit;
    expect_read_in_full_exactly_when(limit == 26, words, limits);
  }
}

TEST(MessageCheckTest, MalformedStructListsThrowDecodeError) {
  // Tag of a list kind; then a tag claiming 5 one-word elements in 2 words.
  const uint64_t list_of_2_words = (uint64_t{2 << 3 | 7} << 32) | 1;
  EXPECT_THROW(check_flat(ptr(raw_message({uint64_t{1} << 48, list_of_2_words, 1, 0, 0})), {}), DecodeError);
  EXPECT_THROW(
      check_flat(ptr(raw_message({uint64_t{1} << 48, list_of_2_words, (uint64_t{1} << 32) | (5 << 2), 0, 0})), {}),
      DecodeError);
}

TEST(MessageCheckTest, ARootThatIsAListThrowsDecodeError) {
  EXPECT_THROW(check_flat(ptr(raw_message({(uint64_t{0 << 3 | 2} << 32) | 1})), {}), DecodeError);
}

TEST(MessageCheckTest, TextWithoutNulDecodesButFailsWhenRead) {
  // As with the checked reader: the message is valid, the field is not text.
  auto words =
      raw_message({uint64_t{1} << 48, (uint64_t{8 << 3 | 2} << 32) | (4u << 2) | 1, 0, 0, 0, 0, 0x4142434445464748});
  // The pointer section of the root holds Value's text pointer at index 0.
  auto bytes = std::span(reinterpret_cast<const std::byte*>(words.data()), words.size() * sizeof(capnp::word));
  ASSERT_EQ(check_flat(ptr(words), {}), FlatCheck::kSafe);
  auto message = xproc::Message<capnp::AnyStruct>::decode(bytes);
  auto text = message->getPointerSection()[0];
  EXPECT_THROW(text.getAs<capnp::Text>(), kj::Exception);
}

// with_validated_root reads small messages from a stack copy and large ones in place
// through the checked reader: both read the same, and both reject what is out of bounds,
// whether the reader traverses the message first (Reads::kPart) or checks it as a decoder
// that reads all of it goes (Reads::kAll, xproc::Value::decode).
TEST(MessageCheckTest, SmallAndLargeMessagesReadAlikeInPlace) {
  for (size_t size : {10u, 5000u}) {
    capnp::MallocMessageBuilder builder;
    auto data = builder.initRoot<Value>().initData(size);
    for (size_t i = 0; i < size; ++i) data[i] = static_cast<uint8_t>(i * 7);
    auto words = flat(builder);
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(words.data()),
                                           words.size() * sizeof(capnp::word));
    const size_t sum = xproc::detail::with_validated_root<Value>(bytes, {}, [](Value::Reader root) {
      size_t total = 0;
      for (auto b : root.getData()) total += b;
      return total;
    });
    size_t expected = 0;
    for (size_t i = 0; i < size; ++i) expected += static_cast<uint8_t>(i * 7);
    EXPECT_EQ(sum, expected) << size;
    EXPECT_EQ(xproc::Value::decode(bytes).as_bytes().size(), size);
    // The data pointer (the root's first pointer, after its data words) now claims more
    // bytes than the segment has.
    auto* raw = reinterpret_cast<uint64_t*>(words.data());
    const size_t data_pointer = 2 + ((raw[1] >> 32) & 0xffff);
    raw[data_pointer] = (raw[data_pointer] & 0xffffffffu) | (uint64_t{(size + 4096) << 3 | 2} << 32);
    EXPECT_THROW(
        xproc::detail::with_validated_root<Value>(bytes, {}, [](Value::Reader root) { return root.getData().size(); }),
        DecodeError)
        << size;
    EXPECT_THROW(xproc::Value::decode(bytes), DecodeError) << size;
  }
}

// The walk and Cap'n Proto's checked reader agree on thousands of corrupted messages: what
// the walk calls safe the reader accepts, and reads the same without bounds checks; what
// the walk rejects the reader rejects. (Run under ASan, an unchecked read outside the
// message would be reported.)
TEST(MessageCheckTest, AgreesWithTheCheckedReaderOnCorruptedMessages) {
  const std::vector<capnp::word> seed = rich_value();
  std::mt19937_64 rng(7);
  int safe = 0, rejected = 0;
  for (int round = 0; round < 20000; ++round) {
    std::vector<capnp::word> words = seed;
    auto* raw = reinterpret_cast<uint64_t*>(words.data());
    for (int change = 1 + rng() % 3; change > 0; --change) {
      const size_t at = 1 + rng() % (words.size() - 1);  // the segment table stays
      switch (rng() % 3) {
        case 0: raw[at] ^= uint64_t{1} << (rng() % 64); break;
        case 1: raw[at] = rng(); break;
        default: raw[at] = (raw[at] & ~uint64_t{0xffffffff}) | (rng() & 0xffffffff); break;
      }
    }
    FlatCheck verdict;
    try {
      verdict = check_flat(ptr(words), {});
    } catch (const DecodeError& e) {
      EXPECT_FALSE(checked_copy(words).has_value()) << "round " << round << ": " << e.what();
      ++rejected;
      continue;
    }
    if (verdict != FlatCheck::kSafe) continue;
    ++safe;
    const auto checked = checked_copy(words);
    ASSERT_TRUE(checked.has_value()) << "round " << round;
    const auto unchecked = unchecked_copy(words);
    ASSERT_EQ(checked->size(), unchecked.size()) << "round " << round;
    EXPECT_EQ(0, std::memcmp(checked->data(), unchecked.data(), unchecked.size() * sizeof(capnp::word)))
        << "round " << round;
  }
  EXPECT_GT(safe, 1000);
  EXPECT_GT(rejected, 1000);
}

}  // namespace
