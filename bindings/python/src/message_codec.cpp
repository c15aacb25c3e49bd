#include "message_codec.h"

#include <capnp/serialize.h>

#include <cstring>
#include <string>

#include "python_values.h"
#include "xproc/message.h"  // schema_id_hex, flat serialization

namespace xproc::python {

size_t EncodedMessage::size() const noexcept {
  if (value_) return value_->flat_size();
  return raw_.size();
}

void EncodedMessage::write_to(std::byte* out) const {
  if (value_) {
    value_->write_flat(out);
  } else {
    std::memcpy(out, raw_.c_str(), raw_.size());
  }
}

uint64_t MessageCodec::value_schema_id() noexcept { return capnp::typeId<schema::Value>(); }

void MessageCodec::encode(nb::handle object, EncodedMessage& encoded) const {
  if (carries_values()) {
    encoded.value_.emplace();
    encode_value(object, encoded.value_->builder(), encoded.referred_);
    return;
  }
  auto message = as_pycapnp_message(object);
  if (!message) {
    throw nb::type_error(("this channel carries Cap'n Proto structs " + schema_id_hex(schema_id_) +
                          "; send a pycapnp builder or reader of that type, not '" + Py_TYPE(object.ptr())->tp_name +
                          "'")
                             .c_str());
  }
  if (message->schema_id != schema_id_) {
    throw nb::type_error(("this channel carries Cap'n Proto structs " + schema_id_hex(schema_id_) + ", not " +
                          schema_id_hex(message->schema_id))
                             .c_str());
  }
  encoded.raw_ = std::move(message->bytes);
}

nb::object MessageCodec::decode(std::span<const std::byte> message) const {
  if (carries_values()) return decode_value(message);
  // Checked here, as C++'s Queue<T> checks it, so a malformed message is a DecodeError
  // at get() rather than an error from pycapnp at some later field access.
  detail::with_validated_root<capnp::AnyStruct>(message, DecodeLimits{}, [](capnp::AnyStruct::Reader) {});
  return pycapnp_reader(schema_id_, nb::bytes(reinterpret_cast<const char*>(message.data()), message.size()));
}

}  // namespace xproc::python
