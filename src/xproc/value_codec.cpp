// Value <-> schema::Value (Cap'n Proto). Decoding is defensive: the depth is counted
// explicitly against DecodeLimits::nesting_limit, an unknown union member is an error, and
// every kj::Exception Cap'n Proto raises on malformed input becomes DecodeError.
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <algorithm>
#include <optional>

#include "xproc/kj_errors_internal.h"
#include "xproc/value.h"
#include "xproc/value_decoding_internal.h"

namespace xproc {
namespace {

// Room to make ahead for a list or map of `claimed` elements. Not the claim itself: a
// list of zero-sized structs costs its sender nothing, and Cap'n Proto admits up to the
// traversal limit of them (millions); larger containers grow as their elements decode.
size_t reservation(size_t claimed) {
  constexpr size_t kLargestReservation = 1024;
  return std::min(claimed, kLargestReservation);
}

// One message's decoding: its depth and its allowance of elements that take no bytes.
class Decoder {
 public:
  explicit Decoder(const ProxyResolver& resolve) : resolve_(resolve) {}

  Value value(schema::Value::Reader reader, int depth_left) {
    if (depth_left <= 0) throw DecodeError("Value nested deeper than the decode limit");
    switch (reader.which()) {
      case schema::Value::NULL_: return Value();
      case schema::Value::BOOL: return Value(reader.getBool());
      case schema::Value::INT64: return Value(static_cast<long long>(reader.getInt64()));
      case schema::Value::BIG_INT: throw DecodeError("an int past 64 bits, which xproc's C++ Value does not hold");
      case schema::Value::FLOAT64: return Value(reader.getFloat64());
      case schema::Value::TEXT: {
        auto text = reader.getText();
        return Value(std::string(text.cStr(), text.size()));
      }
      case schema::Value::DATA: {
        auto data = reader.getData();
        return Value::bytes(std::string_view(reinterpret_cast<const char*>(data.begin()), data.size()));
      }
      case schema::Value::LIST: return Value(items(reader.getList(), depth_left - 1));
      case schema::Value::MAP: {
        ValueMap map;
        auto entries = reader.getMap();
        budget_.charge(entries);
        map.reserve(reservation(entries.size()));
        // Duplicate keys: the last value wins, at the first key's position (as a Python
        // dict display {k: 1, k: 2} does).
        for (auto entry : entries) {
          map.set(value(entry.getKey(), depth_left - 1), value(entry.getValue(), depth_left - 1));
        }
        return Value(std::move(map));
      }
      case schema::Value::STRUCT: {
        auto s = reader.getStruct();
        auto root = s.getValue().getAs<capnp::AnyStruct>();
        return Value(TypedStruct{s.getSchemaId(), std::make_shared<const kj::Array<capnp::word>>(serialize(root))});
      }
      case schema::Value::TUPLE: return Value::tuple(items(reader.getTuple(), depth_left - 1));
      case schema::Value::PROXY: {
        auto proxy = reader.getProxy();
        ProxyRef ref{proxy.getManager(), proxy.getId(), nullptr};
        if (resolve_) resolve_(ref);
        return Value(std::move(ref));
      }
      case schema::Value::ARRAY: return Value(Array::copy_of(ArrayView::read(reader.getArray())));
    }
    throw DecodeError("unknown Value kind " + std::to_string(static_cast<int>(reader.which())));
  }

 private:
  // The items of a list or a tuple.
  Value::List items(capnp::List<schema::Value>::Reader list, int depth_left) {
    budget_.charge(list);
    Value::List out;
    out.reserve(reservation(list.size()));
    for (auto item : list) out.push_back(value(item, depth_left));
    return out;
  }

  const ProxyResolver& resolve_;
  detail::EmptyElementBudget budget_;
};

}  // namespace

void Value::to_capnp(schema::Value::Builder builder) const {
  switch (kind()) {
    case Kind::kNull: builder.setNull(); return;
    case Kind::kBool: builder.setBool(as_bool()); return;
    case Kind::kInt: builder.setInt64(as_int()); return;
    case Kind::kFloat: builder.setFloat64(as_float()); return;
    case Kind::kText: {
      const std::string& text = as_text();
      builder.setText(capnp::Text::Reader(text.data(), text.size()));
      return;
    }
    case Kind::kBytes: {
      const std::string& data = as_bytes();
      builder.setData(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(data.data()), data.size()));
      return;
    }
    case Kind::kList: {
      const List& items = as_list();
      auto size = static_cast<unsigned>(items.size());
      auto list = is_tuple() ? builder.initTuple(size) : builder.initList(size);
      for (unsigned i = 0; i < items.size(); ++i) items[i].to_capnp(list[i]);
      return;
    }
    case Kind::kMap: {
      const ValueMap& map = as_map();
      auto entries = builder.initMap(static_cast<unsigned>(map.size()));
      unsigned i = 0;
      map.for_each([&](const Value& k, const Value& v) {
        k.to_capnp(entries[i].initKey());
        v.to_capnp(entries[i].initValue());
        ++i;
      });
      return;
    }
    case Kind::kStruct: {
      const TypedStruct& s = as_struct();
      auto out = builder.initStruct();
      out.setSchemaId(s.schema_id);
      if (s.message) {
        capnp::FlatArrayMessageReader reader(*s.message);
        out.getValue().setAs<capnp::AnyStruct>(reader.getRoot<capnp::AnyStruct>());
      }
      return;
    }
    case Kind::kProxy: {
      const ProxyRef& ref = as_proxy();
      auto out = builder.initProxy();
      out.setManager(ref.manager);
      out.setId(ref.id);
      return;
    }
    case Kind::kArray: as_array().to_capnp(builder.initArray()); return;
  }
}

Value Value::from_capnp(schema::Value::Reader reader, const DecodeLimits& limits, const ProxyResolver& resolve) {
  try {
    return Decoder(resolve).value(reader, limits.nesting_limit);
  } catch (const kj::Exception& e) {
    detail::rethrow_kj(e, ErrorKind::kDecodeError, "invalid Value: ");
  }
}

kj::Array<capnp::word> Value::encode() const {
  detail::InlineMessageBuilder encoded;
  to_capnp(encoded.builder().initRoot<schema::Value>());
  return capnp::messageToFlatArray(encoded.builder());
}

Value Value::decode(std::span<const std::byte> bytes, const DecodeLimits& limits) {
  // The Value built is the owned copy: no copy of the message itself but a small one's.
  return detail::with_validated_root<schema::Value, detail::Reads::kAll>(
      bytes, limits, [&](schema::Value::Reader root) { return from_capnp(root, limits); });
}

}  // namespace xproc
