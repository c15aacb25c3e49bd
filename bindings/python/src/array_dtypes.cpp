// See array_dtypes.h.
#include "array_dtypes.h"

#include <array>
#include <string>
#include <string_view>

namespace xproc::python {
namespace {

// Indexed by DType: the struct format character(s) of each element type on this machine.
constexpr std::array<const char*, 14> kFormats{"?", "b", "h", "i", "q", "B", "H", "I", "Q", "e", "f", "d", "Zf", "Zd"};
static_assert(kFormats.size() == static_cast<size_t>(DType::kComplex128) + 1, "a format for every dtype");

// An integer format character of `size` bytes, signed or not.
DType integer(size_t size, bool is_signed) {
  switch (size) {
    case 1: return is_signed ? DType::kInt8 : DType::kUInt8;
    case 2: return is_signed ? DType::kInt16 : DType::kUInt16;
    case 4: return is_signed ? DType::kInt32 : DType::kUInt32;
    default: return is_signed ? DType::kInt64 : DType::kUInt64;
  }
}

[[noreturn]] void refuse(const char* format, const std::string& why) {
  throw nb::type_error(("xproc cannot send a buffer of format '" + std::string(format) + "' as an array (" + why +
                        "; arrays hold bool, int8-64, uint8-64, float16-64, complex64 and complex128)")
                           .c_str());
}

}  // namespace

const char* buffer_format(DType dtype) noexcept { return kFormats[static_cast<size_t>(dtype)]; }

BufferFormat parse_format(const char* format, Py_ssize_t size) {
  if (format == nullptr) format = "B";
  const char* code = format;
  bool native_sizes = true;
  bool big_endian = false;
  switch (*code) {
    case '@': ++code; break;
    case '>':
    case '!': big_endian = true; [[fallthrough]];
    case '=':
    case '<':
      native_sizes = false;
      ++code;
      break;
    default: break;
  }
  const std::string_view rest(code);
  DType dtype;
  if (rest == "?") {
    dtype = DType::kBool;
  } else if (rest == "c") {
    dtype = DType::kUInt8;  // a char is a byte
  } else if (rest == "b" || rest == "B") {
    dtype = integer(1, rest == "b");
  } else if (rest == "h" || rest == "H") {
    dtype = integer(2, rest == "h");
  } else if (rest == "i" || rest == "I") {
    dtype = integer(4, rest == "i");
  } else if (rest == "l" || rest == "L") {
    dtype = integer(native_sizes ? sizeof(long) : 4, rest == "l");
  } else if (rest == "q" || rest == "Q") {
    dtype = integer(8, rest == "q");
  } else if ((rest == "n" || rest == "N") && native_sizes) {
    dtype = integer(sizeof(Py_ssize_t), rest == "n");
  } else if (rest == "e") {
    dtype = DType::kFloat16;
  } else if (rest == "f") {
    dtype = DType::kFloat32;
  } else if (rest == "d") {
    dtype = DType::kFloat64;
  } else if (rest == "Zf") {
    dtype = DType::kComplex64;
  } else if (rest == "Zd") {
    dtype = DType::kComplex128;
  } else {
    refuse(format, "no array dtype holds these elements");
  }
  if (static_cast<size_t>(size) != itemsize(dtype)) {
    refuse(format, "its items take " + std::to_string(size) + " bytes, not " + std::to_string(itemsize(dtype)));
  }
  return {dtype, big_endian && swap_width(dtype) > 1};
}

}  // namespace xproc::python
