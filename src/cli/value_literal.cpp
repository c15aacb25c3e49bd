// A recursive-descent reader of Python literals (and JSON, which is nearly one), and the
// JSON form of a Value. See value_literal.h.
#include "value_literal.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

#include "xproc/errors.h"

namespace xproc::cli {
namespace {

constexpr int kMaxDepth = 64;

// Whether `text` is UTF-8 as Python's str can hold it: shortest forms, no surrogates,
// nothing past U+10FFFF.
bool valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    uint32_t code = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      extra = 1, code = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2, code = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3, code = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= text.size()) return false;  // cut short
    for (size_t k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3f);
    }
    const uint32_t smallest[] = {0, 0x80, 0x800, 0x10000};
    if (code < smallest[extra] || code > 0x10ffff || (code >= 0xd800 && code < 0xe000)) return false;
    i += extra + 1;
  }
  return true;
}

class LiteralReader {
 public:
  explicit LiteralReader(std::string_view text) : text_(text) {}

  Value read_all() {
    Value value = read(0);
    skip_space();
    if (pos_ != text_.size()) fail("unexpected text after the value");
    return value;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw ValueError("not a Python literal or JSON value: " + why + " at character " + std::to_string(pos_ + 1));
  }

  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool at(char c) {
    skip_space();
    return pos_ < text_.size() && text_[pos_] == c;
  }

  bool take(char c) {
    if (!at(c)) return false;
    ++pos_;
    return true;
  }

  bool take_word(std::string_view word) {
    skip_space();
    if (text_.substr(pos_, word.size()) != word) return false;
    const size_t end = pos_ + word.size();
    if (end < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[end])) || text_[end] == '_')) return false;
    pos_ = end;
    return true;
  }

  Value read(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    skip_space();
    if (pos_ >= text_.size()) fail("a value was expected");
    const char c = text_[pos_];
    if (c == '[') return read_list(depth);
    if (c == '(') return read_tuple(depth);
    if (c == '{') return read_dict(depth);
    if (c == '\'' || c == '"') return Value(read_text());
    if ((c == 'b' || c == 'B') && pos_ + 1 < text_.size() && (text_[pos_ + 1] == '\'' || text_[pos_ + 1] == '"')) {
      ++pos_;
      return Value::bytes(read_text(/*bytes=*/true));
    }
    if (take_word("None") || take_word("null")) return Value();
    if (take_word("True") || take_word("true")) return Value(true);
    if (take_word("False") || take_word("false")) return Value(false);
    if (c == '-' || c == '+' || c == '.' || std::isdigit(static_cast<unsigned char>(c))) return read_number();
    fail("a value was expected");
  }

  // Items up to `close`, separated by commas, a trailing comma allowed; whether a comma
  // was seen (what tells a one-item tuple from parentheses).
  template <typename Item>
  bool read_items(char close, Item&& item) {
    bool comma = false;
    while (!take(close)) {
      item();
      if (take(',')) {
        comma = true;
        continue;
      }
      if (!take(close)) fail(std::string("',' or '") + close + "' was expected");
      return comma;
    }
    return comma;
  }

  Value read_list(int depth) {
    ++pos_;
    Value::List items;
    read_items(']', [&] { items.push_back(read(depth + 1)); });
    return Value(std::move(items));
  }

  Value read_tuple(int depth) {
    ++pos_;
    Value::List items;
    const bool comma = read_items(')', [&] { items.push_back(read(depth + 1)); });
    if (items.size() == 1 && !comma) return std::move(items[0]);  // (x) is x
    return Value::tuple(std::move(items));
  }

  Value read_dict(int depth) {
    ++pos_;
    ValueMap map;
    read_items('}', [&] {
      Value key = read(depth + 1);
      if (!hashable(key)) fail("an unhashable dict key (" + std::string(key.type_name()) + ")");
      if (!take(':')) fail("':' was expected");
      Value item = read(depth + 1);
      map.set(std::move(key), std::move(item));
    });
    return Value(std::move(map));
  }

  // As Python's hash() takes it: a list or a dict (or a tuple holding one) cannot be a key.
  static bool hashable(const Value& value) {
    if (value.is_map()) return false;
    if (value.is_list()) {
      if (!value.is_tuple()) return false;
      for (const auto& item : value.as_list()) {
        if (!hashable(item)) return false;
      }
    }
    return true;
  }

  Value read_number() {
    const size_t start = pos_;
    if (text_[pos_] == '-' || text_[pos_] == '+') ++pos_;
    bool is_float = false;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (std::isdigit(static_cast<unsigned char>(c)) || c == '_') {
        ++pos_;
      } else if (c == '.' || c == 'e' || c == 'E') {
        is_float = true;
        ++pos_;
        if ((c == 'e' || c == 'E') && pos_ < text_.size() && (text_[pos_] == '-' || text_[pos_] == '+')) ++pos_;
      } else {
        break;
      }
    }
    std::string digits;
    for (char c : text_.substr(start, pos_ - start)) {
      if (c != '_') digits += c;
    }
    errno = 0;
    char* end = nullptr;
    if (is_float) {
      const double number = std::strtod(digits.c_str(), &end);
      if (end != digits.c_str() + digits.size() || digits.empty()) fail("a malformed number");
      return Value(number);
    }
    const long long number = std::strtoll(digits.c_str(), &end, 10);
    if (end != digits.c_str() + digits.size() || digits.empty() || digits == "-" || digits == "+") {
      fail("a malformed number");
    }
    if (errno == ERANGE) fail("an integer outside the 64-bit range");
    return Value(number);
  }

  unsigned hex_digits(size_t count) {
    if (pos_ + count > text_.size()) fail("a short escape");
    unsigned out = 0;
    for (size_t i = 0; i < count; ++i) {
      const char c = text_[pos_++];
      out <<= 4;
      if (c >= '0' && c <= '9') {
        out |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        out |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        out |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        fail("a malformed escape");
      }
    }
    return out;
  }

  static void append_utf8(std::string& out, unsigned code) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xc0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      out += static_cast<char>(0xe0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (code >> 18));
      out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    }
  }

  // A quoted text at pos_, with Python's escapes; in a bytes literal \x gives a byte and
  // \u is not an escape, as in Python.
  std::string read_text(bool bytes = false) {
    const char quote = text_[pos_++];
    std::string out;
    for (;;) {
      if (pos_ >= text_.size()) fail("an unterminated string");
      const char c = text_[pos_++];
      if (c == quote) {
        if (!bytes && !valid_utf8(out)) fail("text that is not valid UTF-8");
        return out;
      }
      if (c != '\\') {
        if (bytes && static_cast<unsigned char>(c) >= 0x80) fail("a non-ASCII character in a bytes literal");
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) fail("an unterminated string");
      const char e = text_[pos_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '0': out += '\0'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '/': out += '/'; break;  // JSON
        case 'x': {
          const unsigned code = hex_digits(2);
          if (bytes) {
            out += static_cast<char>(code);
          } else {
            append_utf8(out, code);
          }
          break;
        }
        case 'u':
        case 'U': {
          if (bytes) fail("\\u in a bytes literal");
          unsigned code = hex_digits(e == 'u' ? 4 : 8);
          if (code >= 0xd800 && code < 0xdc00 && text_.substr(pos_, 2) == "\\u") {  // a JSON surrogate pair
            pos_ += 2;
            const unsigned low = hex_digits(4);
            if (low < 0xdc00 || low >= 0xe000) fail("an unpaired surrogate");
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
          } else if (code >= 0xd800 && code < 0xe000) {
            fail("an unpaired surrogate");
          }
          if (code > 0x10ffff) fail("a code point beyond U+10FFFF");
          append_utf8(out, code);
          break;
        }
        default: fail(std::string("an unknown escape \\") + e);
      }
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

Value parse_value_literal(std::string_view text) { return LiteralReader(text).read_all(); }

std::string base64(std::string_view data) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < data.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(data[i])) << 16;
    if (i + 1 < data.size()) n |= static_cast<uint32_t>(static_cast<unsigned char>(data[i + 1])) << 8;
    if (i + 2 < data.size()) n |= static_cast<uint32_t>(static_cast<unsigned char>(data[i + 2]));
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < data.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < data.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

nlohmann::ordered_json value_to_json(const Value& value) {
  using json = nlohmann::ordered_json;
  switch (value.kind()) {
    case Value::Kind::kNull: return nullptr;
    case Value::Kind::kBool: return value.as_bool();
    case Value::Kind::kInt: return value.as_int();
    case Value::Kind::kFloat:
      if (!std::isfinite(value.as_float())) break;
      return value.as_float();
    case Value::Kind::kText: return value.as_text();
    case Value::Kind::kBytes: return json{{"$bytes", base64(value.as_bytes())}};
    case Value::Kind::kList: {
      json items = json::array();
      for (const auto& item : value.as_list()) items.push_back(value_to_json(item));
      return items;
    }
    case Value::Kind::kMap: {
      bool text_keys = true;
      value.as_map().for_each([&](const Value& key, const Value&) { text_keys = text_keys && key.is_text(); });
      if (!text_keys) break;
      json object = json::object();
      value.as_map().for_each(
          [&](const Value& key, const Value& item) { object[key.as_text()] = value_to_json(item); });
      return object;
    }
    default: break;
  }
  return json{{"$repr", value.repr()}};
}

}  // namespace xproc::cli
