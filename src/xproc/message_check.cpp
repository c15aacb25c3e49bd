// The walk behind message_check.h, over the encoding in Cap'n Proto's "Encoding spec":
// a pointer is one little-endian word whose low two bits say its kind; its target is
// the word after it plus a signed 30-bit offset.
#include "xproc/message_check.h"

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>

#include "xproc/message.h"

namespace xproc::detail {
namespace {

enum PointerKind : uint32_t { kStruct = 0, kList = 1, kFar = 2, kOther = 3 };
enum ElementSize : uint32_t {
  kVoid = 0,
  kBit = 1,
  kByte = 2,
  kTwoBytes = 3,
  kFourBytes = 4,
  kEightBytes = 5,
  kPointer = 6,
  kInlineComposite = 7
};
constexpr uint32_t kBitsPerElement[] = {0, 1, 8, 16, 32, 64};

// Thrown out of the walk when it meets what it leaves to the checked reader.
struct NeedsReader {};

class Walk {
 public:
  Walk(const capnp::word* segment, int64_t size_words, uint64_t traversal_limit)
      : segment_(segment), size_(size_words), budget_(traversal_limit) {}

  // The root pointer, the segment's first word: null or a struct (a list is no message
  // any reader accepts; far pointers are the checked reader's).
  void root(int nesting) {
    // The checked reader counts the root pointer's word as read twice: once when it
    // checks that the segment holds a first word (MessageReader::getRootInternal), once
    // when it bounds-checks the pointer there (PointerReader::getRoot).
    charge(2);
    const uint64_t word = load(0);
    if ((word & 3) == kList) fail("the root is a list, not a struct");
    pointer(0, nesting);
  }

 private:
  // The pointer at word `at` of the segment, with `nesting` levels still allowed.
  void pointer(int64_t at, int nesting) {
    const uint64_t word = load(at);
    if (word == 0) return;  // null
    if (nesting <= 0) fail("the message is nested too deeply (or has a cycle)");
    const auto low = static_cast<uint32_t>(word);
    const auto high = static_cast<uint32_t>(word >> 32);
    const int64_t target = at + 1 + (static_cast<int32_t>(low) >> 2);
    switch (low & 3) {
      case kStruct: structure(target, high & 0xffff, high >> 16, nesting - 1); return;
      case kList: list(target, high & 7, high >> 3, nesting - 1); return;
      default:  // far pointers and capabilities
        throw NeedsReader{};
    }
  }

  void structure(int64_t at, uint32_t data_words, uint32_t pointers, int nesting) {
    const uint64_t words = uint64_t{data_words} + pointers;
    require_in_bounds(at, words, "struct");
    charge(words);
    for (uint32_t i = 0; i < pointers; ++i) pointer(at + data_words + i, nesting);
  }

  void list(int64_t at, uint32_t element_size, uint64_t count, int nesting) {
    switch (element_size) {
      case kVoid:
        charge(count);  // the checked reader counts void elements as words read
        return;
      case kPointer:
        require_in_bounds(at, count, "list");
        charge(count);
        for (uint64_t i = 0; i < count; ++i) pointer(at + static_cast<int64_t>(i), nesting);
        return;
      case kInlineComposite: struct_list(at, count, nesting); return;
      default: {
        const uint64_t words = (count * kBitsPerElement[element_size] + 63) / 64;
        require_in_bounds(at, words, "list");
        charge(words);
        return;
      }
    }
  }

  // A list of structs: a tag word (a struct pointer whose offset is the element count)
  // and `words` words of elements.
  void struct_list(int64_t at, uint64_t words, int nesting) {
    require_in_bounds(at, words + 1, "list");
    const uint64_t tag = load(at);
    const auto low = static_cast<uint32_t>(tag);
    const auto high = static_cast<uint32_t>(tag >> 32);
    if ((low & 3) != kStruct) fail("a struct list's tag is not a struct");
    const uint64_t count = (low >> 2) & ((1u << 29) - 1);  // a list's count has 29 bits, as Cap'n Proto reads it
    const uint32_t data_words = high & 0xffff;
    const uint32_t pointers = high >> 16;
    const uint64_t element_words = uint64_t{data_words} + pointers;
    if (element_words * count > words) fail("a struct list's elements overrun its size");
    charge(words + 1);                      // as the checked reader does: the size the list pointer gives, and the tag
    if (element_words == 0) charge(count);  // zero-sized elements, as the checked reader counts them
    if (pointers == 0) return;
    int64_t element = at + 1;
    for (uint64_t i = 0; i < count; ++i, element += static_cast<int64_t>(element_words)) {
      for (uint32_t p = 0; p < pointers; ++p) pointer(element + data_words + p, nesting);
    }
  }

  uint64_t load(int64_t at) const {
    uint64_t word;
    std::memcpy(&word, segment_ + at, sizeof(word));
    return word;
  }

  // An object of no words may point anywhere: Cap'n Proto's checked reader moves such a
  // target to the segment's end, and nothing is ever read there.
  void require_in_bounds(int64_t at, uint64_t words, const char* what) const {
    if (words == 0) return;
    if (at < 0 || at > size_ || words > static_cast<uint64_t>(size_ - at)) {
      fail(std::string("a ") + what + " pointer points out of bounds");
    }
  }

  void charge(uint64_t words) {
    if (words > budget_) fail("the message exceeds the traversal limit (DecodeLimits::traversal_limit_words)");
    budget_ -= words;
  }

  [[noreturn]] static void fail(const std::string& what) { throw DecodeError("invalid Cap'n Proto message: " + what); }

  const capnp::word* segment_;
  int64_t size_;
  uint64_t budget_;
};

}  // namespace

FlatCheck check_flat(kj::ArrayPtr<const capnp::word> words, const DecodeLimits& limits) {
  if constexpr (std::endian::native != std::endian::little) return FlatCheck::kNeedsReader;
  uint32_t table[2];
  std::memcpy(table, words.begin(), sizeof(table));
  // One segment (count - 1 == 0) holding at least the root pointer.
  if (table[0] != 0 || table[1] == 0) return FlatCheck::kNeedsReader;
  Walk walk(words.begin() + 1, table[1], reader_options(words.size(), limits).traversalLimitInWords);
  try {
    walk.root(limits.nesting_limit);
  } catch (const NeedsReader&) {
    return FlatCheck::kNeedsReader;
  }
  return FlatCheck::kSafe;
}

}  // namespace xproc::detail
