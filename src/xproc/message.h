// Message<T>: an owned, validated copy of a Cap'n Proto message, and the functions that
// write a message in the standard flat serialization (segment table + segments).
//
// This is the "pickle" of xproc: what a receiver gets is its own copy, so nothing it does
// touches the sender's data. Drop below it (a zero-copy view) only inside a queue lease.
#pragma once

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>
#include <kj/exception.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "xproc/errors.h"
#include "xproc/message_check.h"

namespace xproc {

// Bounds on the work of decoding untrusted bytes. Cap'n Proto reads lazily, so these
// bound a full traversal, not just the first access.
struct DecodeLimits {
  // Words a traversal may visit; raised automatically to twice the message's own size so
  // that a large, honest message always decodes. Protects against pointer amplification.
  uint64_t traversal_limit_words = 8u * 1024 * 1024;
  // Depth of nested structs and lists; deeper messages raise DecodeError.
  int nesting_limit = 64;
};

namespace detail {

// Reader options for a message of `size_words` words under `limits`.
capnp::ReaderOptions reader_options(size_t size_words, const DecodeLimits& limits);

// Validation in two steps, so a caller validates with the reader it keeps: the segment
// table must describe exactly `words`; then a full traversal of the root.
void check_segment_table(kj::ArrayPtr<const capnp::word> words);
void check_traversal(capnp::AnyStruct::Reader root);

// DecodeError unless `bytes` is a whole number of words (no Cap'n Proto message has any
// other length).
void require_whole_words(size_t bytes);

// Constructs `reader` in place (on the caller's stack or inside its object: no allocation)
// over `words`, whose segment table was checked; DecodeError rather than kj::Exception.
void open_reader(std::optional<capnp::FlatArrayMessageReader>& reader, kj::ArrayPtr<const capnp::word> words,
                 const DecodeLimits& limits);

// kj's complaint about a message's bytes, as DecodeError (detail::rethrow_kj).
[[noreturn]] void throw_decode_error(const kj::Exception& error);

// Size of the flat serialization of a builder's segments, and writing it (to an 8-byte
// aligned destination of that size).
size_t flat_size(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments);
void write_flat(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments, std::byte* out);
// The serialization's first part, the segment table (count - 1, each segment's size in
// words, padded to a whole word): its size for `segments` segments, and writing it.
size_t segment_table_bytes(size_t segments);
void write_segment_table(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments, std::byte* out);

// A message builder whose first segment lives inside this object, so on the caller's
// stack when it is a local: a small message is built without any allocation
// (MallocMessageBuilder's own first segment is a zeroed heap block); a larger one grows
// into heap segments.
class InlineMessageBuilder {
 public:
  InlineMessageBuilder() = default;
  InlineMessageBuilder(const InlineMessageBuilder&) = delete;
  InlineMessageBuilder& operator=(const InlineMessageBuilder&) = delete;

  capnp::MallocMessageBuilder& builder() noexcept { return builder_; }
  // The flat serialization of what was built: its size, and writing it (8-byte aligned
  // destination of that size).
  size_t flat_size() { return detail::flat_size(builder_.getSegmentsForOutput()); }
  void write_flat(std::byte* out) { detail::write_flat(builder_.getSegmentsForOutput(), out); }

 private:
  static constexpr size_t kFirstSegmentWords = 64;
  capnp::word first_segment_[kFirstSegmentWords]{};  // zeroed, as the builder requires
  capnp::MallocMessageBuilder builder_{kj::arrayPtr(first_segment_, kFirstSegmentWords)};
};

// The root as a T, with Cap'n Proto's complaints (a root that is not a struct) as DecodeError.
template <typename T>
typename T::Reader root_of(capnp::MessageReader& reader) {
  try {
    return reader.getRoot<T>();
  } catch (const kj::Exception& e) {
    throw_decode_error(e);
  }
}

// Copies arbitrary bytes into a word-aligned array; DecodeError if the length is not a
// whole number of words (no Cap'n Proto message can have that length).
kj::Array<capnp::word> copy_to_words(std::span<const std::byte> bytes);

// `bytes` as words: in place when they are 8-byte aligned (a queue's ring, a received
// buffer), else copied into `copy`. DecodeError unless a whole number of words.
kj::ArrayPtr<const capnp::word> as_words(std::span<const std::byte> bytes, kj::Array<capnp::word>& copy);

// The root of `words` as a T through Cap'n Proto's checked reader, constructed in
// `checked`, after a full traversal. Safe over bytes another process may change meanwhile
// (a queue's ring): every pointer is checked again as it is followed.
template <typename T>
typename T::Reader checked_root(kj::ArrayPtr<const capnp::word> words, const DecodeLimits& limits,
                                std::optional<capnp::FlatArrayMessageReader>& checked) {
  open_reader(checked, words, limits);
  const auto root = root_of<T>(*checked);
  check_traversal(capnp::AnyStruct::Reader(root));
  return root;
}

// The root of the flat message `words` as a T, validated in full. When check_flat decides
// (almost every message a queue carries), the root is read without bounds checks, which
// the check made safe, and no reader is built; otherwise as checked_root. Only for words
// nobody else can change while they are read (a private copy): the check holds for the
// bytes as they were.
template <typename T>
typename T::Reader validated_root(kj::ArrayPtr<const capnp::word> words, const DecodeLimits& limits,
                                  std::optional<capnp::FlatArrayMessageReader>& checked) {
  check_segment_table(words);
  if (check_flat(words, limits) == FlatCheck::kSafe) return capnp::readMessageUnchecked<T>(words.begin() + 1);
  return checked_root<T>(words, limits, checked);
}

// What the f of with_validated_root reads of the message: any part (kPart), or every
// pointer in it (kAll), as building an owned copy of it does, turning the kj::Exception of
// a bad pointer into DecodeError. A message read in place through the checked reader is
// then checked as f goes, under the same limits, without a traversal of its own first.
enum class Reads { kPart, kAll };

// Calls f(T::Reader) on the flat message `bytes`, validated in full, and returns what f
// returns. `bytes` may be shared memory that another process could change meanwhile: a
// small message is copied onto the stack and read as validated_root reads; a larger one is
// read in place through the checked reader (its copy would cost more than the reader).
template <typename T, Reads reads = Reads::kPart, typename F>
decltype(auto) with_validated_root(std::span<const std::byte> bytes, const DecodeLimits& limits, F&& f) {
  constexpr size_t kStackCopyBytes = 1024;
  std::optional<capnp::FlatArrayMessageReader> checked;
  if (bytes.size() <= kStackCopyBytes) {
    require_whole_words(bytes.size());
    capnp::word local[kStackCopyBytes / sizeof(capnp::word)];
    if (!bytes.empty()) std::memcpy(static_cast<void*>(local), bytes.data(), bytes.size());
    return f(validated_root<T>(kj::arrayPtr(local, bytes.size() / sizeof(capnp::word)), limits, checked));
  }
  kj::Array<capnp::word> copy;
  const auto words = as_words(bytes, copy);
  check_segment_table(words);
  if constexpr (reads == Reads::kAll) {
    open_reader(checked, words, limits);
    return f(root_of<T>(*checked));
  } else {
    return f(checked_root<T>(words, limits, checked));
  }
}

// An owned flat message and, for a message check_flat leaves to it, the checked reader
// over it, in one heap block: decoding a message costs one allocation, and nothing moves
// (the readers handed out point into it).
class FlatMessage;
struct FlatMessageDeleter {
  void operator()(FlatMessage* message) const noexcept;
};
using FlatMessagePtr = std::unique_ptr<FlatMessage, FlatMessageDeleter>;

class FlatMessage {
 public:
  // Copies `bytes`; DecodeError if they are not a whole number of words (no Cap'n Proto
  // message has any other length). Validation is the typed caller's (validated_root).
  static FlatMessagePtr copy(std::span<const std::byte> bytes);
  // Takes ownership of already word-aligned storage (no copy).
  static FlatMessagePtr adopt(kj::Array<capnp::word> words);

  kj::ArrayPtr<const capnp::word> words() const noexcept { return words_; }
  // Where validated_root puts a checked reader, when it needs one.
  std::optional<capnp::FlatArrayMessageReader>& checked_reader() noexcept { return checked_reader_; }

 private:
  friend struct FlatMessageDeleter;
  FlatMessage() = default;
  ~FlatMessage() = default;

  kj::Array<capnp::word> adopted_;  // empty when the words follow this object in the block
  kj::ArrayPtr<const capnp::word> words_;
  std::optional<capnp::FlatArrayMessageReader> checked_reader_;
};

}  // namespace detail

// A schema (type) id as Cap'n Proto writes it: "0x" and 16 hex digits.
std::string schema_id_hex(uint64_t id);

// Size in bytes of `root`'s single-segment flat serialization. Traverses the message.
size_t flat_size(capnp::AnyStruct::Reader root);

// Writes `root` as a single-segment flat message into `out`, which must be exactly
// flat_size(root) bytes and 8-byte aligned. Makes no allocation; this is how queues
// serialize straight into shared memory.
void write_flat(capnp::AnyStruct::Reader root, std::span<std::byte> out);

// The standard flat serialization of `root` (what capnp::messageToFlatArray writes for a
// single-segment message); `capnp decode` reads it.
kj::Array<capnp::word> serialize(capnp::AnyStruct::Reader root);
template <typename Reader>
requires requires(Reader r) { capnp::toAny(r); }
kj::Array<capnp::word> serialize(Reader root) { return serialize(capnp::AnyStruct::Reader(capnp::toAny(root))); }
// The flat serialization of a builder's message, copying its segments as they are.
kj::Array<capnp::word> serialize(capnp::MessageBuilder& builder);

// An owned, validated Cap'n Proto message whose root is a T. Move-only; cheap to move.
// Readers it hands out stay valid as long as the Message lives (and across moves).
template <typename T>
class Message {
 public:
  using Reader = typename T::Reader;

  // Validates and copies `bytes` (a flat serialization). Throws DecodeError on garbage:
  // a bad segment table, out-of-bounds pointers, trailing bytes, nesting or traversal
  // over `limits`, or a root that is not a struct.
  static Message decode(std::span<const std::byte> bytes, const DecodeLimits& limits = {}) {
    return Message(detail::FlatMessage::copy(bytes), limits);
  }

  // Like decode, taking ownership of already word-aligned storage (no copy).
  static Message adopt(kj::Array<capnp::word> words, const DecodeLimits& limits = {}) {
    return Message(detail::FlatMessage::adopt(kj::mv(words)), limits);
  }

  // Serializes `root` into a new owned message (one copy).
  static Message copy_of(Reader root) { return adopt(serialize(root)); }

  Message(Message&&) noexcept = default;
  Message& operator=(Message&&) noexcept = default;

  // The root, read in place: valid while this Message lives, moves included.
  Reader reader() const noexcept { return root_; }
  const Reader* operator->() const noexcept { return &root_; }
  const Reader& operator*() const noexcept { return root_; }

  // The flat serialization this message was read from.
  std::span<const std::byte> bytes() const noexcept {
    const auto words = message_->words();
    return {reinterpret_cast<const std::byte*>(words.begin()), words.size() * sizeof(capnp::word)};
  }

 private:
  Message(detail::FlatMessagePtr message, const DecodeLimits& limits)
      : message_(std::move(message)),
        root_(detail::validated_root<T>(message_->words(), limits, message_->checked_reader())) {}

  detail::FlatMessagePtr message_;
  Reader root_;
};

}  // namespace xproc
