// See array.h. Every check of a received array is here, in ArrayView::read; Value's
// decoder and the bindings reach arrays through it.
#include "xproc/array.h"

#include "xproc/kj_errors_internal.h"

#include <capnp/orphan.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>

namespace xproc {
namespace {

struct DTypeTraits {
  std::string_view name;
  size_t size;
  size_t alignment;  // of the C++ element type, which a reader in place relies on
};

constexpr DTypeTraits kDTypes[] = {
    {"bool", 1, 1},    {"int8", 1, 1},    {"int16", 2, 2},     {"int32", 4, 4},       {"int64", 8, 8},
    {"uint8", 1, 1},   {"uint16", 2, 2},  {"uint32", 4, 4},    {"uint64", 8, 8},      {"float16", 2, 2},
    {"float32", 4, 4}, {"float64", 8, 8}, {"complex64", 8, 4}, {"complex128", 16, 8},
};
constexpr size_t kDTypeCount = std::size(kDTypes);
static_assert(kDTypeCount == static_cast<size_t>(DType::kComplex128) + 1);
static_assert(static_cast<int>(schema::Value::Array::DType::COMPLEX128) == static_cast<int>(DType::kComplex128));

const DTypeTraits& traits(DType dtype) noexcept { return kDTypes[static_cast<size_t>(dtype)]; }

// Whether a bool array holds a byte that is neither 0 nor 1 (no bool to read it as).
bool has_bad_bool(std::span<const std::byte> bytes) {
  return std::any_of(bytes.begin(), bytes.end(), [](std::byte b) { return static_cast<unsigned char>(b) > 1; });
}

std::string shape_text(const Shape& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i != 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + (shape.size() == 1 ? ",)" : ")");
}

// product(shape), checked against the `bytes` bytes of elements of `dtype`: Error (DecodeError
// for what arrived, ValueError for what a caller gave) says what is wrong.
template <typename Error>
uint64_t checked_size(DType dtype, const Shape& shape, size_t bytes) {
  if (shape.size() > kMostArrayDimensions) {
    throw Error("an array of " + std::to_string(shape.size()) + " dimensions (at most " +
                std::to_string(kMostArrayDimensions) + ")");
  }
  uint64_t count = 1;
  for (uint64_t length : shape) {
    if (length != 0 && count > UINT64_MAX / length) throw Error("an array shape " + shape_text(shape) + " overflows");
    count *= length;
  }
  const size_t size = itemsize(dtype);
  if (count > UINT64_MAX / size || count * size != bytes) {
    throw Error("an array of shape " + shape_text(shape) + " and dtype " + std::string(dtype_name(dtype)) + " with " +
                std::to_string(bytes) + " bytes of elements");
  }
  return count;
}

}  // namespace

size_t itemsize(DType dtype) noexcept { return traits(dtype).size; }
std::string_view dtype_name(DType dtype) noexcept { return traits(dtype).name; }

namespace detail {
void wrong_element_type(DType wanted, DType actual) {
  throw TypeError("expected an array of " + std::string(dtype_name(wanted)) + ", got one of " +
                  std::string(dtype_name(actual)));
}
}  // namespace detail

ArrayView ArrayView::read(schema::Value::Reader value) {
  if (!value.isArray()) throw TypeError("expected an array Value");
  return read(value.getArray());
}

ArrayView ArrayView::read(schema::Value::Array::Reader reader) {
  try {
    return checked(reader);
  } catch (const kj::Exception& e) {  // what Cap'n Proto refuses as it reads (misaligned segments ...)
    detail::rethrow_kj(e, ErrorKind::kDecodeError, "invalid array: ");
  }
}

ArrayView ArrayView::checked(schema::Value::Array::Reader reader) {
  ArrayView view;
  const auto raw_dtype = static_cast<size_t>(reader.getDtype());
  if (raw_dtype >= kDTypeCount) throw DecodeError("an array of unknown dtype " + std::to_string(raw_dtype));
  view.dtype_ = static_cast<DType>(raw_dtype);
  const DTypeTraits& type = traits(view.dtype_);

  auto shape = reader.getShape();
  if (shape.size() > kMostArrayDimensions) {
    throw DecodeError("an array of " + std::to_string(shape.size()) + " dimensions (at most " +
                      std::to_string(kMostArrayDimensions) + ")");
  }
  view.shape_.reserve(shape.size());
  for (uint64_t length : shape) view.shape_.push_back(length);

  auto add_piece = [&](capnp::Data::Reader piece) {
    std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(piece.begin()), piece.size());
    if (bytes.size() % type.size != 0) {
      throw DecodeError("an array piece of " + std::to_string(bytes.size()) + " bytes is not whole " +
                        std::string(type.name) + " elements");
    }
    if (!bytes.empty() && reinterpret_cast<uintptr_t>(bytes.data()) % type.alignment != 0) {
      throw DecodeError("array elements of dtype " + std::string(type.name) + " misaligned in the message");
    }
    if (view.dtype_ == DType::kBool && has_bad_bool(bytes))
      throw DecodeError("an array of bool holds a byte not 0 or 1");
    if (!bytes.empty()) view.pieces_.push_back(bytes);
  };
  auto data = reader.getData();
  auto pieces = reader.getPieces();
  if (data.size() != 0 && pieces.size() != 0) throw DecodeError("an array with both data and pieces");
  add_piece(data);
  for (auto piece : pieces) add_piece(piece);

  size_t bytes = 0;
  for (auto piece : view.pieces_) bytes += piece.size();
  view.size_ = checked_size<DecodeError>(view.dtype_, view.shape_, bytes);
  return view;
}

std::span<const std::byte> ArrayView::contiguous_bytes() const {
  if (pieces_.size() > 1) {
    throw ValueError("an array of " + std::to_string(nbytes()) + " bytes arrives in " + std::to_string(pieces_.size()) +
                     " pieces; copy it whole with Array::copy_of");
  }
  return pieces_.empty() ? std::span<const std::byte>() : pieces_.front();
}

void ArrayView::copy_to(std::byte* out) const noexcept {
  for (const auto piece : pieces_) {
    std::memcpy(out, piece.data(), piece.size());
    out += piece.size();
  }
}

Array Array::from_bytes(DType dtype, Shape shape, std::span<const std::byte> bytes) {
  if (static_cast<size_t>(dtype) >= kDTypeCount) throw ValueError("unknown dtype");
  if (dtype == DType::kBool && has_bad_bool(bytes)) throw ValueError("an array of bool holds a byte not 0 or 1");
  Array array;
  array.size_ = checked_size<ValueError>(dtype, shape, bytes.size());
  array.dtype_ = dtype;
  array.shape_ = std::move(shape);
  auto words = kj::heapArray<capnp::word>((bytes.size() + sizeof(capnp::word) - 1) / sizeof(capnp::word));
  if (words.size() != 0) {
    std::memset(&words.back(), 0, sizeof(capnp::word));  // the padding past the elements, which the message carries
    std::memcpy(words.begin(), bytes.data(), bytes.size());
  }
  array.words_ = std::make_shared<const kj::Array<capnp::word>>(kj::mv(words));
  return array;
}

Array Array::copy_of(const ArrayView& view) {
  Array array;
  array.dtype_ = view.dtype();
  array.shape_ = view.shape();
  array.size_ = view.size();
  auto words = kj::heapArray<capnp::word>((view.nbytes() + sizeof(capnp::word) - 1) / sizeof(capnp::word));
  if (words.size() != 0) std::memset(&words.back(), 0, sizeof(capnp::word));
  view.copy_to(reinterpret_cast<std::byte*>(words.begin()));
  array.words_ = std::make_shared<const kj::Array<capnp::word>>(kj::mv(words));
  return array;
}

std::span<const std::byte> Array::bytes() const noexcept {
  if (!words_) return {};
  return {reinterpret_cast<const std::byte*>(words_->begin()), nbytes()};
}

void Array::to_capnp(schema::Value::Array::Builder builder) const {
  builder.setDtype(static_cast<schema::Value::Array::DType>(dtype_));
  auto shape = builder.initShape(static_cast<unsigned>(shape_.size()));
  for (unsigned i = 0; i < shape_.size(); ++i) shape.set(i, shape_[i]);
  // Referred to, not copied: the elements are copied once, when the message is written
  // out. (Cap'n Proto requires referred Data to be word-aligned, and reads its padding.)
  auto orphanage = capnp::Orphanage::getForMessageContaining(builder);
  auto refer = [&](std::span<const std::byte> bytes) {
    return orphanage.referenceExternalData(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
  };
  auto referable = [](std::span<const std::byte> bytes) {
    return bytes.size() >= kReferredFromBytes && bytes.size() % sizeof(capnp::word) == 0;
  };
  const std::span<const std::byte> all = bytes();
  if (all.size() < kArrayPiecesFrom) {
    if (referable(all)) {
      builder.adoptData(refer(all));
    } else {  // (an empty array too gets its empty Data, as Python writes it)
      auto data = builder.initData(static_cast<unsigned>(all.size()));
      if (!all.empty()) std::memcpy(data.begin(), all.data(), all.size());
    }
    return;
  }
  const size_t count = (all.size() + kArrayPieceBytes - 1) / kArrayPieceBytes;
  auto pieces = builder.initPieces(static_cast<unsigned>(count));
  for (size_t i = 0; i < count; ++i) {
    pieces.adopt(
        static_cast<unsigned>(i),
        refer(all.subspan(i * kArrayPieceBytes, std::min(kArrayPieceBytes, all.size() - i * kArrayPieceBytes))));
  }
}

bool operator==(const Array& a, const Array& b) noexcept {
  if (a.dtype_ != b.dtype_ || a.shape_ != b.shape_) return false;
  if (a.words_ == b.words_) return true;
  const auto x = a.bytes(), y = b.bytes();
  return x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size()) == 0);
}

size_t Array::hash() const noexcept {
  const auto elements = bytes();
  size_t h =
      std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(elements.data()), elements.size()));
  h ^= static_cast<size_t>(dtype_) * 0x9e3779b97f4a7c15ULL;
  for (uint64_t length : shape_) h = h * 31 + length;
  return h;
}

}  // namespace xproc
