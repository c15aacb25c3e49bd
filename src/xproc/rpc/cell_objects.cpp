// manager.Value(typecode, value) and manager.Array(typecode, sequence). Python's Manager
// stores a Value's typecode without checking it; an Array checks its items against the
// typecode as Python's array module does.
#include <limits>

#include "xproc/errors.h"
#include "xproc/rpc/objects.h"
#include "xproc/rpc/value_ops.h"

namespace xproc::rpc {
namespace {

class ValueCellObject final : public SharedObject, public Served<schema::ValueCell::Server> {
 public:
  ValueCellObject(Runtime& runtime, std::string typecode, Value initial)
      : SharedObject(runtime, schema::Kind::VALUE), typecode_(std::move(typecode)), value_(std::move(initial)) {}

  capnp::Capability::Client client(Session&) override { return kj::Own<schema::ValueCell::Server>(kj::addRef(*this)); }
  void drop_contents() override { value_ = Value(); }

 protected:
  kj::Promise<void> repr(ReprContext context) override {
    context.getResults().setText("Value(" + Value(typecode_).repr() + ", " + value_.repr() + ")");
    return kj::READY_NOW;
  }
  kj::Promise<void> get(GetContext context) override {
    value_.to_capnp(context.getResults().initValue());
    return kj::READY_NOW;
  }
  kj::Promise<void> set(SetContext context) override {
    value_ = runtime_.read(context.getParams().getValue());
    return kj::READY_NOW;
  }
  kj::Promise<void> typecode(TypecodeContext context) override {
    context.getResults().setTypecode(typecode_);
    return kj::READY_NOW;
  }
  kj::Promise<void> increment(IncrementContext context) override {
    value_ = add_numbers(value_, Value::from_capnp(context.getParams().getDelta()));
    value_.to_capnp(context.getResults().initValue());
    return kj::READY_NOW;
  }

 private:
  std::string typecode_;
  Value value_;
};

// Checks `v` against an array typecode and returns it as the array stores it.
Value checked_item(const std::string& typecode, const Value& v) {
  char code = typecode[0];
  if (code == 'f' || code == 'd') {
    if (v.is_float()) return v;
    if (v.is_int() || v.is_bool()) return Value(static_cast<double>(v.is_bool() ? v.as_bool() : v.as_int()));
    throw TypeError("must be real number, not " + std::string(v.type_name()));
  }
  if (code == 'u') {
    if (!v.is_text()) throw TypeError("array item must be unicode character, not " + std::string(v.type_name()));
    // One code point: one UTF-8 lead byte, the rest continuation bytes.
    const auto& s = v.as_text();
    size_t points = 0;
    for (unsigned char c : s) points += (c & 0xC0) != 0x80;
    if (points != 1)
      throw TypeError("array item must be unicode character, not a string of length " + std::to_string(points));
    return v;
  }
  if (!v.is_int() && !v.is_bool())
    throw TypeError("'" + std::string(v.type_name()) + "' object cannot be interpreted as an integer");
  int64_t i = v.is_bool() ? v.as_bool() : v.as_int();
  int64_t lo = 0;
  int64_t hi = std::numeric_limits<int64_t>::max();
  switch (code) {
    case 'b': lo = -128, hi = 127; break;
    case 'B': lo = 0, hi = 255; break;
    case 'h': lo = -32768, hi = 32767; break;
    case 'H': lo = 0, hi = 65535; break;
    case 'i': lo = std::numeric_limits<int32_t>::min(), hi = std::numeric_limits<int32_t>::max(); break;
    case 'I': lo = 0, hi = std::numeric_limits<uint32_t>::max(); break;
    case 'l':
    case 'q': lo = std::numeric_limits<int64_t>::min(); break;
    case 'L':
    case 'Q': lo = 0; break;
    default: break;
  }
  if (i < lo || i > hi)
    throw ValueError("OverflowError: " + std::to_string(i) + " out of range for typecode '" + typecode + "'");
  return Value(i);
}

void check_typecode(const std::string& typecode) {
  static const std::string kCodes = "bBhHiIlLqQfdu";
  if (typecode.size() != 1 || kCodes.find(typecode[0]) == std::string::npos) {
    throw ValueError("bad typecode (must be b, B, u, h, H, i, I, l, L, q, Q, f or d)");
  }
}

class ArrayObject final : public SharedObject, public Served<schema::Array::Server> {
 public:
  ArrayObject(Runtime& runtime, std::string typecode, std::vector<Value> initial)
      : SharedObject(runtime, schema::Kind::ARRAY), typecode_(std::move(typecode)) {
    check_typecode(typecode_);
    items_.reserve(initial.size());
    for (const auto& v : initial) items_.push_back(checked_item(typecode_, v));
  }

  capnp::Capability::Client client(Session&) override { return kj::Own<schema::Array::Server>(kj::addRef(*this)); }

 protected:
  kj::Promise<void> repr(ReprContext context) override {
    // Python: array('i', [1, 2]); a 'u' array prints its characters as one string.
    std::string text = "array('" + typecode_ + "'";
    if (!items_.empty()) {
      if (typecode_ == "u") {
        std::string chars;
        for (const auto& v : items_) chars += v.as_text();
        text += ", " + Value(chars).repr();
      } else {
        text += ", " + Value(items_).repr();
      }
    }
    context.getResults().setText(text + ")");
    return kj::READY_NOW;
  }
  kj::Promise<void> len(LenContext context) override {
    context.getResults().setLength(items_.size());
    return kj::READY_NOW;
  }
  kj::Promise<void> getItem(GetItemContext context) override {
    items_[normalize_index(context.getParams().getIndex(), items_.size(), "array index out of range")].to_capnp(
        context.getResults().initValue());
    return kj::READY_NOW;
  }
  kj::Promise<void> setItem(SetItemContext context) override {
    auto params = context.getParams();
    size_t i = normalize_index(params.getIndex(), items_.size(), "array assignment index out of range");
    items_[i] = checked_item(typecode_, runtime_.read(params.getValue()));
    return kj::READY_NOW;
  }
  kj::Promise<void> getSlice(GetSliceContext context) override {
    auto range = slice_range(context.getParams().getSlice(), static_cast<int64_t>(items_.size()));
    auto out = context.getResults().initValues(static_cast<unsigned>(range.count));
    for (int64_t i = 0; i < range.count; ++i)
      items_[static_cast<size_t>(range.at(i))].to_capnp(out[static_cast<unsigned>(i)]);
    return kj::READY_NOW;
  }
  kj::Promise<void> setSlice(SetSliceContext context) override {
    auto params = context.getParams();
    auto range = slice_range(params.getSlice(), static_cast<int64_t>(items_.size()));
    auto values = runtime_.read(params.getValues());
    if (static_cast<int64_t>(values.size()) != range.count) {
      throw ValueError("can only assign a sequence of the same size to a slice of a manager Array");
    }
    std::vector<Value> checked;
    checked.reserve(values.size());
    for (const auto& v : values) checked.push_back(checked_item(typecode_, v));
    for (int64_t i = 0; i < range.count; ++i)
      items_[static_cast<size_t>(range.at(i))] = std::move(checked[static_cast<size_t>(i)]);
    return kj::READY_NOW;
  }
  kj::Promise<void> typecode(TypecodeContext context) override {
    context.getResults().setTypecode(typecode_);
    return kj::READY_NOW;
  }

 private:
  std::string typecode_;
  std::vector<Value> items_;
};

}  // namespace

kj::Own<SharedObject> make_value_cell(Runtime& runtime, std::string typecode, Value initial) {
  return kj::refcounted<ValueCellObject>(runtime, std::move(typecode), std::move(initial));
}

kj::Own<SharedObject> make_array(Runtime& runtime, std::string typecode, std::vector<Value> initial) {
  return kj::refcounted<ArrayObject>(runtime, std::move(typecode), std::move(initial));
}

}  // namespace xproc::rpc
