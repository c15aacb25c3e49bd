// Validation and flat serialization behind message.h.
#include "xproc/message.h"

#include <capnp/any.h>
#include <kj/exception.h>

#include <algorithm>
#include <cstdio>

#include "xproc/kj_errors_internal.h"

namespace xproc {
namespace detail {

capnp::ReaderOptions reader_options(size_t size_words, const DecodeLimits& limits) {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = std::max<uint64_t>(limits.traversal_limit_words, 2 * size_words);
  options.nestingLimit = limits.nesting_limit;
  return options;
}

void throw_decode_error(const kj::Exception& error) {
  detail::rethrow_kj(error, ErrorKind::kDecodeError, "invalid Cap'n Proto message: ");
}

void check_segment_table(kj::ArrayPtr<const capnp::word> words) {
  if (words.size() == 0) throw DecodeError("empty input is not a Cap'n Proto message");
  // The segment table must describe exactly the bytes we have.
  const size_t expected = capnp::expectedSizeInWordsFromPrefix(words);
  if (expected != words.size()) {
    throw DecodeError("segment table describes " + std::to_string(expected * 8) + " bytes but the message has " +
                      std::to_string(words.size() * 8));
  }
}

void check_traversal(capnp::AnyStruct::Reader root) {
  try {
    // totalSize() walks every pointer, checking bounds, nesting and the traversal limit.
    root.totalSize();
  } catch (const kj::Exception& e) {
    throw_decode_error(e);
  }
}

void require_whole_words(size_t bytes) {
  if (bytes % sizeof(capnp::word) != 0) {
    throw DecodeError("a Cap'n Proto message is a whole number of 8-byte words; got " + std::to_string(bytes) +
                      " bytes");
  }
}

void open_reader(std::optional<capnp::FlatArrayMessageReader>& reader, kj::ArrayPtr<const capnp::word> words,
                 const DecodeLimits& limits) {
  try {
    reader.emplace(words, reader_options(words.size(), limits));
  } catch (const kj::Exception& e) {
    throw_decode_error(e);
  }
}

void FlatMessageDeleter::operator()(FlatMessage* message) const noexcept {
  message->~FlatMessage();
  ::operator delete(message);
}

FlatMessagePtr FlatMessage::copy(std::span<const std::byte> bytes) {
  require_whole_words(bytes.size());
  // The words follow the object; its size is a multiple of its alignment, itself >= 8.
  static_assert(alignof(FlatMessage) >= alignof(capnp::word) && sizeof(FlatMessage) % alignof(capnp::word) == 0);
  FlatMessagePtr message(new (::operator new(sizeof(FlatMessage) + bytes.size())) FlatMessage);
  auto* words = reinterpret_cast<capnp::word*>(message.get() + 1);
  if (!bytes.empty()) std::memcpy(words, bytes.data(), bytes.size());
  message->words_ = kj::arrayPtr(words, bytes.size() / sizeof(capnp::word));
  return message;
}

FlatMessagePtr FlatMessage::adopt(kj::Array<capnp::word> words) {
  FlatMessagePtr message(new (::operator new(sizeof(FlatMessage))) FlatMessage);
  message->adopted_ = kj::mv(words);
  message->words_ = message->adopted_.asPtr();
  return message;
}

size_t flat_size(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  return capnp::computeSerializedSizeInWords(segments) * sizeof(capnp::word);
}

size_t segment_table_bytes(size_t segments) { return (segments / 2 + 1) * sizeof(capnp::word); }

void write_segment_table(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments, std::byte* out) {
  auto* table = reinterpret_cast<uint32_t*>(out);
  table[0] = static_cast<uint32_t>(segments.size() - 1);
  for (size_t i = 0; i < segments.size(); ++i) table[i + 1] = static_cast<uint32_t>(segments[i].size());
  if (segments.size() % 2 == 0) table[segments.size() + 1] = 0;  // the padding
}

void write_flat(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments, std::byte* out) {
  write_segment_table(segments, out);
  size_t offset = segment_table_bytes(segments.size());
  for (auto segment : segments) {
    std::memcpy(out + offset, segment.begin(), segment.size() * sizeof(capnp::word));
    offset += segment.size() * sizeof(capnp::word);
  }
}

kj::ArrayPtr<const capnp::word> as_words(std::span<const std::byte> bytes, kj::Array<capnp::word>& copy) {
  if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(capnp::word) != 0) {
    copy = copy_to_words(bytes);
    return copy;
  }
  require_whole_words(bytes.size());
  return kj::arrayPtr(reinterpret_cast<const capnp::word*>(bytes.data()), bytes.size() / sizeof(capnp::word));
}

kj::Array<capnp::word> copy_to_words(std::span<const std::byte> bytes) {
  require_whole_words(bytes.size());
  auto words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  if (!bytes.empty()) std::memcpy(words.begin(), bytes.data(), bytes.size());
  return words;
}

}  // namespace detail

std::string schema_id_hex(uint64_t id) {
  char text[24];
  std::snprintf(text, sizeof(text), "0x%016llx", static_cast<unsigned long long>(id));
  return text;
}

size_t flat_size(capnp::AnyStruct::Reader root) {
  // Segment table (one segment: two 32-bit words) + root pointer + content.
  return sizeof(capnp::word) * (2 + root.totalSize().wordCount);
}

void write_flat(capnp::AnyStruct::Reader root, std::span<std::byte> out) {
  const size_t words = out.size() / sizeof(capnp::word);
  KJ_ASSERT(out.size() % sizeof(capnp::word) == 0 && words >= 2);
  const uint32_t table[2] = {0, static_cast<uint32_t>(words - 1)};  // segment count - 1, size
  std::memcpy(out.data(), table, sizeof(table));
  auto* segment = reinterpret_cast<capnp::word*>(out.data()) + 1;
  std::memset(segment, 0, (words - 1) * sizeof(capnp::word));  // copyToUnchecked's precondition
  capnp::copyToUnchecked(root, kj::arrayPtr(segment, words - 1));
}

kj::Array<capnp::word> serialize(capnp::AnyStruct::Reader root) {
  const size_t size = flat_size(root);
  auto words = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
  write_flat(root, {reinterpret_cast<std::byte*>(words.begin()), size});
  return words;
}

kj::Array<capnp::word> serialize(capnp::MessageBuilder& builder) { return capnp::messageToFlatArray(builder); }

}  // namespace xproc
