// check_flat, the walk that lets a queue read a message without Cap'n Proto's checked
// reader, against that reader on arbitrary words, under the same limits: what the walk
// calls safe the reader accepts, and the message reads the same without bounds checks as
// with them; what the walk rejects the reader rejects. A message left to the reader
// (several segments, far or capability pointers) has no claim here beyond "no crash".
// The same for the pipeline the library uses (Message<T>::decode): it accepts exactly
// what the reader accepts. "Reads the same" is tests/message_check_test.cpp's: a full copy
// of the root through each reader gives the same bytes.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>
#include <optional>

#include "fuzz_check.h"
#include "xproc/message.h"
#include "xproc/message_check.h"

namespace {

using xproc::DecodeError;
using xproc::DecodeLimits;
using xproc::detail::FlatCheck;

using Words = kj::ArrayPtr<const capnp::word>;

kj::Array<capnp::word> flat(capnp::MessageBuilder& builder) { return capnp::messageToFlatArray(builder); }

// The root copied in full through the checked reader, under the limits' options, or
// nothing when the reader rejects the message: what "reading all of it" means, the claim
// of message_check.h. (One reader, one pass: a traversal before the copy would charge the
// traversal limit twice.)
std::optional<kj::Array<capnp::word>> checked_copy(Words words, const DecodeLimits& limits) {
  try {
    capnp::FlatArrayMessageReader reader(words, xproc::detail::reader_options(words.size(), limits));
    capnp::MallocMessageBuilder copy;
    copy.setRoot(reader.getRoot<capnp::AnyStruct>());
    return flat(copy);
  } catch (const kj::Exception&) {
    return std::nullopt;
  }
}

kj::Array<capnp::word> unchecked_copy(Words words) {
  capnp::MallocMessageBuilder copy;
  copy.setRoot(capnp::readMessageUnchecked<capnp::AnyStruct>(words.begin() + 1));
  return flat(copy);
}

void compare(Words words, const DecodeLimits& limits) {
  const auto checked = checked_copy(words, limits);
  std::optional<FlatCheck> verdict;
  try {
    verdict = xproc::detail::check_flat(words, limits);
  } catch (const DecodeError&) {
  }
  if (!verdict) {
    FUZZ_CHECK(!checked, "check_flat rejected a message the checked reader accepts");
  } else if (*verdict == FlatCheck::kSafe) {
    FUZZ_CHECK(checked, "check_flat passed a message the checked reader rejects");
    const auto unchecked = unchecked_copy(words);
    FUZZ_CHECK(checked->size() == unchecked.size() &&
                   std::memcmp(checked->begin(), unchecked.begin(), unchecked.size() * sizeof(capnp::word)) == 0,
               "the message reads differently without bounds checks");
  }

  // The library's own pipeline, the walk or the checked reader's traversal: it accepts
  // whatever the reader reads in full. (It may accept more: a message left to the reader
  // is checked further as it is read, as Cap'n Proto reads lazily.)
  if (checked) {
    try {
      const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(words.begin()),
                                             words.size() * sizeof(capnp::word));
      xproc::Message<capnp::AnyStruct>::decode(bytes, limits);
    } catch (const DecodeError& e) {
      FUZZ_CHECK(false, e.what());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A message is whole words; the walk's precondition is a segment table that describes
  // exactly the words given (check_segment_table), checked first by every caller.
  if (size < sizeof(capnp::word)) return 0;
  auto words = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
  std::memcpy(words.begin(), data, words.size() * sizeof(capnp::word));
  const Words message = words.asPtr();
  try {
    xproc::detail::check_segment_table(message);
  } catch (const DecodeError&) {
    return 0;
  }
  compare(message, DecodeLimits{});
  // Tight limits, where the walk's and the reader's accounting must still agree.
  DecodeLimits tight;
  tight.nesting_limit = 4;
  tight.traversal_limit_words = 16;
  compare(message, tight);
  return 0;
}
