// xproc::Value: the SDK's "any object" — what untyped queues carry and Manager containers
// hold. It behaves like the Python object it stands for: equality and hashing follow
// Python (1 == 1.0 == True, so they are one dict key), maps keep insertion order, and
// repr() prints exactly what Python's repr() prints for the same object.
//
// On the wire a Value is schema/xproc/value.capnp's Value; encode()/decode() convert, and
// decoding untrusted bytes is bounded (DecodeLimits) so hostile input gives DecodeError,
// never a stack overflow.
#pragma once

#include <capnp/message.h>
#include <kj/array.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "xproc/array.h"
#include "xproc/errors.h"
#include "xproc/message.h"
#include "xproc/value.capnp.h"

namespace xproc {

class Value;
class ValueMap;

// Python bytes: an owned byte string, distinct from text.
struct Bytes {
  std::string data;
  friend bool operator==(const Bytes&, const Bytes&) = default;
};

// A message of a user's schema carried inside a Value: the schema's 64-bit type id and
// the struct as a flat Cap'n Proto message whose root is that struct.
struct TypedStruct {
  uint64_t schema_id = 0;
  std::shared_ptr<const kj::Array<capnp::word>> message;  // immutable, shared on copy
  friend bool operator==(const TypedStruct& a, const TypedStruct& b);
};

// A Manager's shared object named inside a Value (schema/xproc/value.capnp, Value.Proxy):
// the server's instance and the object's id. A client reaches it with
// Manager::attach<P>(id) after checking `manager` against Manager::instance().
struct ProxyRef {
  uint64_t manager = 0;
  uint64_t id = 0;
  // In the server's own process, what keeps the object alive while a Value names it
  // (set by the server when it decodes a call's Value; empty elsewhere). Not part of
  // equality: two ProxyRefs to one object are equal.
  std::shared_ptr<const void> keep_alive;
  friend bool operator==(const ProxyRef& a, const ProxyRef& b) noexcept {
    return a.manager == b.manager && a.id == b.id;
  }
};

// Called by Value::from_capnp for each ProxyRef it decodes, to check it and to set its
// keep_alive; what it throws ends the decoding.
using ProxyResolver = std::function<void(ProxyRef&)>;

class Value {
 public:
  enum class Kind { kNull, kBool, kInt, kFloat, kText, kBytes, kList, kMap, kStruct, kProxy, kArray };
  using List = std::vector<Value>;

  // None.
  Value() noexcept;
  Value(std::nullptr_t) noexcept;  // NOLINT(google-explicit-constructor): Value v = nullptr;
  // bool must not be captured by the integer or pointer overloads.
  Value(bool b) noexcept;       // NOLINT
  Value(int i) noexcept;        // NOLINT
  Value(long i) noexcept;       // NOLINT
  Value(long long i) noexcept;  // NOLINT
  // Unsigned integers above INT64_MAX raise ValueError (Value holds signed 64-bit ints).
  Value(unsigned i) noexcept;        // NOLINT
  Value(unsigned long i);            // NOLINT
  Value(unsigned long long i);       // NOLINT
  Value(double d) noexcept;          // NOLINT
  Value(const char* text);           // NOLINT: text (str), UTF-8
  Value(std::string text) noexcept;  // NOLINT
  Value(std::string_view text);      // NOLINT
  Value(Bytes bytes) noexcept;       // NOLINT
  Value(List list) noexcept;         // NOLINT
  Value(ValueMap map);               // NOLINT
  Value(TypedStruct s) noexcept;     // NOLINT
  Value(ProxyRef proxy) noexcept;    // NOLINT
  Value(Array array) noexcept;       // NOLINT

  Value(const Value& other);
  Value(Value&& other) noexcept;
  Value& operator=(const Value& other);
  Value& operator=(Value&& other) noexcept;
  ~Value();

  // Builders for kinds a literal cannot pick: Value::bytes("\0a"), Value::list({1, 2}),
  // Value::tuple({1, "a"}), Value::map({{"a", 1}, {0.25, nullptr}}).
  static Value bytes(std::string_view data);
  static Value list(std::initializer_list<Value> items);
  // A Python tuple: a list in C++ (kind() is kList, as_list() reads it) that is_tuple().
  static Value tuple(List items);
  static Value map(std::initializer_list<std::pair<Value, Value>> entries);
  // A typed struct holding a copy of `root` tagged with T's schema id.
  template <typename Reader>
  static Value typed(Reader root);

  Kind kind() const noexcept;
  // Python's type name: "NoneType", "bool", "int", "float", "str", "bytes", "list",
  // "tuple", "dict", "struct", "proxy", "ndarray".
  std::string_view type_name() const noexcept;

  bool is_null() const noexcept { return kind() == Kind::kNull; }
  bool is_bool() const noexcept { return kind() == Kind::kBool; }
  bool is_int() const noexcept { return kind() == Kind::kInt; }
  bool is_float() const noexcept { return kind() == Kind::kFloat; }
  bool is_text() const noexcept { return kind() == Kind::kText; }
  bool is_bytes() const noexcept { return kind() == Kind::kBytes; }
  bool is_list() const noexcept { return kind() == Kind::kList; }  // tuples too
  bool is_tuple() const noexcept { return std::holds_alternative<Tuple>(storage_); }
  bool is_map() const noexcept { return kind() == Kind::kMap; }
  bool is_struct() const noexcept { return kind() == Kind::kStruct; }
  bool is_proxy() const noexcept { return kind() == Kind::kProxy; }
  bool is_array() const noexcept { return kind() == Kind::kArray; }

  // Accessors throw TypeError naming both kinds when the Value is of another kind.
  // as_int() accepts a bool (as Python's int(True)); as_float() accepts int and bool.
  bool as_bool() const;
  int64_t as_int() const;
  double as_float() const;
  const std::string& as_text() const;
  const std::string& as_bytes() const;
  const List& as_list() const;
  List& as_list();
  const ValueMap& as_map() const;
  ValueMap& as_map();
  const TypedStruct& as_struct() const;
  const ProxyRef& as_proxy() const;
  const Array& as_array() const;

  // Python truthiness: None, False, 0, 0.0, and empty str/bytes/list/dict/array are false.
  bool truthy() const noexcept;

  // Exactly Python's repr() of the equivalent object: None, True, 1, 1.5, 1e+16, 'it\'s'
  // -> "it's", b'\x00a', [0, 1, 2], {0.25: None, 'Process_9': '1', '2': 2}; an array in
  // numpy's layout, its numbers as Python prints them: array([[1, 2], [3, 4]], dtype=int32).
  std::string repr() const;

  // Python equality: numbers compare by value across bool/int/float (NaN != NaN); str
  // never equals bytes, nor a tuple a list; lists and maps compare element-wise (maps
  // ignore order; arrays compare by dtype, shape and bytes).
  friend bool operator==(const Value& a, const Value& b) noexcept;
  // Consistent with ==: hash(1) == hash(1.0) == hash(True). Lists and maps hash by
  // content (C++ callers may use them as keys; Python would refuse).
  size_t hash() const noexcept;

  // To and from the Cap'n Proto Value. from_capnp throws DecodeError for unknown union
  // members or nesting deeper than limits.nesting_limit; `resolve`, when given, sees every
  // proxy decoded.
  void to_capnp(schema::Value::Builder builder) const;
  static Value from_capnp(schema::Value::Reader reader, const DecodeLimits& limits = {},
                          const ProxyResolver& resolve = nullptr);

  // The standard flat serialization of this Value as a schema::Value message, and back.
  kj::Array<capnp::word> encode() const;
  static Value decode(std::span<const std::byte> bytes, const DecodeLimits& limits = {});

 private:
  struct Tuple {
    List items;
    friend bool operator==(const Tuple&, const Tuple&) = default;
  };
  // In Kind's order, then the tuple (a kList).
  using Storage = std::variant<std::monostate, bool, int64_t, double, std::string, Bytes, List,
                               std::unique_ptr<ValueMap> /* deep-copied */, TypedStruct, ProxyRef, Array, Tuple>;
  Storage storage_;
};

struct ValueHash {
  size_t operator()(const Value& v) const noexcept { return v.hash(); }
};

// Python dict semantics: keys unique under Python equality, iteration in insertion order,
// re-setting a key keeps its position (and its original key object), erase keeps the
// order of the rest. Lookups, inserts and erases are O(1) on average.
class ValueMap {
 public:
  using Entry = std::pair<Value, Value>;

  ValueMap();
  ValueMap(std::initializer_list<Entry> entries);
  ValueMap(const ValueMap&);
  ValueMap(ValueMap&&) noexcept;
  ValueMap& operator=(const ValueMap&);
  ValueMap& operator=(ValueMap&&) noexcept;
  ~ValueMap();

  size_t size() const noexcept;
  bool empty() const noexcept { return size() == 0; }

  // nullptr when absent.
  const Value* find(const Value& key) const;
  Value* find(const Value& key);
  bool contains(const Value& key) const { return find(key) != nullptr; }
  // Throws KeyError with the key's repr when absent.
  const Value& at(const Value& key) const;
  // Inserts None when absent, like a defaultdict(lambda: None).
  Value& operator[](const Value& key);
  // Sets key to value; returns true when the key was new.
  bool set(Value key, Value value);
  // Makes room for `entries` entries without reallocating.
  void reserve(size_t entries);
  // Removes key; returns its value, or nullopt when absent.
  std::optional<Value> erase(const Value& key);
  // Removes and returns the last-inserted entry (Python popitem); KeyError when empty.
  Entry pop_last();
  void clear() noexcept;

  // Live entries in insertion order. Invalidated by any mutation.
  template <typename F>
  void for_each(F&& f) const {
    for (const auto& slot : slots_) {
      if (slot) f(slot->first, slot->second);
    }
  }
  std::vector<Value> keys() const;
  std::vector<Value> values() const;
  std::vector<Entry> items() const;

  // Order-insensitive, as Python's dict ==.
  friend bool operator==(const ValueMap& a, const ValueMap& b);

 private:
  struct Index;
  // Up to this many slots a lookup scans them; past it a hash index is kept.
  static constexpr size_t kScanLimit = 8;
  std::optional<size_t> position_of(const Value& key) const;
  void build_index();
  void compact();
  std::vector<std::optional<Entry>> slots_;  // insertion order; nullopt = erased
  std::unique_ptr<Index> index_;             // key -> slot position; null while small
  size_t live_ = 0;
};

template <typename Reader>
Value Value::typed(Reader root) {
  using Struct = typename Reader::Reads;
  return Value(TypedStruct{capnp::typeId<Struct>(), std::make_shared<const kj::Array<capnp::word>>(serialize(root))});
}

}  // namespace xproc

template <>
struct std::hash<xproc::Value> {
  size_t operator()(const xproc::Value& v) const noexcept { return v.hash(); }
};
