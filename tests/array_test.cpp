// Arrays in Values (schema/xproc/value.capnp, Value.Array): every dtype and shape round
// trips, read in place from a queue's ring or an owned Message, arrays of 512 MiB or more
// travel in pieces, repr follows numpy's layout, and malformed arrays built by hand (as a
// hostile peer would) are DecodeErrors.
#include "xproc/array.h"

#include <capnp/message.h>
#include <capnp/orphan.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <complex>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "xproc/queue.h"
#include "xproc/value.h"

namespace {

using xproc::Array;
using xproc::ArrayView;
using xproc::DType;
using xproc::Shape;
using xproc::Value;
namespace schema = xproc::schema;

std::span<const std::byte> as_bytes(const kj::Array<capnp::word>& words) {
  return {reinterpret_cast<const std::byte*>(words.begin()), words.size() * sizeof(capnp::word)};
}

Value round_trip(const Value& v) { return Value::decode(as_bytes(v.encode())); }

template <typename T>
std::vector<T> sample(size_t count) {
  std::vector<T> out(count);
  for (size_t i = 0; i < count; ++i) {
    if constexpr (std::is_same_v<T, bool>) {
      out[i] = i % 3 == 0;
    } else if constexpr (std::is_same_v<T, xproc::Float16>) {
      out[i] = xproc::Float16{static_cast<uint16_t>(0x3c00 + i)};  // 1.0 and up
    } else if constexpr (std::is_same_v<T, std::complex<float>> || std::is_same_v<T, std::complex<double>>) {
      out[i] = T(static_cast<typename T::value_type>(i) * 0.5f, -static_cast<typename T::value_type>(i));
    } else {
      out[i] = static_cast<T>(i * 7 + 1);
    }
  }
  return out;
}

template <typename T>
class EveryDType : public ::testing::Test {};
using ElementTypes = ::testing::Types<bool, int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t,
                                      xproc::Float16, float, double, std::complex<float>, std::complex<double>>;
TYPED_TEST_SUITE(EveryDType, ElementTypes);

TYPED_TEST(EveryDType, RoundTripsInEveryShape) {
  using T = TypeParam;
  for (const Shape& shape : {Shape{}, Shape{0}, Shape{5}, Shape{2, 3, 4}, Shape{3, 0, 2}, Shape{1000}}) {
    uint64_t count = std::accumulate(shape.begin(), shape.end(), uint64_t{1}, std::multiplies<>());
    // std::vector<bool> has no span: copy bools into a plain array.
    const auto elements = sample<T>(count);
    std::unique_ptr<T[]> plain(new T[count == 0 ? 1 : count]);
    std::copy(elements.begin(), elements.end(), plain.get());
    const Array array = Array::of<T>(std::span<const T>(plain.get(), count), shape);
    EXPECT_EQ(array.dtype(), xproc::DTypeOf<T>::value);
    EXPECT_EQ(array.nbytes(), count * sizeof(T));

    const Value back = round_trip(Value(array));
    ASSERT_TRUE(back.is_array());
    EXPECT_EQ(back.as_array().shape(), shape);
    EXPECT_EQ(back.as_array().dtype(), xproc::DTypeOf<T>::value);
    const auto got = back.as_array().template as<T>();
    ASSERT_EQ(got.size(), count);
    for (size_t i = 0; i < count; ++i) EXPECT_TRUE(got[i] == elements[i]) << i;
    EXPECT_EQ(back, Value(array));
  }
}

TEST(Array, ItemsizesAndNamesFollowNumpy) {
  EXPECT_EQ(xproc::itemsize(DType::kBool), 1u);
  EXPECT_EQ(xproc::itemsize(DType::kFloat16), 2u);
  EXPECT_EQ(xproc::itemsize(DType::kComplex64), 8u);
  EXPECT_EQ(xproc::itemsize(DType::kComplex128), 16u);
  EXPECT_EQ(xproc::dtype_name(DType::kUInt32), "uint32");
  EXPECT_EQ(xproc::dtype_name(DType::kComplex128), "complex128");
}

TEST(Array, AShapeThatDisagreesWithTheElementsIsAValueError) {
  std::vector<double> six(6);
  EXPECT_THROW(Array::of<double>(six, {4, 2}), xproc::ValueError);
  EXPECT_THROW(Array::of<double>(six, Shape(65, 1)), xproc::ValueError);  // 65 dimensions
  EXPECT_THROW(Array::of<double>(six, {uint64_t{1} << 40, uint64_t{1} << 40}), xproc::ValueError);
  const uint8_t two[] = {0, 2};
  EXPECT_THROW(Array::from_bytes(DType::kBool, {2}, std::as_bytes(std::span(two))), xproc::ValueError);
}

TEST(Array, ReadingAsTheWrongTypeIsATypeError) {
  std::vector<int32_t> ints{1, 2, 3};
  const Array array = Array::of<int32_t>(ints);
  EXPECT_THROW(array.as<int64_t>(), xproc::TypeError);
  EXPECT_THROW(Value(array).as_list(), xproc::TypeError);
  EXPECT_EQ(Value(array).type_name(), "ndarray");
}

TEST(Array, EqualityIsDtypeShapeAndBytesAndArraysHashAsKeys) {
  std::vector<int32_t> ints{1, 2, 3, 4};
  const Value a = Value(Array::of<int32_t>(ints, {2, 2}));
  EXPECT_EQ(a, Value(Array::of<int32_t>(ints, {2, 2})));
  EXPECT_NE(a, Value(Array::of<int32_t>(ints, {4})));
  std::vector<uint32_t> unsigned_ints{1, 2, 3, 4};
  EXPECT_NE(a, Value(Array::of<uint32_t>(unsigned_ints, {2, 2})));
  EXPECT_EQ(a.hash(), Value(Array::of<int32_t>(ints, {2, 2})).hash());
  xproc::ValueMap map;
  map.set(a, "found");
  EXPECT_EQ(map.at(Value(Array::of<int32_t>(ints, {2, 2}))).as_text(), "found");
  EXPECT_TRUE(a.truthy());
  EXPECT_FALSE(Value(Array::of<int32_t>({})).truthy());
}

TEST(Array, ReprFollowsNumpysLayout) {
  std::vector<int32_t> ints{1, 2, 3, 4};
  EXPECT_EQ(Value(Array::of<int32_t>(ints, {2, 2})).repr(), "array([[1, 2], [3, 4]], dtype=int32)");
  std::vector<double> doubles{0.5, -1.0};
  EXPECT_EQ(Value(Array::of<double>(doubles)).repr(), "array([0.5, -1.0])");
  EXPECT_EQ(Value(Array::of<double>(std::span(doubles).first(1), {})).repr(), "array(0.5)");
  EXPECT_EQ(Value(Array::of<double>({})).repr(), "array([], dtype=float64)");
  EXPECT_EQ(Value(Array::of<double>({}, {uint64_t{1} << 40, 0})).repr(),
            "array([], shape=(1099511627776, 0), dtype=float64)");
  std::vector<std::complex<double>> complexes{{1, 2}, {0, -1.5}};
  EXPECT_EQ(Value(Array::of<std::complex<double>>(complexes)).repr(), "array([(1+2j), -1.5j])");
  const bool bools[] = {true, false};
  EXPECT_EQ(Value(Array::of<bool>(bools)).repr(), "array([True, False])");
  const xproc::Float16 halves[] = {{0x3c00}, {0xc000}};  // 1.0, -2.0
  EXPECT_EQ(Value(Array::of<xproc::Float16>(halves)).repr(), "array([1.0, -2.0], dtype=float16)");
  std::vector<int64_t> many(2000);
  std::iota(many.begin(), many.end(), 0);
  EXPECT_EQ(Value(Array::of<int64_t>(many)).repr(), "array([0, 1, 2, ..., 1997, 1998, 1999])");
  EXPECT_EQ(Value(Array::of<int64_t>(many, {2, 1000})).repr(),
            "array([[0, 1, 2, ..., 997, 998, 999], [1000, 1001, 1002, ..., 1997, 1998, 1999]])");
}

TEST(Array, NestsInMapsAndListsAndTravelsThroughAQueue) {
  std::vector<float> frame(480 * 640);
  std::iota(frame.begin(), frame.end(), 0.0f);
  const Value message = Value::map({{"frame", Value(Array::of<float>(frame, {480, 640}))}, {"id", 7}});
  xproc::Queue<Value> q;
  q.put(message);
  EXPECT_EQ(q.get(), message);
}

TEST(Array, IsReadInPlaceFromTheRingAndFromAnOwnedMessage) {
  std::vector<double> frame(64 * 1024);
  std::iota(frame.begin(), frame.end(), 0.25);
  xproc::Queue<Value> q;
  q.put(Value(Array::of<double>(frame, {256, 256})));
  bool seen = false;
  ASSERT_TRUE(q.get_view([&](schema::Value::Reader value) {
    const ArrayView view = ArrayView::read(value);
    EXPECT_EQ(view.shape(), (Shape{256, 256}));
    const std::span<const double> elements = view.as<double>();
    ASSERT_EQ(elements.size(), frame.size());
    EXPECT_TRUE(std::equal(elements.begin(), elements.end(), frame.begin()));
    seen = true;
  }));
  EXPECT_TRUE(seen);
  EXPECT_TRUE(q.empty());

  const auto words = Value(Array::of<double>(frame)).encode();
  const auto owned = xproc::Message<schema::Value>::decode(as_bytes(words));
  const std::span<const double> elements = ArrayView::read(owned.reader()).as<double>();
  EXPECT_TRUE(std::equal(elements.begin(), elements.end(), frame.begin()));
  EXPECT_THROW(ArrayView::read(xproc::Message<schema::Value>::decode(as_bytes(Value(1).encode())).reader()),
               xproc::TypeError);
}

TEST(Array, ArraysOf512MiBOrMoreTravelInPieces) {
  const size_t bytes = xproc::kArrayPiecesFrom + 8 * 1024;
  std::vector<uint8_t> big(bytes);
  for (size_t i = 0; i < bytes; i += 4096) big[i] = static_cast<uint8_t>(i >> 12);
  big.back() = 0xee;
  const auto words = Value(Array::of<uint8_t>(big)).encode();
  {
    capnp::FlatArrayMessageReader reader(words, capnp::ReaderOptions{.traversalLimitInWords = words.size() * 2});
    auto array = reader.getRoot<schema::Value>().getArray();
    EXPECT_EQ(array.getData().size(), 0u);
    ASSERT_EQ(array.getPieces().size(), 3u);  // 256 MiB, 256 MiB, 8 KiB
    EXPECT_EQ(array.getPieces()[2].size(), 8u * 1024);
    const ArrayView view = ArrayView::read(array);
    EXPECT_EQ(view.pieces().size(), 3u);
    EXPECT_THROW(view.as<uint8_t>(), xproc::ValueError);  // not one span in place
    const Array joined = Array::copy_of(view);
    EXPECT_TRUE(std::memcmp(joined.bytes().data(), big.data(), bytes) == 0);
  }
  const Value back = Value::decode(as_bytes(words));
  ASSERT_EQ(back.as_array().size(), bytes);
  EXPECT_TRUE(std::memcmp(back.as_array().bytes().data(), big.data(), bytes) == 0);
}

// A Value.Array as a hostile writer makes it, bypassing Array's own checks.
struct HandBuilt {
  capnp::MallocMessageBuilder message;
  schema::Value::Array::Builder array = message.initRoot<schema::Value>().initArray();

  HandBuilt(schema::Value::Array::DType dtype, const Shape& shape, size_t data_bytes) {
    array.setDtype(dtype);
    auto out = array.initShape(static_cast<unsigned>(shape.size()));
    for (unsigned i = 0; i < shape.size(); ++i) out.set(i, shape[i]);
    if (data_bytes != 0) array.initData(static_cast<unsigned>(data_bytes));
  }
  kj::Array<capnp::word> words() { return capnp::messageToFlatArray(message); }
};

void expect_decode_error(HandBuilt& built, const char* says) {
  const auto words = built.words();
  try {
    Value::decode(as_bytes(words));
    ADD_FAILURE() << "decoded; expected an error saying " << says;
  } catch (const xproc::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
  }
}

TEST(ArrayHostile, MalformedArraysAreDecodeErrors) {
  using D = schema::Value::Array::DType;
  {
    HandBuilt built(D::FLOAT64, {3}, 16);  // 3 doubles in 16 bytes
    expect_decode_error(built, "with 16 bytes");
  }
  {
    HandBuilt built(static_cast<D>(99), {2}, 2);
    expect_decode_error(built, "unknown dtype 99");
  }
  {
    HandBuilt built(D::BOOL, {2}, 2);
    built.array.getData()[1] = 2;
    expect_decode_error(built, "not 0 or 1");
  }
  {
    HandBuilt built(D::UINT8, {4}, 2);
    built.array.initPieces(1).init(0, 2);
    expect_decode_error(built, "both data and pieces");
  }
  {
    HandBuilt built(D::INT32, {3}, 0);
    auto pieces = built.array.initPieces(2);
    pieces.init(0, 6);  // one and a half int32
    pieces.init(1, 6);
    expect_decode_error(built, "not whole int32");
  }
  {
    HandBuilt built(D::UINT8, Shape(65, 1), 1);
    expect_decode_error(built, "65 dimensions");
  }
  {
    HandBuilt built(D::UINT8, {uint64_t{1} << 32, uint64_t{1} << 32, 2}, 0);
    expect_decode_error(built, "overflows");
  }
  {
    HandBuilt built(D::COMPLEX128, {std::numeric_limits<uint64_t>::max() / 8}, 16);  // product * 16 overflows
    expect_decode_error(built, "with 16 bytes");
  }
}

TEST(ArrayHostile, MisalignedElementsAreNeverReadInPlace) {
  // Cap'n Proto aligns Data to a word of the message, but not the message to anything.
  // Over a message at an address 4 past a word, Cap'n Proto itself refuses the segment
  // before an array can be reached (ArrayView::read checks each piece's alignment as well,
  // for a Cap'n Proto built with CAPNP_ALLOW_UNALIGNED); decoding such bytes into a Value
  // copies them to aligned memory first.
  std::vector<double> two{1.0, 2.0};
  const auto words = Value(Array::of<double>(two)).encode();
  std::vector<capnp::word> storage(words.size() + 1);
  auto* shifted = reinterpret_cast<std::byte*>(storage.data()) + 4;
  std::memcpy(shifted, words.begin(), words.size() * sizeof(capnp::word));
  capnp::FlatArrayMessageReader reader(kj::arrayPtr(reinterpret_cast<const capnp::word*>(shifted), words.size()));
  EXPECT_THROW(reader.getRoot<schema::Value>(), kj::Exception);
  const Value copied = Value::decode({shifted, words.size() * sizeof(capnp::word)});
  EXPECT_EQ(copied.as_array().as<double>()[1], 2.0);
}

TEST(ArrayHostile, AMalformedArrayOnAQueueCostsOnlyItself) {
  xproc::Queue<Value> q;
  HandBuilt built(schema::Value::Array::DType::FLOAT64, {3}, 16);
  const auto bad = built.words();
  q.bytes().put_bytes(as_bytes(bad));
  std::vector<double> good{1, 2, 3};
  q.put(Value(Array::of<double>(good)));
  EXPECT_THROW(q.get(), xproc::DecodeError);
  EXPECT_EQ(q.get().as_array().as<double>()[2], 3.0);
}

}  // namespace
