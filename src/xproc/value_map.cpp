// ValueMap: Python dict semantics. Entries live in a vector in insertion order; erased
// entries leave a tombstone so positions stay valid, and an index maps keys to positions.
// When tombstones outnumber live entries the vector is compacted (amortised O(1)).
#include <unordered_map>

#include "xproc/value.h"

namespace xproc {

struct ValueMap::Index {
  std::unordered_map<Value, size_t, ValueHash> positions;
};

ValueMap::ValueMap() : index_(std::make_unique<Index>()) {}

ValueMap::ValueMap(std::initializer_list<Entry> entries) : ValueMap() {
  for (const auto& [key, value] : entries) set(key, value);
}

ValueMap::ValueMap(const ValueMap& other) : ValueMap() {
  slots_.reserve(other.live_);
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

const Value* ValueMap::find(const Value& key) const {
  auto it = index_->positions.find(key);
  return it == index_->positions.end() ? nullptr : &slots_[it->second]->second;
}

Value* ValueMap::find(const Value& key) {
  return const_cast<Value*>(static_cast<const ValueMap*>(this)->find(key));
}

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
  auto it = index_->positions.find(key);
  if (it != index_->positions.end()) {
    slots_[it->second]->second = std::move(value);  // keeps the original key and position
    return false;
  }
  index_->positions.emplace(key, slots_.size());
  slots_.emplace_back(Entry(std::move(key), std::move(value)));
  ++live_;
  return true;
}

std::optional<Value> ValueMap::erase(const Value& key) {
  auto it = index_->positions.find(key);
  if (it == index_->positions.end()) return std::nullopt;
  const size_t position = it->second;
  index_->positions.erase(it);
  Value value = std::move(slots_[position]->second);
  slots_[position].reset();
  --live_;
  if (slots_.size() > 16 && live_ < slots_.size() / 2) compact();
  return value;
}

ValueMap::Entry ValueMap::pop_last() {
  while (!slots_.empty() && !slots_.back()) slots_.pop_back();
  if (slots_.empty()) throw KeyError("popitem(): dictionary is empty");
  Entry entry = std::move(*slots_.back());
  slots_.pop_back();
  index_->positions.erase(entry.first);
  --live_;
  return entry;
}

void ValueMap::clear() noexcept {
  slots_.clear();
  index_->positions.clear();
  live_ = 0;
}

void ValueMap::compact() {
  std::vector<std::optional<Entry>> live;
  live.reserve(live_);
  for (auto& slot : slots_) {
    if (!slot) continue;
    index_->positions[slot->first] = live.size();
    live.push_back(std::move(slot));
  }
  slots_ = std::move(live);
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
