// Flat serialization of a builder's segments for Queue<T>::put(MessageBuilder&).
#include "xproc/queue.h"

namespace xproc::detail {

size_t flat_size(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  return capnp::computeSerializedSizeInWords(segments) * sizeof(capnp::word);
}

void write_flat(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments, std::byte* out) {
  // Segment table: count - 1, then each size in words, padded to a whole word.
  auto* table = reinterpret_cast<uint32_t*>(out);
  table[0] = static_cast<uint32_t>(segments.size() - 1);
  for (size_t i = 0; i < segments.size(); ++i) table[i + 1] = static_cast<uint32_t>(segments[i].size());
  size_t offset = (segments.size() / 2 + 1) * sizeof(capnp::word);
  if (segments.size() % 2 == 0) table[segments.size() + 1] = 0;
  for (auto segment : segments) {
    std::memcpy(out + offset, segment.begin(), segment.size() * sizeof(capnp::word));
    offset += segment.size() * sizeof(capnp::word);
  }
}

}  // namespace xproc::detail
