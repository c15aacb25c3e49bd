// See framing.h.
#include "xproc/rpc/framing.h"

#include <cstring>

#include <capnp/serialize.h>
#include <kj/debug.h>

#include "xproc/message.h"

namespace xproc::rpc {
namespace {
constexpr uint64_t kMaxSegments = 512;  // as capnp's own readers allow
}

std::optional<size_t> framed_message_bytes(const kj::byte* data, size_t available, uint64_t max_words) {
  if (available < 8) return std::nullopt;
  uint32_t count;
  std::memcpy(&count, data, 4);
  const uint64_t segments = uint64_t{count} + 1;
  if (segments > kMaxSegments) {
    kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "a message with too many segments", segments));
  }
  const size_t table_bytes = ((4 + 4 * segments) + 7) & ~size_t{7};
  if (available < table_bytes) return std::nullopt;
  uint64_t words = 0;
  for (uint64_t i = 0; i < segments; ++i) {
    uint32_t size;
    std::memcpy(&size, data + 4 + 4 * i, 4);
    words += size;
  }
  if (words > max_words) {
    kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "a message larger than the reader allows", words, max_words));
  }
  return table_bytes + words * 8;
}

void append_framed(std::vector<kj::byte>& out, kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  // The messages before are whole words, so the table lands 8-byte aligned in the buffer.
  const size_t start = out.size();
  out.resize(start + detail::segment_table_bytes(segments.size()));
  detail::write_segment_table(segments, reinterpret_cast<std::byte*>(out.data() + start));
  for (auto segment : segments) {
    const auto* bytes = reinterpret_cast<const kj::byte*>(segment.begin());
    out.insert(out.end(), bytes, bytes + segment.size() * sizeof(capnp::word));
  }
}

kj::Maybe<capnp::MessageReaderAndFds> reader_owning(kj::Array<capnp::word> words, capnp::ReaderOptions options) {
  auto reader = kj::heap<capnp::FlatArrayMessageReader>(words.asPtr(), options);
  return capnp::MessageReaderAndFds{reader.attach(kj::mv(words)), nullptr};
}

}  // namespace xproc::rpc
