// Tests for xproc::Value: Python equality/hashing, dict order, Python-exact repr (checked
// against python3 itself), round trips through bytes, and hostile bytes.
#include "xproc/value.h"
#include "xproc/value_decoding_internal.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace {

using xproc::Bytes;
using xproc::ProxyRef;
using xproc::Value;
using xproc::ValueMap;

std::span<const std::byte> as_bytes(const kj::Array<capnp::word>& words) {
  return {reinterpret_cast<const std::byte*>(words.begin()), words.size() * sizeof(capnp::word)};
}

Value round_trip(const Value& v) { return Value::decode(as_bytes(v.encode())); }

// Runs python3 once over all expressions, returning repr() of each, one per line.
std::vector<std::string> python_reprs(const std::vector<std::string>& expressions) {
  std::string program = "import sys\n";
  for (const auto& e : expressions) program += "print(repr(" + e + "))\n";
  const std::string path = "/tmp/xproc-value-test-" + std::to_string(getpid()) + ".py";
  FILE* file = std::fopen(path.c_str(), "w");
  std::fputs(program.c_str(), file);
  std::fclose(file);
  FILE* pipe = popen(("python3 " + path).c_str(), "r");
  std::vector<std::string> lines;
  char buffer[4096];
  while (std::fgets(buffer, sizeof(buffer), pipe)) {
    std::string line(buffer);
    if (!line.empty() && line.back() == '\n') line.pop_back();
    lines.push_back(line);
  }
  pclose(pipe);
  std::remove(path.c_str());
  return lines;
}

TEST(ValueTest, ReprMatchesPythonForTableOfCases) {
  ValueMap seed;
  seed.set(0.25, nullptr);
  seed.set("Process_9", "1");
  seed.set("2", 2);
  const std::vector<std::pair<std::string, Value>> cases = {
      {"None", Value()},
      {"(1, 'a')", Value::tuple({1, "a"})},
      {"(1,)", Value::tuple({1})},
      {"()", Value::tuple({})},
      {"[(1, [2])]", Value::list({Value::tuple({1, Value::list({2})})})},
      {"True", true},
      {"False", false},
      {"0", 0},
      {"-42", -42},
      {"9223372036854775807", std::numeric_limits<int64_t>::max()},
      {"-9223372036854775808", std::numeric_limits<int64_t>::min()},
      {"1.5", 1.5},
      {"0.1", 0.1},
      {"1e16", 1e16},
      {"1e15", 1e15},
      {"1e-5", 1e-5},
      {"0.0001", 0.0001},
      {"-0.0", -0.0},
      {"0.0", 0.0},
      {"2.5e-300", 2.5e-300},
      {"1.7976931348623157e308", std::numeric_limits<double>::max()},
      {"5e-324", 5e-324},
      {"123456789.125", 123456789.125},
      {"1/3", 1.0 / 3},
      {"float('inf')", std::numeric_limits<double>::infinity()},
      {"float('-inf')", -std::numeric_limits<double>::infinity()},
      {"float('nan')", std::nan("")},
      {"12345678901234567.0", 12345678901234567.0},
      {"''", ""},
      {"'hello'", "hello"},
      {"\"it's\"", "it's"},
      {"'say \"hi\"'", "say \"hi\""},
      {"'both \\' and \"'", "both ' and \""},
      {"'tab\\tnew\\nline\\rcr'", "tab\tnew\nline\rcr"},
      {"'back\\\\slash'", "back\\slash"},
      {"'\\x00\\x01\\x1f\\x7f'", std::string("\x00\x01\x1f\x7f", 4)},
      {"'caf\\u00e9 \\u65e5\\u672c \\U0001F600'", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"},
      {"'\\x85\\xa0\\xad'", "\xc2\x85\xc2\xa0\xc2\xad"},
      {"'\\u2028\\ufeff'", "\xe2\x80\xa8\xef\xbb\xbf"},
      {"b''", Value::bytes("")},
      {"b'\\x00a'", Value::bytes(std::string("\x00"
                                             "a",
                                             2))},
      {"b\"it's\"", Value::bytes("it's")},
      {"b'\\xff\\x80\\t\\\\'", Value::bytes("\xff\x80\t\\")},
      {"[]", Value::List{}},
      {"[0, 1, 2]", Value::list({0, 1, 2})},
      {"[None, [True, 'x'], b'y']", Value::list({nullptr, Value::list({true, "x"}), Value::bytes("y")})},
      {"{}", ValueMap{}},
      {"{0.25: None, 'Process_9': '1', '2': 2}", seed},
      {"{1: {2: [3.5]}}", Value::map({{1, Value::map({{2, Value::list({3.5})}})}})},
      {"{None: 1, False: 2, b'k': 3}", Value::map({{nullptr, 1}, {false, 2}, {Value::bytes("k"), 3}})},
  };
  std::vector<std::string> expressions;
  for (const auto& c : cases) expressions.push_back(c.first);
  const auto expected = python_reprs(expressions);
  ASSERT_EQ(expected.size(), cases.size()) << "python3 did not print one line per case";
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(cases[i].second.repr(), expected[i]) << "for Python expression " << cases[i].first;
  }
}

TEST(ValueTest, InvalidUtf8TextReprsAsSurrogateEscapes) {
  EXPECT_EQ(Value(std::string("a\xff"
                              "b"))
                .repr(),
            "'a\\udcffb'");
}

TEST(ValueTest, NumbersEqualAcrossBoolIntFloatAsPython) {
  EXPECT_EQ(Value(1), Value(1.0));
  EXPECT_EQ(Value(true), Value(1));
  EXPECT_EQ(Value(false), Value(0.0));
  EXPECT_EQ(Value(1).hash(), Value(1.0).hash());
  EXPECT_EQ(Value(true).hash(), Value(1).hash());
  EXPECT_FALSE(Value(1) == Value(1.5));
  EXPECT_FALSE(Value(std::nan("")) == Value(std::nan("")));
  EXPECT_FALSE(Value("a") == Value::bytes("a"));
  EXPECT_FALSE(Value(nullptr) == Value(0));
  // 2^63 as a float is not equal to any int64 (Python compares exactly).
  EXPECT_FALSE(Value(9223372036854775808.0) == Value(std::numeric_limits<int64_t>::max()));
}

TEST(ValueTest, MapKeysFollowPythonEquality) {
  ValueMap map;
  map.set(1, "a");
  map.set(true, "b");
  map.set(1.0, "c");
  EXPECT_EQ(map.size(), 1u);
  EXPECT_EQ(Value(map).repr(), "{1: 'c'}");
}

TEST(ValueTest, MapKeepsInsertionOrderAcrossResetAndErase) {
  ValueMap map;
  for (int i = 0; i < 5; ++i) map.set(i, i * 10);
  map.set(2, "again");  // keeps position
  ASSERT_TRUE(map.erase(1).has_value());
  EXPECT_FALSE(map.erase(1).has_value());
  map.set(1, "back");  // goes to the end
  EXPECT_EQ(Value(map).repr(), "{0: 0, 2: 'again', 3: 30, 4: 40, 1: 'back'}");
  auto last = map.pop_last();
  EXPECT_EQ(last.first, Value(1));
  EXPECT_EQ(map.size(), 4u);
}

TEST(ValueTest, MapCompactsAfterManyErasesAndStaysConsistent) {
  ValueMap map;
  for (int i = 0; i < 10000; ++i) map.set(i, i);
  for (int i = 0; i < 10000; i += 3) map.erase(i);
  for (int i = 0; i < 10000; ++i) {
    const Value* v = map.find(i);
    if (i % 3 == 0) {
      EXPECT_EQ(v, nullptr);
    } else {
      ASSERT_NE(v, nullptr);
      EXPECT_EQ(v->as_int(), i);
    }
  }
  std::vector<Value> keys = map.keys();
  for (size_t k = 1; k < keys.size(); ++k) EXPECT_LT(keys[k - 1].as_int(), keys[k].as_int());
}

// Small maps are searched by scanning and larger ones through a hash index: the same
// answers on both sides of the switch, in both directions.
TEST(ValueTest, MapAnswersTheSameWhileGrowingPastAndShrinkingBelowItsIndexThreshold) {
  ValueMap map;
  for (int size = 1; size <= 40; ++size) {
    map.set(size, size);
    ASSERT_EQ(map.size(), static_cast<size_t>(size));
    for (int k = 1; k <= size; ++k) {
      const Value* v = map.find(static_cast<double>(k));  // 2.0 finds 2, as in Python
      ASSERT_NE(v, nullptr) << "size " << size << " key " << k;
      if (k > 1) {
        EXPECT_EQ(v->as_int(), k);
      }
    }
    EXPECT_EQ(map.find(size + 1), nullptr);
    EXPECT_FALSE(map.set(true, "one"));  // True == 1: replaces, keeps the position
    EXPECT_EQ(map.find(1)->as_text(), "one");
  }
  for (int k = 40; k > 3; --k) {
    ASSERT_TRUE(map.erase(k).has_value());
    ASSERT_EQ(map.find(k), nullptr);
    ASSERT_NE(map.find(k - 1), nullptr);
  }
  map.set("new", 1);
  EXPECT_EQ(Value(map).repr(), "{1: 'one', 2: 2, 3: 3, 'new': 1}");
  EXPECT_EQ(map.pop_last().first, Value("new"));
  EXPECT_EQ(map, Value::map({{3, 3}, {2, 2}, {1, "one"}}).as_map());
}

TEST(ValueTest, MapAtOnMissingKeyThrowsKeyErrorWithRepr) {
  ValueMap map;
  try {
    map.at("missing");
    FAIL() << "expected KeyError";
  } catch (const xproc::KeyError& e) {
    EXPECT_STREQ(e.what(), "'missing'");
  }
  EXPECT_THROW(map.pop_last(), xproc::KeyError);
}

TEST(ValueTest, MapEqualityIgnoresOrder) {
  EXPECT_EQ(Value::map({{"a", 1}, {"b", 2}}), Value::map({{"b", 2}, {"a", 1}}));
  EXPECT_FALSE(Value::map({{"a", 1}}) == Value::map({{"a", 2}}));
}

TEST(ValueTest, AccessorOfWrongKindThrowsTypeError) {
  EXPECT_THROW(Value("x").as_int(), xproc::TypeError);
  EXPECT_THROW(Value(1).as_text(), xproc::TypeError);
  EXPECT_EQ(Value(true).as_int(), 1);
  EXPECT_DOUBLE_EQ(Value(3).as_float(), 3.0);
}

TEST(ValueTest, UnsignedAboveInt64MaxThrowsValueError) {
  EXPECT_THROW(Value(std::numeric_limits<uint64_t>::max()), xproc::ValueError);
  EXPECT_EQ(Value(uint64_t{7}).as_int(), 7);
}

TEST(ValueTest, TruthinessFollowsPython) {
  EXPECT_FALSE(Value().truthy());
  EXPECT_FALSE(Value(0.0).truthy());
  EXPECT_FALSE(Value("").truthy());
  EXPECT_FALSE(Value(ValueMap{}).truthy());
  EXPECT_TRUE(Value(Value::list({0})).truthy());
}

TEST(ValueTest, EveryKindRoundTripsThroughBytes) {
  ValueMap nested;
  nested.set(0.25, nullptr);
  nested.set("list", Value::list({1, 2.5, "three", Value::bytes(std::string("\0\xff", 2))}));
  nested.set(Value::list({1, 2}), Value::map({{"deep", Value::map({{true, false}})}}));
  nested.set(Value::tuple({1, 2}), Value::tuple({Value::list({}), Value::tuple({})}));
  const std::vector<Value> values = {Value(),
                                     true,
                                     false,
                                     0,
                                     -1,
                                     std::numeric_limits<int64_t>::min(),
                                     3.25,
                                     -0.0,
                                     std::numeric_limits<double>::infinity(),
                                     "",
                                     "text with \0 inside",
                                     Value::bytes(std::string(1000, '\x01')),
                                     Value::List{},
                                     nested};
  for (const Value& v : values) {
    EXPECT_EQ(round_trip(v), v) << v.repr();
    EXPECT_EQ(round_trip(v).repr(), v.repr());
  }
  EXPECT_TRUE(std::isnan(round_trip(std::nan("")).as_float()));
}

TEST(ValueTest, TypedStructRoundTripsAndPrints) {
  capnp::MallocMessageBuilder builder;
  builder.initRoot<xproc::schema::Value>().setText("inner");
  Value typed = Value::typed(builder.getRoot<xproc::schema::Value>().asReader());
  EXPECT_EQ(typed.as_struct().schema_id, capnp::typeId<xproc::schema::Value>());
  Value back = round_trip(typed);
  EXPECT_EQ(back, typed);
  auto inner =
      xproc::Message<xproc::schema::Value>::adopt(kj::heapArray<capnp::word>(back.as_struct().message->asPtr()));
  EXPECT_STREQ(inner->getText().cStr(), "inner");
  EXPECT_EQ(typed.repr().rfind("<struct 0x", 0), 0u) << typed.repr();
}

// Decoding reads 8-byte aligned bytes in place and copies the others first: both give the
// same Value, and a length that is not whole words is refused either way.
TEST(ValueTest, DecodesMisalignedBytesAsAlignedOnes) {
  const Value original = Value::map({{"id", 7}, {"name", "Process-1"}, {"x", 0.25}});
  const auto words = original.encode();
  const size_t size = words.size() * sizeof(capnp::word);
  std::vector<std::byte> shifted(size + 1);
  std::memcpy(shifted.data() + 1, words.begin(), size);
  const std::span<const std::byte> misaligned(shifted.data() + 1, size);
  ASSERT_NE(reinterpret_cast<uintptr_t>(misaligned.data()) % 8, 0u);
  EXPECT_EQ(Value::decode(misaligned), original);
  EXPECT_THROW(Value::decode(misaligned.first(size - 1)), xproc::DecodeError);
  EXPECT_THROW(Value::decode(as_bytes(words).first(size - 1)), xproc::DecodeError);
}

TEST(ValueTest, LargeMapRoundTrips) {
  ValueMap map;
  for (int i = 0; i < 100000; ++i) map.set("key-" + std::to_string(i), i);
  Value v(std::move(map));
  Value back = round_trip(v);
  EXPECT_EQ(back.as_map().size(), 100000u);
  EXPECT_EQ(back, v);
}

TEST(ValueTest, DeeplyNestedBytesThrowDecodeErrorNotCrash) {
  capnp::MallocMessageBuilder builder;
  auto value = builder.initRoot<xproc::schema::Value>();
  for (int depth = 0; depth < 10000; ++depth) value = value.initList(1)[0];
  auto words = capnp::messageToFlatArray(builder);
  xproc::DecodeLimits unlimited_structure;
  unlimited_structure.nesting_limit = 100000;  // let Message accept it; Value must still refuse
  EXPECT_THROW(Value::decode(as_bytes(words)), xproc::DecodeError);
  auto message = xproc::Message<xproc::schema::Value>::decode(as_bytes(words), unlimited_structure);
  EXPECT_THROW(Value::from_capnp(message.reader()), xproc::DecodeError);
}

TEST(ValueTest, AnIntPast64BitsIsRefusedWithDecodeError) {
  // Python writes one as a bigInt; C++'s Value holds 64-bit ints only.
  capnp::MallocMessageBuilder builder;
  const kj::byte two_to_the_64[9] = {0, 0, 0, 0, 0, 0, 0, 0, 1};
  builder.initRoot<xproc::schema::Value>().initList(1)[0].setBigInt(capnp::Data::Reader(two_to_the_64, 9));
  auto words = capnp::messageToFlatArray(builder);
  try {
    Value::decode(as_bytes(words));
    FAIL() << "a bigInt decoded";
  } catch (const xproc::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("past 64 bits"), std::string::npos) << e.what();
  }
}

TEST(ValueTest, DeeplyNestedMapKeyThrowsDecodeError) {
  capnp::MallocMessageBuilder builder;
  auto key = builder.initRoot<xproc::schema::Value>().initMap(1)[0].initKey();
  for (int depth = 0; depth < 200; ++depth) key = key.initList(1)[0];
  auto words = capnp::messageToFlatArray(builder);
  EXPECT_THROW(Value::decode(as_bytes(words)), xproc::DecodeError);
}

TEST(ValueTest, HugeClaimedListSizeThrowsDecodeErrorWithoutAllocating) {
  // Root struct pointer to a Value whose list pointer claims 2^29-1 elements of
  // composite size in a 4-word segment.
  uint64_t words[6] = {uint64_t{5} << 32,                          // one segment of 5 words
                       (uint64_t{1} << 48) | (uint64_t{1} << 32),  // root: struct, 1 data word, 1 pointer, offset 0
                       6,                                          // discriminant LIST (6)
                       (uint64_t{0x1fffffff} << 35) | (7ull << 32) | 1,  // composite list, huge word count
                       0,
                       0};
  EXPECT_THROW(Value::decode(std::as_bytes(std::span(words))), xproc::DecodeError);
}

// A map whose entries are zero-sized structs: four words on the wire claiming 4 million
// entries. It decodes to {None: None}, and must not make room for the 4 million first:
// run under an address-space limit well below what that would take (~400 MB).
// Cap'n Proto admits a list of elements that take no bytes up to its traversal limit, and
// each decodes to None: 40 bytes claiming millions of them are refused at once (found by
// the value_decode fuzz target, as an input that took a second to decode), and up to
// detail::kMostEmptyElements still decode.
TEST(ValueTest, MillionsOfElementsThatTakeNoBytesAreRefused) {
  auto message = [](uint64_t discriminant, uint64_t claimed) {
    return std::array<uint64_t, 5>{uint64_t{4} << 32,                          // one segment of 4 words
                                   (uint64_t{1} << 48) | (uint64_t{1} << 32),  // root: 1 data word, 1 pointer
                                   discriminant,                               // LIST 6, MAP 7, TUPLE 9
                                   (7ull << 32) | 1,                           // composite list holding 0 words
                                   claimed << 2};                              // its tag: `claimed` empty structs
  };
  auto decode = [](const std::array<uint64_t, 5>& words) { return Value::decode(std::as_bytes(std::span(words))); };
  for (uint64_t discriminant : {6, 7, 9}) {
    EXPECT_THROW(decode(message(discriminant, 4'000'000)), xproc::DecodeError) << discriminant;
  }
  EXPECT_EQ(decode(message(7, xproc::detail::kMostEmptyElements)).repr(), "{None: None}");
  // The allowance is the message's, not each list's: three lists of half of it each, of
  // Nones in canonical form (where a None takes no bytes), add up past it.
  auto canonical_lists = [](unsigned lists) {
    capnp::MallocMessageBuilder builder;
    auto outer = builder.initRoot<xproc::schema::Value>().initList(lists);
    for (unsigned i = 0; i < lists; ++i) outer[i].initList(xproc::detail::kMostEmptyElements / 2);
    const auto segment = capnp::canonicalize(builder.getRoot<xproc::schema::Value>().asReader());
    std::vector<uint64_t> words(1 + segment.size(), uint64_t{segment.size()} << 32);  // a table of one segment
    std::memcpy(&words[1], segment.begin(), segment.size() * sizeof(capnp::word));
    return Value::decode(std::as_bytes(std::span(words)));
  };
  EXPECT_EQ(canonical_lists(1).as_list()[0].as_list().size(), xproc::detail::kMostEmptyElements / 2);
  EXPECT_THROW(canonical_lists(3), xproc::DecodeError);
  EXPECT_EQ(decode(message(6, 3)).repr(), "[None, None, None]");
  EXPECT_EQ(decode(message(9, 1)).repr(), "(None,)");
}

TEST(ValueTest, TupleIsAListThatKnowsItIsATuple) {
  const Value t = Value::tuple({1, "a"});
  EXPECT_TRUE(t.is_list());
  EXPECT_TRUE(t.is_tuple());
  EXPECT_EQ(t.kind(), Value::Kind::kList);
  EXPECT_EQ(t.type_name(), "tuple");
  EXPECT_EQ(t.as_list(), (Value::List{1, "a"}));
  EXPECT_FALSE(Value::list({1, "a"}).is_tuple());
  // As Python: (1, 'a') != [1, 'a'], and both may key a map side by side.
  EXPECT_NE(t, Value::list({1, "a"}));
  EXPECT_EQ(t, Value::tuple({1.0, "a"}));
  EXPECT_EQ(t.hash(), Value::tuple({true, "a"}).hash());
  ValueMap keyed;
  keyed.set(t, "tuple");
  keyed.set(Value::list({1, "a"}), "list");
  EXPECT_EQ(keyed.size(), 2u);
  EXPECT_FALSE(Value::tuple({}).truthy());
  EXPECT_TRUE(round_trip(t).is_tuple());
  Value copy = t;
  copy.as_list().push_back(nullptr);  // a tuple's items are a List to C++ too
  EXPECT_EQ(copy.repr(), "(1, 'a', None)");
}

TEST(ValueTest, ProxyNamesAManagersObjectAndComparesByIt) {
  const Value p = ProxyRef{7, 42, std::make_shared<int>(1)};
  EXPECT_TRUE(p.is_proxy());
  EXPECT_EQ(p.type_name(), "proxy");
  EXPECT_EQ(p, Value(ProxyRef{7, 42, nullptr}));  // what keeps it alive is not part of it
  EXPECT_NE(p, Value(ProxyRef{8, 42, nullptr}));  // another manager's object 42
  EXPECT_EQ(p.hash(), Value(ProxyRef{7, 42, nullptr}).hash());
  EXPECT_TRUE(p.truthy());
  EXPECT_EQ(p.repr(), "<proxy of object 42>");
  EXPECT_THROW(p.as_int(), xproc::TypeError);
  const Value back = round_trip(Value::list({p, 1}));
  EXPECT_EQ(back.as_list()[0], p);
  EXPECT_EQ(back.as_list()[0].as_proxy().keep_alive, nullptr);  // not a thing a message carries
}

TEST(ValueTest, ProxyResolverSeesEveryProxyAndMayRefuse) {
  auto words = Value::map({{"a", ProxyRef{1, 2, nullptr}}, {"b", Value::tuple({ProxyRef{1, 3, nullptr}})}}).encode();
  capnp::FlatArrayMessageReader reader(words);
  auto root = reader.getRoot<xproc::schema::Value>();
  std::vector<uint64_t> seen;
  auto anchor = std::make_shared<int>(0);
  Value held = Value::from_capnp(root, {}, [&](ProxyRef& proxy) {
    seen.push_back(proxy.id);
    proxy.keep_alive = anchor;
  });
  EXPECT_EQ(seen, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(anchor.use_count(), 3);  // each decoded proxy holds it
  held = nullptr;
  EXPECT_EQ(anchor.use_count(), 1);
  EXPECT_THROW(Value::from_capnp(root, {}, [](ProxyRef&) { throw xproc::ValueError("not ours"); }), xproc::ValueError);
}

TEST(ValueTest, UnknownUnionMemberThrowsDecodeError) {
  uint64_t words[4] = {uint64_t{3} << 32, (uint64_t{1} << 48) | (uint64_t{1} << 32), 77, 0};
  EXPECT_THROW(Value::decode(std::as_bytes(std::span(words))), xproc::DecodeError);
}

TEST(ValueTest, RandomBytesNeverCrashDecode) {
  std::mt19937_64 rng(7);
  int decoded = 0;
  for (int round = 0; round < 5000; ++round) {
    std::vector<uint64_t> words(2 + rng() % 30);
    for (auto& w : words) w = rng() & (rng() | 0xffff0000ffffULL);
    words[0] = uint64_t{words.size() - 1} << 32;
    try {
      Value v = Value::decode(std::as_bytes(std::span(words)));
      (void)v.repr();
      ++decoded;
    } catch (const xproc::DecodeError&) {
    }
  }
  SUCCEED() << decoded << " of 5000 random messages happened to be valid";
}

}  // namespace
