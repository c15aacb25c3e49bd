// The Manager's dict: Python's dict operations plus atomic increment, compare-and-set
// and batched reads and writes. The server is single-threaded, so each call is atomic.
#include "xproc/errors.h"
#include "xproc/rpc/objects.h"
#include "xproc/rpc/value_ops.h"

namespace xproc::rpc {
namespace {

class DictObject final : public SharedObject, public Served<schema::Dict::Server> {
 public:
  DictObject(Runtime& runtime, Value initial) : SharedObject(runtime, schema::Kind::DICT), map_(ValueMap()) {
    if (initial.is_map())
      map_ = std::move(initial);
    else if (!initial.is_null())
      throw TypeError("a dict is made from a map, not " + std::string(initial.type_name()));
  }

  capnp::Capability::Client client(Session&) override { return kj::Own<schema::Dict::Server>(kj::addRef(*this)); }
  void drop_contents() override { map_ = Value(ValueMap()); }

 protected:
  kj::Promise<void> repr(ReprContext context) override {
    context.getResults().setText(map_.repr());
    return kj::READY_NOW;
  }

  kj::Promise<void> getItem(GetItemContext context) override {
    map().at(lookup_key(context.getParams().getKey())).to_capnp(context.getResults().initValue());
    return kj::READY_NOW;
  }

  kj::Promise<void> get(GetContext context) override {
    auto params = context.getParams();
    if (const Value* found = map().find(lookup_key(params.getKey()))) {
      found->to_capnp(context.getResults().initValue());
    } else {
      context.getResults().setValue(params.getDefault());
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> setItem(SetItemContext context) override {
    auto params = context.getParams();
    map().set(key(params.getKey()), runtime_.read(params.getValue()));
    return kj::READY_NOW;
  }

  kj::Promise<void> delItem(DelItemContext context) override {
    Value k = lookup_key(context.getParams().getKey());
    if (!map().erase(k)) throw KeyError(k.repr());
    return kj::READY_NOW;
  }

  kj::Promise<void> contains(ContainsContext context) override {
    context.getResults().setResult(map().contains(lookup_key(context.getParams().getKey())));
    return kj::READY_NOW;
  }

  kj::Promise<void> len(LenContext context) override {
    context.getResults().setLength(map().size());
    return kj::READY_NOW;
  }

  kj::Promise<void> keys(KeysContext context) override {
    auto out = context.getResults().initKeys(static_cast<unsigned>(map().size()));
    unsigned i = 0;
    map().for_each([&](const Value& k, const Value&) { k.to_capnp(out[i++]); });
    return kj::READY_NOW;
  }

  kj::Promise<void> values(ValuesContext context) override {
    auto out = context.getResults().initValues(static_cast<unsigned>(map().size()));
    unsigned i = 0;
    map().for_each([&](const Value&, const Value& v) { v.to_capnp(out[i++]); });
    return kj::READY_NOW;
  }

  kj::Promise<void> items(ItemsContext context) override {
    write_entries(context.getResults().initItems(static_cast<unsigned>(map().size())), map());
    return kj::READY_NOW;
  }

  kj::Promise<void> update(UpdateContext context) override {
    set_all(context.getParams().getItems());
    return kj::READY_NOW;
  }

  kj::Promise<void> setMany(SetManyContext context) override {
    set_all(context.getParams().getItems());
    return kj::READY_NOW;
  }

  kj::Promise<void> pop(PopContext context) override {
    auto params = context.getParams();
    Value k = lookup_key(params.getKey());
    if (auto removed = map().erase(k)) {
      removed->to_capnp(context.getResults().initValue());
    } else if (params.getHasDefault()) {
      context.getResults().setValue(params.getDefault());
    } else {
      throw KeyError(k.repr());
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> popitem(PopitemContext context) override {
    auto entry = map().pop_last();
    auto results = context.getResults();
    entry.first.to_capnp(results.initKey());
    entry.second.to_capnp(results.initValue());
    return kj::READY_NOW;
  }

  kj::Promise<void> setdefault(SetdefaultContext context) override {
    auto params = context.getParams();
    Value k = key(params.getKey());
    Value* found = map().find(k);
    if (found == nullptr) {
      map().set(k, runtime_.read(params.getDefault()));
      found = map().find(k);
    }
    found->to_capnp(context.getResults().initValue());
    return kj::READY_NOW;
  }

  kj::Promise<void> clear(ClearContext) override {
    map().clear();
    return kj::READY_NOW;
  }

  kj::Promise<void> copy(CopyContext context) override {
    map_.to_capnp(context.getResults().initDict());
    return kj::READY_NOW;
  }

  kj::Promise<void> increment(IncrementContext context) override {
    auto params = context.getParams();
    Value k = key(params.getKey());
    Value delta = Value::from_capnp(params.getDelta());
    Value* current = map().find(k);
    Value sum = add_numbers(current ? *current : Value(0), delta);
    sum.to_capnp(context.getResults().initValue());
    if (current)
      *current = std::move(sum);
    else
      map().set(std::move(k), std::move(sum));
    return kj::READY_NOW;
  }

  kj::Promise<void> compareAndSet(CompareAndSetContext context) override {
    auto params = context.getParams();
    Value k = key(params.getKey());
    Value* current = map().find(k);
    bool matches = current ? (!params.getExpectMissing() && *current == Value::from_capnp(params.getExpected()))
                           : params.getExpectMissing();
    if (matches) {
      Value value = runtime_.read(params.getValue());
      if (current) {
        *current = value;
      } else {
        map().set(std::move(k), value);
      }
      auto results = context.getResults();
      results.setSwapped(true);
      results.setPresent(true);
      value.to_capnp(results.initCurrent());
    } else {
      auto results = context.getResults();
      results.setSwapped(false);
      results.setPresent(current != nullptr);
      if (current) current->to_capnp(results.initCurrent());
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> getMany(GetManyContext context) override {
    auto keys = context.getParams().getKeys();
    auto results = context.getResults();
    auto values = results.initValues(keys.size());
    auto present = results.initPresent(keys.size());
    for (unsigned i = 0; i < keys.size(); ++i) {
      const Value* found = map().find(lookup_key(keys[i]));
      present.set(i, found != nullptr);
      if (found) found->to_capnp(values[i]);
    }
    return kj::READY_NOW;
  }

 private:
  ValueMap& map() { return map_.as_map(); }

  // A key that may be stored: a proxy in it is resolved and held (Runtime::read).
  Value key(schema::Value::Reader reader) const { return hashable(runtime_.read(reader)); }
  // A key only looked up: a proxy in it compares by its numbers, live or not.
  static Value lookup_key(schema::Value::Reader reader) { return hashable(Value::from_capnp(reader)); }

  static Value hashable(Value k) {
    // Lists are allowed too (a C++ key may be one; Python reads a list key as a tuple).
    if (k.is_map()) throw TypeError("unhashable type: '" + std::string(k.type_name()) + "'");
    return k;
  }

  void set_all(capnp::List<schema::Value::Entry>::Reader items) {
    // Decode everything first: a bad entry leaves the dict untouched.
    std::vector<std::pair<Value, Value>> decoded;
    decoded.reserve(items.size());
    for (auto item : items) decoded.emplace_back(key(item.getKey()), runtime_.read(item.getValue()));
    for (auto& [k, v] : decoded) map().set(std::move(k), std::move(v));
  }

  Value map_;
};

}  // namespace

kj::Own<SharedObject> make_dict(Runtime& runtime, Value initial) {
  return kj::refcounted<DictObject>(runtime, std::move(initial));
}

}  // namespace xproc::rpc
