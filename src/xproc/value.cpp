// xproc::Value: construction, accessors, Python equality and hashing.
// repr() lives in value_repr.cpp, the Cap'n Proto codec in value_codec.cpp and the
// insertion-ordered map in value_map.cpp.
#include "xproc/value.h"

#include <bit>
#include <cmath>
#include <functional>
#include <limits>

namespace xproc {
namespace {

// By storage index: Kind's order, then the tuple.
constexpr std::string_view kKindNames[] = {"NoneType", "bool", "int",    "float", "str",     "bytes",
                                           "list",     "dict", "struct", "proxy", "ndarray", "tuple"};

int64_t checked_unsigned(unsigned long long i) {
  if (i > static_cast<unsigned long long>(std::numeric_limits<int64_t>::max())) {
    throw ValueError("integer " + std::to_string(i) + " does not fit in a signed 64-bit Value");
  }
  return static_cast<int64_t>(i);
}

// A float equal to an int64 (Python compares int and float exactly, not by rounding).
std::optional<int64_t> exact_int(double d) {
  if (!std::isfinite(d) || std::trunc(d) != d) return std::nullopt;
  if (d < -9223372036854775808.0 || d >= 9223372036854775808.0) return std::nullopt;
  return static_cast<int64_t>(d);
}

size_t mix(size_t seed, size_t h) noexcept { return seed ^ (h + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2)); }

}  // namespace

bool operator==(const TypedStruct& a, const TypedStruct& b) {
  if (a.schema_id != b.schema_id) return false;
  if (a.message == b.message) return true;
  if (!a.message || !b.message || a.message->size() != b.message->size()) return false;
  return std::memcmp(a.message->begin(), b.message->begin(), a.message->size() * sizeof(capnp::word)) == 0;
}

Value::Value() noexcept = default;
Value::Value(std::nullptr_t) noexcept {}
Value::Value(bool b) noexcept : storage_(b) {}
Value::Value(int i) noexcept : storage_(int64_t{i}) {}
Value::Value(long i) noexcept : storage_(int64_t{i}) {}
Value::Value(long long i) noexcept : storage_(int64_t{i}) {}
Value::Value(unsigned i) noexcept : storage_(int64_t{i}) {}
Value::Value(unsigned long i) : storage_(checked_unsigned(i)) {}
Value::Value(unsigned long long i) : storage_(checked_unsigned(i)) {}
Value::Value(double d) noexcept : storage_(d) {}
Value::Value(const char* text) : storage_(std::string(text)) {}
Value::Value(std::string text) noexcept : storage_(std::move(text)) {}
Value::Value(std::string_view text) : storage_(std::string(text)) {}
Value::Value(Bytes bytes) noexcept : storage_(std::move(bytes)) {}
Value::Value(List list) noexcept : storage_(std::move(list)) {}
Value::Value(ValueMap map) : storage_(std::make_unique<ValueMap>(std::move(map))) {}
Value::Value(TypedStruct s) noexcept : storage_(std::move(s)) {}
Value::Value(ProxyRef proxy) noexcept : storage_(std::move(proxy)) {}
Value::Value(Array array) noexcept : storage_(std::move(array)) {}

Value::Value(const Value& other) {
  if (const auto* map = std::get_if<std::unique_ptr<ValueMap>>(&other.storage_)) {
    storage_ = std::make_unique<ValueMap>(**map);
  } else {
    std::visit(
        [this](const auto& v) {
          if constexpr (!std::is_same_v<std::decay_t<decltype(v)>, std::unique_ptr<ValueMap>>) {
            storage_ = v;
          }
        },
        other.storage_);
  }
}
Value::Value(Value&& other) noexcept = default;
Value& Value::operator=(const Value& other) {
  if (this != &other) *this = Value(other);
  return *this;
}
Value& Value::operator=(Value&& other) noexcept = default;
Value::~Value() = default;

Value Value::bytes(std::string_view data) { return Value(Bytes{std::string(data)}); }
Value Value::list(std::initializer_list<Value> items) { return Value(List(items)); }
Value Value::tuple(List items) {
  Value value;
  value.storage_ = Tuple{std::move(items)};
  return value;
}
Value Value::map(std::initializer_list<std::pair<Value, Value>> entries) { return Value(ValueMap(entries)); }

Value::Kind Value::kind() const noexcept { return is_tuple() ? Kind::kList : static_cast<Kind>(storage_.index()); }
std::string_view Value::type_name() const noexcept { return kKindNames[storage_.index()]; }

namespace {
[[noreturn]] void wrong_kind(std::string_view expected, std::string_view actual) {
  throw TypeError("expected " + std::string(expected) + ", got " + std::string(actual));
}
}  // namespace

bool Value::as_bool() const {
  if (const bool* b = std::get_if<bool>(&storage_)) return *b;
  wrong_kind("bool", type_name());
}
int64_t Value::as_int() const {
  if (const int64_t* i = std::get_if<int64_t>(&storage_)) return *i;
  if (const bool* b = std::get_if<bool>(&storage_)) return *b ? 1 : 0;
  wrong_kind("int", type_name());
}
double Value::as_float() const {
  if (const double* d = std::get_if<double>(&storage_)) return *d;
  if (const int64_t* i = std::get_if<int64_t>(&storage_)) return static_cast<double>(*i);
  if (const bool* b = std::get_if<bool>(&storage_)) return *b ? 1.0 : 0.0;
  wrong_kind("float", type_name());
}
const std::string& Value::as_text() const {
  if (const auto* s = std::get_if<std::string>(&storage_)) return *s;
  wrong_kind("str", type_name());
}
const std::string& Value::as_bytes() const {
  if (const auto* b = std::get_if<Bytes>(&storage_)) return b->data;
  wrong_kind("bytes", type_name());
}
const Value::List& Value::as_list() const {
  if (const auto* l = std::get_if<List>(&storage_)) return *l;
  if (const auto* t = std::get_if<Tuple>(&storage_)) return t->items;
  wrong_kind("list", type_name());
}
Value::List& Value::as_list() {
  if (auto* l = std::get_if<List>(&storage_)) return *l;
  if (auto* t = std::get_if<Tuple>(&storage_)) return t->items;
  wrong_kind("list", type_name());
}
const ValueMap& Value::as_map() const {
  if (const auto* m = std::get_if<std::unique_ptr<ValueMap>>(&storage_)) return **m;
  wrong_kind("dict", type_name());
}
ValueMap& Value::as_map() {
  if (auto* m = std::get_if<std::unique_ptr<ValueMap>>(&storage_)) return **m;
  wrong_kind("dict", type_name());
}
const TypedStruct& Value::as_struct() const {
  if (const auto* s = std::get_if<TypedStruct>(&storage_)) return *s;
  wrong_kind("struct", type_name());
}
const ProxyRef& Value::as_proxy() const {
  if (const auto* p = std::get_if<ProxyRef>(&storage_)) return *p;
  wrong_kind("proxy", type_name());
}
const Array& Value::as_array() const {
  if (const auto* a = std::get_if<Array>(&storage_)) return *a;
  wrong_kind("ndarray", type_name());
}

bool Value::truthy() const noexcept {
  switch (kind()) {
    case Kind::kNull: return false;
    case Kind::kBool: return std::get<bool>(storage_);
    case Kind::kInt: return std::get<int64_t>(storage_) != 0;
    case Kind::kFloat: return std::get<double>(storage_) != 0.0;
    case Kind::kText: return !std::get<std::string>(storage_).empty();
    case Kind::kBytes: return !std::get<Bytes>(storage_).data.empty();
    case Kind::kList: return !as_list().empty();
    case Kind::kMap: return !std::get<std::unique_ptr<ValueMap>>(storage_)->empty();
    case Kind::kArray: return std::get<Array>(storage_).size() != 0;
    case Kind::kStruct:
    case Kind::kProxy: return true;
  }
  return true;
}

namespace {
bool is_number(Value::Kind k) { return k == Value::Kind::kBool || k == Value::Kind::kInt || k == Value::Kind::kFloat; }
}  // namespace

bool operator==(const Value& a, const Value& b) noexcept {
  const auto ka = a.kind(), kb = b.kind();
  if (is_number(ka) && is_number(kb)) {
    if (ka == Value::Kind::kFloat && kb == Value::Kind::kFloat) {
      return std::get<double>(a.storage_) == std::get<double>(b.storage_);
    }
    if (ka == Value::Kind::kFloat || kb == Value::Kind::kFloat) {
      const double d = ka == Value::Kind::kFloat ? std::get<double>(a.storage_) : std::get<double>(b.storage_);
      const Value& integer = ka == Value::Kind::kFloat ? b : a;
      auto exact = exact_int(d);
      return exact && *exact == integer.as_int();
    }
    return a.as_int() == b.as_int();
  }
  if (ka != kb) return false;
  switch (ka) {
    case Value::Kind::kNull: return true;
    case Value::Kind::kText: return std::get<std::string>(a.storage_) == std::get<std::string>(b.storage_);
    case Value::Kind::kBytes: return std::get<Bytes>(a.storage_) == std::get<Bytes>(b.storage_);
    case Value::Kind::kList: return a.is_tuple() == b.is_tuple() && a.as_list() == b.as_list();
    case Value::Kind::kMap: return a.as_map() == b.as_map();
    case Value::Kind::kStruct: return std::get<TypedStruct>(a.storage_) == std::get<TypedStruct>(b.storage_);
    case Value::Kind::kProxy: return std::get<ProxyRef>(a.storage_) == std::get<ProxyRef>(b.storage_);
    case Value::Kind::kArray: return std::get<Array>(a.storage_) == std::get<Array>(b.storage_);
    default: return false;  // numbers handled above
  }
}

size_t Value::hash() const noexcept {
  switch (kind()) {
    case Kind::kNull: return 0x6e6f6e65;  // "none"
    case Kind::kBool:
    case Kind::kInt: return std::hash<int64_t>{}(as_int());
    case Kind::kFloat: {
      const double d = std::get<double>(storage_);
      if (auto exact = exact_int(d)) return std::hash<int64_t>{}(*exact);  // hash(1.0) == hash(1)
      return std::hash<double>{}(d);
    }
    case Kind::kText: return mix(1, std::hash<std::string>{}(std::get<std::string>(storage_)));
    case Kind::kBytes: return mix(2, std::hash<std::string>{}(std::get<Bytes>(storage_).data));
    case Kind::kList: {
      size_t h = is_tuple() ? 6 : 3;
      for (const Value& item : as_list()) h = mix(h, item.hash());
      return h;
    }
    case Kind::kMap: {
      size_t h = 0;  // order-insensitive, as map equality is
      as_map().for_each([&h](const Value& k, const Value& v) { h += mix(k.hash(), v.hash()); });
      return mix(4, h);
    }
    case Kind::kStruct: {
      const auto& s = std::get<TypedStruct>(storage_);
      size_t h = mix(5, s.schema_id);
      if (s.message) {
        h = mix(h, std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(s.message->begin()),
                                                                  s.message->size() * sizeof(capnp::word))));
      }
      return h;
    }
    case Kind::kProxy: {
      const auto& p = std::get<ProxyRef>(storage_);
      return mix(mix(7, p.manager), p.id);
    }
    case Kind::kArray: return mix(8, std::get<Array>(storage_).hash());
  }
  return 0;
}

}  // namespace xproc
