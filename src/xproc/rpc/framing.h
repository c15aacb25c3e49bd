// The standard serialization's framing, as the Manager's transports read it: a segment
// count and the segment sizes (32-bit, padded to a word), then the segments.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include <vector>

#include <capnp/serialize-async.h>
#include <kj/common.h>

namespace xproc::rpc {

// How many bytes the message starting at `data` takes, once its segment table is within
// the `available` bytes; nullopt before that. Throws a DISCONNECTED kj::Exception for
// more than 512 segments or more than `max_words` words, before a reader allocates room
// for a size nobody checked.
std::optional<size_t> framed_message_bytes(const kj::byte* data, size_t available, uint64_t max_words);

// Appends the framed message of `segments` (segment table, then the segments) to `out`.
void append_framed(std::vector<kj::byte>& out, kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments);

// A reader of the message in `words`, which it owns.
kj::Maybe<capnp::MessageReaderAndFds> reader_owning(kj::Array<capnp::word> words, capnp::ReaderOptions options);

}  // namespace xproc::rpc
