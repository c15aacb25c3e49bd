// What a queue or connection carries, seen from Python: xproc Values (any supported
// Python object) or the messages of one Cap'n Proto struct type (pycapnp builders and
// readers in, pycapnp readers out).
#pragma once
#include <capnp/message.h>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include "bindings.h"
#include "referred_memory.h"
#include "xproc/message.h"

namespace xproc::python {

// One encoded message, made with the GIL held and copied out without it. Lives on the
// caller's stack, and a small Value is built in the first segment inside it: encoding one
// allocates nothing (a heap builder cost a malloc and a zeroed calloc per message).
class EncodedMessage {
 public:
  EncodedMessage() = default;
  EncodedMessage(const EncodedMessage&) = delete;
  EncodedMessage& operator=(const EncodedMessage&) = delete;

  size_t size() const noexcept;
  // Writes the flat serialization (size() bytes, 8-byte aligned destination).
  void write_to(std::byte* out) const;

 private:
  friend class MessageCodec;
  ReferredMemory referred_;  // what value_ refers to; outlives it
  // mutable: capnp's getSegmentsForOutput() is not const, though it changes nothing.
  mutable std::optional<detail::InlineMessageBuilder> value_;  // a Value, or else ...
  nb::bytes raw_;                                              // ... a pycapnp message's bytes
};

class MessageCodec {
 public:
  // The schema id of xproc's Value: what untyped queues and connections record.
  static uint64_t value_schema_id() noexcept;

  explicit MessageCodec(uint64_t schema_id = value_schema_id()) : schema_id_(schema_id) {}
  uint64_t schema_id() const noexcept { return schema_id_; }
  bool carries_values() const noexcept { return schema_id_ == value_schema_id(); }

  // TypeError when `object` cannot be sent here (an unsupported type, or a struct of
  // another schema on a typed channel).
  void encode(nb::handle object, EncodedMessage& out) const;
  // DecodeError when the bytes are not a message of this channel's type.
  nb::object decode(std::span<const std::byte> message) const;

 private:
  uint64_t schema_id_;
};

}  // namespace xproc::python
