// See value_ops.h.
#include "xproc/rpc/value_ops.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "xproc/errors.h"

namespace xproc::rpc {
namespace {

bool is_number(const Value& v) { return v.is_bool() || v.is_int() || v.is_float(); }

int64_t as_integer(const Value& v) { return v.is_bool() ? (v.as_bool() ? 1 : 0) : v.as_int(); }

[[noreturn]] void unorderable(const Value& a, const Value& b) {
  throw TypeError("'<' not supported between instances of '" + std::string(a.type_name()) + "' and '" +
                  std::string(b.type_name()) + "'");
}

// int < float exactly, as Python compares them (no rounding of large ints).
bool int_less_float(int64_t i, double d) {
  if (std::isnan(d)) return false;
  if (d >= 9223372036854775808.0) return true;
  if (d < -9223372036854775808.0) return false;
  double floor_d = std::floor(d);
  auto whole = static_cast<int64_t>(floor_d);
  return i < whole || (i == whole && floor_d < d);
}

bool float_less_int(double d, int64_t i) {
  if (std::isnan(d)) return false;
  if (d >= 9223372036854775808.0) return false;
  if (d < -9223372036854775808.0) return true;
  double ceil_d = std::ceil(d);
  auto whole = static_cast<int64_t>(ceil_d);
  return whole < i || (whole == i && d < ceil_d);
}

bool number_less(const Value& a, const Value& b) {
  if (a.is_float() && b.is_float()) return a.as_float() < b.as_float();
  if (a.is_float()) return float_less_int(a.as_float(), as_integer(b));
  if (b.is_float()) return int_less_float(as_integer(a), b.as_float());
  return as_integer(a) < as_integer(b);
}

}  // namespace

Value add_numbers(const Value& a, const Value& b) {
  if (!is_number(a) || !is_number(b)) {
    throw TypeError("unsupported operand type(s) for +: '" + std::string(a.type_name()) + "' and '" +
                    std::string(b.type_name()) + "'");
  }
  if (a.is_float() || b.is_float()) {
    double x = a.is_float() ? a.as_float() : static_cast<double>(as_integer(a));
    double y = b.is_float() ? b.as_float() : static_cast<double>(as_integer(b));
    return Value(x + y);
  }
  int64_t sum = 0;
  if (__builtin_add_overflow(as_integer(a), as_integer(b), &sum)) {
    throw ValueError("integer overflow: the sum does not fit in 64 bits");
  }
  return Value(sum);
}

bool python_less(const Value& a, const Value& b) {
  if (is_number(a) && is_number(b)) return number_less(a, b);
  if (a.kind() != b.kind() || a.is_tuple() != b.is_tuple()) unorderable(a, b);
  switch (a.kind()) {
    case Value::Kind::kText: return a.as_text() < b.as_text();  // UTF-8 keeps code point order
    case Value::Kind::kBytes: return a.as_bytes() < b.as_bytes();
    case Value::Kind::kList: {
      const auto& x = a.as_list();
      const auto& y = b.as_list();
      size_t n = std::min(x.size(), y.size());
      for (size_t i = 0; i < n; ++i) {
        if (!(x[i] == y[i])) return python_less(x[i], y[i]);
      }
      return x.size() < y.size();
    }
    default: unorderable(a, b);
  }
}

SliceRange slice_range(schema::Slice::Reader slice, int64_t length) {
  int64_t step = slice.getStep();
  if (step == 0) throw ValueError("slice step cannot be zero");
  int64_t lower = step > 0 ? 0 : -1;
  int64_t upper = step > 0 ? length : length - 1;
  auto clamp = [&](int64_t bound) {
    if (bound < 0) bound += length;
    return std::clamp(bound, lower, upper);
  };
  int64_t start = slice.getHasStart() ? clamp(slice.getStart()) : (step > 0 ? lower : upper);
  int64_t stop = slice.getHasStop() ? clamp(slice.getStop()) : (step > 0 ? upper : lower);
  int64_t count = 0;
  if (step > 0 && stop > start) count = (stop - start - 1) / step + 1;
  if (step < 0 && start > stop) count = (start - stop - 1) / (-step) + 1;
  return {start, step, count};
}

size_t normalize_index(int64_t index, size_t length, const char* message) {
  auto n = static_cast<int64_t>(length);
  if (index < 0) index += n;
  if (index < 0 || index >= n) throw IndexError(message);
  return static_cast<size_t>(index);
}

std::vector<Value> read_values(capnp::List<schema::Value>::Reader values) {
  std::vector<Value> result;
  result.reserve(values.size());
  for (auto v : values) result.push_back(Value::from_capnp(v));
  return result;
}

void write_values(capnp::List<schema::Value>::Builder builder, const std::vector<Value>& values) {
  for (size_t i = 0; i < values.size(); ++i) values[i].to_capnp(builder[static_cast<unsigned>(i)]);
}

void write_entries(capnp::List<schema::Value::Entry>::Builder builder, const ValueMap& items) {
  unsigned i = 0;
  items.for_each([&](const Value& k, const Value& v) {
    k.to_capnp(builder[i].initKey());
    v.to_capnp(builder[i].initValue());
    ++i;
  });
}

}  // namespace xproc::rpc
