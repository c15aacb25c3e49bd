// N-dimensional arrays of numbers, as schema/xproc/value.capnp's Value.Array lays them
// out: numpy's dtypes, a shape, and the elements little-endian in C (row-major) order.
//
//   std::vector<double> pixels(480 * 640);
//   queue.put(xproc::Value(xproc::Array::of<double>(pixels, {480, 640})));
//   xproc::Value v = queue.get();
//   std::span<const double> got = v.as_array().as<double>();   // v.as_array().shape(): {480, 640}
//
// Without a copy, from a message where it lies (a queue's get_view, or a Message<Value>):
//
//   queue.get_view([](xproc::schema::Value::Reader v) {
//     auto frame = xproc::ArrayView::read(v);            // DecodeError when malformed
//     std::span<const double> px = frame.as<double>();   // valid during the call
//   });
//
// Reading checks what another process controls: the dtype, that the bytes are exactly
// product(shape) elements, the number of dimensions, bools that are 0 or 1 and that the
// elements are aligned for their type where they lie (DecodeError for each).
#pragma once

#include <capnp/common.h>
#include <kj/array.h>

#include <bit>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xproc/errors.h"
#include "xproc/value.capnp.h"

namespace xproc {

static_assert(std::endian::native == std::endian::little, "array elements are read in place as little-endian");

// numpy's element types, numbered as schema::Value::Array::DType.
enum class DType : uint8_t {
  kBool,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kUInt8,
  kUInt16,
  kUInt32,
  kUInt64,
  kFloat16,
  kFloat32,
  kFloat64,
  kComplex64,
  kComplex128,
};

// Bytes per element.
size_t itemsize(DType dtype) noexcept;
// numpy's name: "bool", "int8", ..., "float64", "complex128".
std::string_view dtype_name(DType dtype) noexcept;

// An IEEE 754 binary16 number, as its bits (C++20 has no half-precision type).
struct Float16 {
  uint16_t bits = 0;
  friend bool operator==(const Float16&, const Float16&) = default;
};

// The C++ element type of each dtype.
template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<bool> {
  static constexpr DType value = DType::kBool;
};
template <>
struct DTypeOf<int8_t> {
  static constexpr DType value = DType::kInt8;
};
template <>
struct DTypeOf<int16_t> {
  static constexpr DType value = DType::kInt16;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::kInt32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::kInt64;
};
template <>
struct DTypeOf<uint8_t> {
  static constexpr DType value = DType::kUInt8;
};
template <>
struct DTypeOf<uint16_t> {
  static constexpr DType value = DType::kUInt16;
};
template <>
struct DTypeOf<uint32_t> {
  static constexpr DType value = DType::kUInt32;
};
template <>
struct DTypeOf<uint64_t> {
  static constexpr DType value = DType::kUInt64;
};
template <>
struct DTypeOf<Float16> {
  static constexpr DType value = DType::kFloat16;
};
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::kFloat32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::kFloat64;
};
template <>
struct DTypeOf<std::complex<float>> {
  static constexpr DType value = DType::kComplex64;
};
template <>
struct DTypeOf<std::complex<double>> {
  static constexpr DType value = DType::kComplex128;
};

template <typename T>
concept ArrayElement = requires {
  DTypeOf<T>::value;
};

// The length along each dimension; empty for a 0-dimensional array (one element).
using Shape = std::vector<uint64_t>;

// The most dimensions an array may have (numpy's limit).
inline constexpr size_t kMostArrayDimensions = 64;
// Arrays of this many bytes or more travel in pieces (Cap'n Proto's largest Data is one
// byte less), each of kArrayPieceBytes but the last.
inline constexpr size_t kArrayPiecesFrom = size_t{1} << 29;
inline constexpr size_t kArrayPieceBytes = size_t{1} << 28;
// Elements of this many bytes or more, in whole words, are referred to by a message being
// built rather than copied into it, and are copied once, when it is written out. The
// Python package refers to large buffers by the same rule, so that C++ and Python encode
// one Value to the same bytes.
inline constexpr size_t kReferredFromBytes = 64 * 1024;

namespace detail {
[[noreturn]] void wrong_element_type(DType wanted, DType actual);
}  // namespace detail

// A checked Value.Array where it lies in a message: its dtype, shape and elements, valid
// as long as the message's bytes are.
class ArrayView {
 public:
  // DecodeError for an unknown dtype, more than kMostArrayDimensions dimensions, a byte
  // count other than product(shape) * itemsize, data and pieces both set, a piece that is
  // not whole elements, a bool other than 0 or 1, or elements misaligned for their type.
  static ArrayView read(schema::Value::Array::Reader reader);
  // The array a Value holds: TypeError when the Value is of another kind.
  static ArrayView read(schema::Value::Reader value);

  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  uint64_t size() const noexcept { return size_; }  // elements
  size_t nbytes() const noexcept { return size_ * itemsize(dtype_); }
  // The elements' bytes: one piece, or several for arrays of kArrayPiecesFrom bytes or more.
  const std::vector<std::span<const std::byte>>& pieces() const noexcept { return pieces_; }
  // Copies the elements (the pieces one after another) to `out`, nbytes() bytes.
  void copy_to(std::byte* out) const noexcept;

  // The elements as T, in place. TypeError when T is not the dtype's element type;
  // ValueError for an array in pieces (copy it: Array::copy_of).
  template <ArrayElement T>
  std::span<const T> as() const {
    if (DTypeOf<T>::value != dtype_) detail::wrong_element_type(DTypeOf<T>::value, dtype_);
    const std::span<const std::byte> bytes = contiguous_bytes();
    return {reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T)};
  }

 private:
  ArrayView() = default;
  static ArrayView checked(schema::Value::Array::Reader reader);
  std::span<const std::byte> contiguous_bytes() const;
  DType dtype_ = DType::kUInt8;
  Shape shape_;
  uint64_t size_ = 0;
  std::vector<std::span<const std::byte>> pieces_;
};

// An owned array: what a Value of kind kArray holds. Immutable; copies share the elements.
class Array {
 public:
  // A copy of `elements` shaped `shape` (ValueError when product(shape) differs from
  // elements.size(), or for more than kMostArrayDimensions dimensions).
  template <ArrayElement T>
  static Array of(std::span<const T> elements, Shape shape) {
    return from_bytes(DTypeOf<T>::value, std::move(shape), std::as_bytes(elements));
  }
  // One dimension.
  template <ArrayElement T>
  static Array of(std::span<const T> elements) {
    return of(elements, Shape{elements.size()});
  }
  // From little-endian elements' bytes; ValueError as above (bytes not product(shape) *
  // itemsize), or for a bool other than 0 or 1.
  static Array from_bytes(DType dtype, Shape shape, std::span<const std::byte> bytes);
  // An owned copy of what a view reads (its pieces joined).
  static Array copy_of(const ArrayView& view);

  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  uint64_t size() const noexcept { return size_; }
  size_t nbytes() const noexcept { return size_ * itemsize(dtype_); }
  std::span<const std::byte> bytes() const noexcept;

  // The elements as T; TypeError when T is not the dtype's element type.
  template <ArrayElement T>
  std::span<const T> as() const {
    if (DTypeOf<T>::value != dtype_) detail::wrong_element_type(DTypeOf<T>::value, dtype_);
    return {reinterpret_cast<const T*>(bytes().data()), static_cast<size_t>(size_)};
  }

  // Into a message: pieces from kArrayPiecesFrom bytes. From kReferredFromBytes, the
  // message refers to this array's elements rather than copying them, so it must be
  // written out while this Array (or a copy of it) lives.
  void to_capnp(schema::Value::Array::Builder builder) const;

  // Same dtype, same shape and the same bytes (so NaN equals the same NaN, and 0.0 does
  // not equal -0.0).
  friend bool operator==(const Array& a, const Array& b) noexcept;
  size_t hash() const noexcept;

 private:
  Array() = default;
  DType dtype_ = DType::kUInt8;
  Shape shape_;
  uint64_t size_ = 0;
  std::shared_ptr<const kj::Array<capnp::word>> words_;  // the elements, zero-padded to a word
};

}  // namespace xproc
