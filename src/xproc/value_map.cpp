// ValueMap: Python dict semantics. Entries live in a vector in insertion order; erased
// entries leave a tombstone so positions stay valid, and an index maps keys to positions.
// When tombstones outnumber live entries the vector is compacted (amortised O(1)).
// Small maps (most messages' dicts) have no index: comparing a handful of keys costs less
// than hashing one and keeping a copy of every key in a hash table.
#include <unordered_map>

#include "xproc/value.h"

namespace xproc {

struct ValueMap::Index {
  std::unordered_map<Value, size_t, ValueHash> positions;
};

ValueMap::ValueMap() = default;

ValueMap::ValueMap(std::initializer_list<Entry> entries) : ValueMap() {
  reserve(entries.size());
  for (const auto& [key, value] : entries) set(key, value);
}

ValueMap::ValueMap(const ValueMap& other) : ValueMap() {
  reserve(other.live_);
  other.for_each([this](const Value& k, const Value& v) { set(k, v); });
}

ValueMap::ValueMap(ValueMap&&) noexcept = default;

ValueMap& ValueMap::operator=(const ValueMap& other) {
  if (this != &other) *this = ValueMap(other);
  return *this;
}

ValueMap& ValueMap::operator=(ValueMap&&) noexcept = default;
ValueMap::~ValueMap() = default;

size_t ValueMap::size() const noexcept { return live_; }

void ValueMap::reserve(size_t entries) { slots_.reserve(entries); }

std::optional<size_t> ValueMap::position_of(const Value& key) const {
  if (index_) {
    auto it = index_->positions.find(key);
    if (it == index_->positions.end()) return std::nullopt;
    return it->second;
  }
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i] && slots_[i]->first == key) return i;
  }
  return std::nullopt;
}

void ValueMap::build_index() {
  index_ = std::make_unique<Index>();
  index_->positions.reserve(slots_.size() * 2);
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i]) index_->positions.emplace(slots_[i]->first, i);
  }
}

const Value* ValueMap::find(const Value& key) const {
  const auto position = position_of(key);
  return position ? &slots_[*position]->second : nullptr;
}

Value* ValueMap::find(const Value& key) { return const_cast<Value*>(static_cast<const ValueMap*>(this)->find(key)); }

const Value& ValueMap::at(const Value& key) const {
  if (const Value* v = find(key)) return *v;
  throw KeyError(key.repr());
}

Value& ValueMap::operator[](const Value& key) {
  if (Value* v = find(key)) return *v;
  set(key, Value());
  return slots_.back()->second;
}

bool ValueMap::set(Value key, Value value) {
  if (const auto position = position_of(key)) {
    slots_[*position]->second = std::move(value);  // keeps the original key and position
    return false;
  }
  if (index_) index_->positions.emplace(key, slots_.size());
  slots_.emplace_back(Entry(std::move(key), std::move(value)));
  ++live_;
  if (!index_ && slots_.size() > kScanLimit) build_index();
  return true;
}

std::optional<Value> ValueMap::erase(const Value& key) {
  std::optional<size_t> position;
  if (index_) {  // one lookup: the entry found is the one removed
    auto it = index_->positions.find(key);
    if (it == index_->positions.end()) return std::nullopt;
    position = it->second;
    index_->positions.erase(it);
  } else {
    position = position_of(key);
    if (!position) return std::nullopt;
  }
  Value value = std::move(slots_[*position]->second);
  slots_[*position].reset();
  --live_;
  if (slots_.size() > 16 && live_ < slots_.size() / 2) compact();
  return value;
}

ValueMap::Entry ValueMap::pop_last() {
  while (!slots_.empty() && !slots_.back()) slots_.pop_back();
  if (slots_.empty()) throw KeyError("popitem(): dictionary is empty");
  Entry entry = std::move(*slots_.back());
  slots_.pop_back();
  if (index_) index_->positions.erase(entry.first);
  --live_;
  return entry;
}

void ValueMap::clear() noexcept {
  slots_.clear();
  index_.reset();
  live_ = 0;
}

void ValueMap::compact() {
  std::vector<std::optional<Entry>> live;
  live.reserve(live_);
  for (auto& slot : slots_) {
    if (slot) live.push_back(std::move(slot));
  }
  slots_ = std::move(live);
  if (slots_.size() > kScanLimit) {
    build_index();
  } else {
    index_.reset();
  }
}

std::vector<Value> ValueMap::keys() const {
  std::vector<Value> out;
  out.reserve(live_);
  for_each([&out](const Value& k, const Value&) { out.push_back(k); });
  return out;
}

std::vector<Value> ValueMap::values() const {
  std::vector<Value> out;
  out.reserve(live_);
  for_each([&out](const Value&, const Value& v) { out.push_back(v); });
  return out;
}

std::vector<ValueMap::Entry> ValueMap::items() const {
  std::vector<Entry> out;
  out.reserve(live_);
  for_each([&out](const Value& k, const Value& v) { out.emplace_back(k, v); });
  return out;
}

bool operator==(const ValueMap& a, const ValueMap& b) {
  if (a.size() != b.size()) return false;
  bool equal = true;
  a.for_each([&](const Value& k, const Value& v) {
    if (!equal) return;
    const Value* other = b.find(k);
    equal = other && *other == v;
  });
  return equal;
}

}  // namespace xproc
