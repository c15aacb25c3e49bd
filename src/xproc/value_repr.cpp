// Value::repr(): exactly what Python 3 prints for the equivalent object.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "xproc/value.h"

namespace xproc {
namespace {

// Python's float repr: the shortest digits that round-trip, in positional notation when
// the decimal exponent is in [-4, 16), otherwise scientific with a signed two-digit
// (at least) exponent: 1.5, 1e+16, 1000000000000000.0, 0.0001, 1e-05.
std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), d, std::chars_format::scientific);
  std::string scientific(buffer, end);  // e.g. "-1.5e+00"
  std::string sign;
  if (scientific[0] == '-') {
    sign = "-";
    scientific.erase(0, 1);
  }
  const size_t e = scientific.find('e');
  const int exponent = std::stoi(scientific.substr(e + 1));
  std::string digits = scientific.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  if (exponent < -4 || exponent >= 16) {
    std::string out = sign + digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return out + exp;
  }
  const int point = exponent + 1;  // digits before the decimal point
  if (point <= 0) return sign + "0." + std::string(-point, '0') + digits;
  if (static_cast<size_t>(point) >= digits.size()) {
    return sign + digits + std::string(point - digits.size(), '0') + ".0";
  }
  return sign + digits.substr(0, point) + "." + digits.substr(point);
}

// Code points Python's str.isprintable() rejects beyond the ASCII controls: other
// controls, separators other than the ASCII space, format characters, surrogates and
// private-use areas. (Unassigned code points are treated as printable.)
bool printable(char32_t c) {
  if (c < 0x20 || c == 0x7f) return false;
  if (c < 0x7f) return true;
  if (c <= 0xa0 || c == 0xad) return false;
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200f) || (c >= 0x2028 && c <= 0x202f) || (c >= 0x205f && c <= 0x206f) ||
      c == 0x3000 || c == 0xfeff || (c >= 0xfff9 && c <= 0xfffb)) {
    return false;
  }
  if ((c >= 0xd800 && c <= 0xf8ff) || c == 0xfffe || c == 0xffff) return false;  // surrogates, PUA
  if (c >= 0xf0000) return false;                                                // PUA planes
  return true;
}

void append_escape(std::string& out, char32_t c) {
  char buffer[16];
  if (c < 0x100)
    std::snprintf(buffer, sizeof(buffer), "\\x%02x", static_cast<unsigned>(c));
  else if (c < 0x10000)
    std::snprintf(buffer, sizeof(buffer), "\\u%04x", static_cast<unsigned>(c));
  else
    std::snprintf(buffer, sizeof(buffer), "\\U%08x", static_cast<unsigned>(c));
  out += buffer;
}

char choose_quote(std::string_view s) {
  return s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos ? '"' : '\'';
}

// Decodes one UTF-8 sequence at s[i]; returns the code point and advances i, or returns
// nullopt (and advances one byte) for an invalid sequence.
std::optional<char32_t> next_code_point(std::string_view s, size_t& i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  int length = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xe ? 3 : (lead >> 3) == 0x1e ? 4 : 0;
  if (length == 0 || i + length > s.size()) {
    ++i;
    return std::nullopt;
  }
  char32_t c = length == 1 ? lead : lead & (0x7f >> length);
  for (int k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) {
      ++i;
      return std::nullopt;
    }
    c = (c << 6) | (byte(i + k) & 0x3f);
  }
  static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < kMin[length] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {  // overlong, range
    ++i;
    return std::nullopt;
  }
  i += length;
  return c;
}

void append_common_escape(std::string& out, char32_t c, char quote) {
  switch (c) {
    case '\\': out += "\\\\"; return;
    case '\n': out += "\\n"; return;
    case '\r': out += "\\r"; return;
    case '\t': out += "\\t"; return;
    default: break;
  }
  if (c == static_cast<char32_t>(quote)) {
    out += '\\';
    out += quote;
    return;
  }
  append_escape(out, c);
}

// Invalid UTF-8 bytes print as the lone surrogates Python's surrogateescape decoding
// would give them ('\udc80'..'\udcff'), so nothing is silently dropped.
std::string text_repr(std::string_view s) {
  const char quote = choose_quote(s);
  std::string out(1, quote);
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    auto c = next_code_point(s, i);
    if (!c) {
      append_escape(out, 0xdc00 + static_cast<unsigned char>(s[start]));
      continue;
    }
    if (*c == '\\' || *c == static_cast<char32_t>(quote) || !printable(*c)) {
      append_common_escape(out, *c, quote);
    } else {
      out.append(s.substr(start, i - start));
    }
  }
  return out + quote;
}

std::string bytes_repr(std::string_view s) {
  const char quote = choose_quote(s);
  std::string out = "b";
  out += quote;
  for (unsigned char c : s) {
    if (c == '\\' || c == quote || c < 0x20 || c >= 0x7f)
      append_common_escape(out, c, quote);
    else
      out += static_cast<char>(c);
  }
  return out + quote;
}

// An IEEE binary16 number as a double (every half is exactly a double).
double half_to_double(uint16_t bits) {
  const int exponent = (bits >> 10) & 0x1f;
  const int mantissa = bits & 0x3ff;
  const double sign = (bits & 0x8000) != 0 ? -1.0 : 1.0;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  if (exponent == 0x1f) return mantissa == 0 ? sign * INFINITY : NAN;
  return sign * std::ldexp(mantissa + 1024, exponent - 25);
}

// Python's repr of a complex: (1+2j), 2j, (1.5-0.5j).
std::string complex_repr(double real, double imaginary) {
  auto part = [](double d) {
    std::string text = float_repr(d);
    if (text.size() > 2 && text.ends_with(".0")) text.resize(text.size() - 2);
    return text;
  };
  const std::string imaginary_text = part(imaginary) + "j";
  if (real == 0 && !std::signbit(real)) return imaginary_text;
  const bool sign_written = imaginary_text[0] == '-' || imaginary_text[0] == '+';
  return "(" + part(real) + (sign_written ? "" : "+") + imaginary_text + ")";
}

template <typename T>
T element(const std::byte* at) {
  T value;
  std::memcpy(&value, at, sizeof(T));
  return value;
}

std::string element_repr(DType dtype, const std::byte* at) {
  switch (dtype) {
    case DType::kBool: return element<uint8_t>(at) != 0 ? "True" : "False";
    case DType::kInt8: return std::to_string(element<int8_t>(at));
    case DType::kInt16: return std::to_string(element<int16_t>(at));
    case DType::kInt32: return std::to_string(element<int32_t>(at));
    case DType::kInt64: return std::to_string(element<int64_t>(at));
    case DType::kUInt8: return std::to_string(element<uint8_t>(at));
    case DType::kUInt16: return std::to_string(element<uint16_t>(at));
    case DType::kUInt32: return std::to_string(element<uint32_t>(at));
    case DType::kUInt64: return std::to_string(element<uint64_t>(at));
    case DType::kFloat16: return float_repr(half_to_double(element<uint16_t>(at)));
    case DType::kFloat32: return float_repr(element<float>(at));
    case DType::kFloat64: return float_repr(element<double>(at));
    case DType::kComplex64: return complex_repr(element<float>(at), element<float>(at + 4));
    case DType::kComplex128: return complex_repr(element<double>(at), element<double>(at + 8));
  }
  return "?";
}

// numpy's layout of an array's repr: nested brackets, and past 1000 elements only the
// first and last three along each dimension, with "..." between. (Elements print as
// Python prints the same numbers, which numpy does not always.)
class ArrayPrinter {
 public:
  explicit ArrayPrinter(const Array& array) : array_(array), summarize_(array.size() > 1000) {}

  std::string repr() {
    const DType dtype = array_.dtype();
    std::string out = "array(";
    if (array_.shape().empty()) {
      out += element_repr(dtype, array_.bytes().data());
    } else if (array_.size() == 0 && array_.shape().size() > 1) {
      // As numpy does; nested brackets of a shape like (2**40, 0) would never end.
      out += "[], shape=(";
      for (size_t d = 0; d < array_.shape().size(); ++d)
        out += (d != 0 ? ", " : "") + std::to_string(array_.shape()[d]);
      out += ")";
    } else {
      print(0, 0);
      out += text_;
    }
    const bool default_dtype =
        dtype == DType::kFloat64 || dtype == DType::kInt64 || dtype == DType::kBool || dtype == DType::kComplex128;
    if (!default_dtype || array_.size() == 0) out += ", dtype=" + std::string(dtype_name(dtype));
    return out + ")";
  }

 private:
  static constexpr uint64_t kEdgeItems = 3;

  // The sub-array at dimension `dim` starting at element `offset`.
  void print(size_t dim, uint64_t offset) {
    const Shape& shape = array_.shape();
    uint64_t stride = 1;
    for (size_t d = dim + 1; d < shape.size(); ++d) stride *= shape[d];
    text_ += '[';
    const uint64_t length = shape[dim];
    for (uint64_t i = 0; i < length; ++i) {
      if (summarize_ && length > 2 * kEdgeItems && i == kEdgeItems) {
        text_ += "..., ";
        i = length - kEdgeItems;
      }
      if (dim + 1 == shape.size()) {
        text_ += element_repr(array_.dtype(), array_.bytes().data() + (offset + i) * itemsize(array_.dtype()));
      } else {
        print(dim + 1, offset + i * stride);
      }
      if (i + 1 != length) text_ += ", ";
    }
    text_ += ']';
  }

  const Array& array_;
  const bool summarize_;
  std::string text_;
};

}  // namespace

std::string Value::repr() const {
  switch (kind()) {
    case Kind::kNull: return "None";
    case Kind::kBool: return as_bool() ? "True" : "False";
    case Kind::kInt: return std::to_string(as_int());
    case Kind::kFloat: return float_repr(as_float());
    case Kind::kText: return text_repr(as_text());
    case Kind::kBytes: return bytes_repr(as_bytes());
    case Kind::kList: {
      std::string out = is_tuple() ? "(" : "[";
      for (const Value& item : as_list()) {
        if (out.size() > 1) out += ", ";
        out += item.repr();
      }
      if (is_tuple()) return out + (as_list().size() == 1 ? ",)" : ")");
      return out + "]";
    }
    case Kind::kMap: {
      std::string out = "{";
      as_map().for_each([&out](const Value& k, const Value& v) {
        if (out.size() > 1) out += ", ";
        out += k.repr() + ": " + v.repr();
      });
      return out + "}";
    }
    case Kind::kStruct: {
      const TypedStruct& s = as_struct();
      char buffer[64];
      std::snprintf(buffer, sizeof(buffer), "<struct 0x%016llx: %zu bytes>",
                    static_cast<unsigned long long>(s.schema_id),
                    s.message ? s.message->size() * sizeof(capnp::word) : size_t{0});
      return buffer;
    }
    case Kind::kProxy: return "<proxy of object " + std::to_string(as_proxy().id) + ">";
    case Kind::kArray: return ArrayPrinter(as_array()).repr();
  }
  return "?";
}

}  // namespace xproc
