// See array_dtypes.h.
#include "array_dtypes.h"

#include <array>
#include <cstring>
#include <string>
#include <string_view>

namespace xproc::python {
namespace {

// The schema's dtypes in enum order: the one table the formats and names come from.
constexpr std::array<DTypeInfo, 14> kDTypes{{
    {DType::BOOL, 1, 1, "?", "bool"},
    {DType::INT8, 1, 1, "b", "int8"},
    {DType::INT16, 2, 2, "h", "int16"},
    {DType::INT32, 4, 4, "i", "int32"},
    {DType::INT64, 8, 8, "q", "int64"},
    {DType::UINT8, 1, 1, "B", "uint8"},
    {DType::UINT16, 2, 2, "H", "uint16"},
    {DType::UINT32, 4, 4, "I", "uint32"},
    {DType::UINT64, 8, 8, "Q", "uint64"},
    {DType::FLOAT16, 2, 2, "e", "float16"},
    {DType::FLOAT32, 4, 4, "f", "float32"},
    {DType::FLOAT64, 8, 8, "d", "float64"},
    {DType::COMPLEX64, 8, 4, "Zf", "complex64"},
    {DType::COMPLEX128, 16, 8, "Zd", "complex128"},
}};

constexpr bool table_follows_enum() {
  for (size_t i = 0; i < kDTypes.size(); ++i) {
    if (static_cast<size_t>(kDTypes[i].dtype) != i) return false;
  }
  return true;
}
static_assert(table_follows_enum(), "kDTypes lists the schema's dtypes in enum order");

// An integer format character of `size` bytes, signed or not.
DType integer(size_t size, bool is_signed) {
  switch (size) {
    case 1: return is_signed ? DType::INT8 : DType::UINT8;
    case 2: return is_signed ? DType::INT16 : DType::UINT16;
    case 4: return is_signed ? DType::INT32 : DType::UINT32;
    default: return is_signed ? DType::INT64 : DType::UINT64;
  }
}

[[noreturn]] void refuse(const char* format, const std::string& why) {
  throw nb::type_error(("xproc cannot send a buffer of format '" + std::string(format) + "' as an array (" + why +
                        "; arrays hold bool, int8-64, uint8-64, float16-64, complex64 and complex128)")
                           .c_str());
}

}  // namespace

const DTypeInfo* dtype_info(uint16_t raw) noexcept { return raw < kDTypes.size() ? &kDTypes[raw] : nullptr; }

BufferFormat parse_format(const char* format, Py_ssize_t itemsize) {
  const char* code = format != nullptr ? format : "B";
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
  std::string_view rest(code);
  DType dtype;
  if (rest == "?") {
    dtype = DType::BOOL;
  } else if (rest == "c") {
    dtype = DType::UINT8;  // a char is a byte
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
    dtype = DType::FLOAT16;
  } else if (rest == "f") {
    dtype = DType::FLOAT32;
  } else if (rest == "d") {
    dtype = DType::FLOAT64;
  } else if (rest == "Zf") {
    dtype = DType::COMPLEX64;
  } else if (rest == "Zd") {
    dtype = DType::COMPLEX128;
  } else {
    refuse(format, "no array dtype holds these elements");
  }
  const DTypeInfo& info = dtype_info(dtype);
  if (static_cast<size_t>(itemsize) != info.itemsize) {
    refuse(format, "its items take " + std::to_string(itemsize) + " bytes, not " + std::to_string(info.itemsize));
  }
  return {&info, big_endian && info.swap_width > 1};
}

}  // namespace xproc::python
