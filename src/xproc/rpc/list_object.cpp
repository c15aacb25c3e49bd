// The Manager's list: Python's list operations, slices included.
#include <algorithm>

#include "xproc/errors.h"
#include "xproc/rpc/objects.h"
#include "xproc/rpc/value_ops.h"

namespace xproc::rpc {
namespace {

class ListObject final : public SharedObject, public Served<schema::SharedList::Server> {
 public:
  ListObject(Runtime& runtime, Value initial) : SharedObject(runtime, schema::Kind::LIST), list_(Value::List()) {
    if (initial.is_list())
      list_ = Value(std::move(initial.as_list()));  // a tuple's items too
    else if (!initial.is_null())
      throw TypeError("a list is made from a list, not " + std::string(initial.type_name()));
  }

  capnp::Capability::Client client(Session&) override { return kj::Own<schema::SharedList::Server>(kj::addRef(*this)); }
  void drop_contents() override { list_ = Value(Value::List()); }

 protected:
  kj::Promise<void> repr(ReprContext context) override {
    context.getResults().setText(list_.repr());
    return kj::READY_NOW;
  }

  kj::Promise<void> getItem(GetItemContext context) override {
    items()[normalize_index(context.getParams().getIndex(), items().size(), "list index out of range")].to_capnp(
        context.getResults().initValue());
    return kj::READY_NOW;
  }

  kj::Promise<void> setItem(SetItemContext context) override {
    auto params = context.getParams();
    size_t i = normalize_index(params.getIndex(), items().size(), "list assignment index out of range");
    items()[i] = runtime_.read(params.getValue());
    return kj::READY_NOW;
  }

  kj::Promise<void> delItem(DelItemContext context) override {
    size_t i = normalize_index(context.getParams().getIndex(), items().size(), "list assignment index out of range");
    items().erase(items().begin() + static_cast<ptrdiff_t>(i));
    return kj::READY_NOW;
  }

  kj::Promise<void> getSlice(GetSliceContext context) override {
    auto range = slice_range(context.getParams().getSlice(), size());
    auto out = context.getResults().initValues(static_cast<unsigned>(range.count));
    for (int64_t i = 0; i < range.count; ++i)
      items()[static_cast<size_t>(range.at(i))].to_capnp(out[static_cast<unsigned>(i)]);
    return kj::READY_NOW;
  }

  kj::Promise<void> setSlice(SetSliceContext context) override {
    auto params = context.getParams();
    auto range = slice_range(params.getSlice(), size());
    auto values = runtime_.read(params.getValues());
    if (range.step == 1) {
      auto first = items().begin() + range.start;
      items().erase(first, first + range.count);
      items().insert(items().begin() + range.start, std::make_move_iterator(values.begin()),
                     std::make_move_iterator(values.end()));
    } else {
      if (static_cast<int64_t>(values.size()) != range.count) {
        throw ValueError("attempt to assign sequence of size " + std::to_string(values.size()) +
                         " to extended slice of size " + std::to_string(range.count));
      }
      for (int64_t i = 0; i < range.count; ++i)
        items()[static_cast<size_t>(range.at(i))] = std::move(values[static_cast<size_t>(i)]);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> delSlice(DelSliceContext context) override {
    auto range = slice_range(context.getParams().getSlice(), size());
    std::vector<bool> doomed(items().size(), false);
    for (int64_t i = 0; i < range.count; ++i) doomed[static_cast<size_t>(range.at(i))] = true;
    Value::List kept;
    kept.reserve(items().size() - static_cast<size_t>(range.count));
    for (size_t i = 0; i < items().size(); ++i) {
      if (!doomed[i]) kept.push_back(std::move(items()[i]));
    }
    items() = std::move(kept);
    return kj::READY_NOW;
  }

  kj::Promise<void> append(AppendContext context) override {
    items().push_back(runtime_.read(context.getParams().getValue()));
    return kj::READY_NOW;
  }

  kj::Promise<void> extend(ExtendContext context) override {
    auto values = runtime_.read(context.getParams().getValues());
    items().insert(items().end(), std::make_move_iterator(values.begin()), std::make_move_iterator(values.end()));
    return kj::READY_NOW;
  }

  kj::Promise<void> insert(InsertContext context) override {
    auto params = context.getParams();
    int64_t i = params.getIndex();
    if (i < 0) i = std::max<int64_t>(0, i + size());
    i = std::min(i, size());
    items().insert(items().begin() + i, runtime_.read(params.getValue()));
    return kj::READY_NOW;
  }

  kj::Promise<void> pop(PopContext context) override {
    auto params = context.getParams();
    if (items().empty()) throw IndexError("pop from empty list");
    size_t i = normalize_index(params.getHasIndex() ? params.getIndex() : -1, items().size(), "pop index out of range");
    items()[i].to_capnp(context.getResults().initValue());
    items().erase(items().begin() + static_cast<ptrdiff_t>(i));
    return kj::READY_NOW;
  }

  // Looked-up values: a proxy in one compares by its numbers, live or not.
  kj::Promise<void> remove(RemoveContext context) override {
    Value v = Value::from_capnp(context.getParams().getValue());
    auto it = std::find(items().begin(), items().end(), v);
    if (it == items().end()) throw ValueError("list.remove(x): x not in list");
    items().erase(it);
    return kj::READY_NOW;
  }

  kj::Promise<void> index(IndexContext context) override {
    auto params = context.getParams();
    Value v = Value::from_capnp(params.getValue());
    auto clamp = [&](int64_t bound) {
      if (bound < 0) bound = std::max<int64_t>(0, bound + size());
      return std::min(bound, size());
    };
    int64_t start = clamp(params.getStart());
    int64_t stop = params.getHasStop() ? clamp(params.getStop()) : size();
    for (int64_t i = start; i < stop; ++i) {
      if (items()[static_cast<size_t>(i)] == v) {
        context.getResults().setIndex(i);
        return kj::READY_NOW;
      }
    }
    throw ValueError(v.repr() + " is not in list");
  }

  kj::Promise<void> count(CountContext context) override {
    Value v = Value::from_capnp(context.getParams().getValue());
    context.getResults().setCount(static_cast<uint64_t>(std::count(items().begin(), items().end(), v)));
    return kj::READY_NOW;
  }

  kj::Promise<void> contains(ContainsContext context) override {
    Value v = Value::from_capnp(context.getParams().getValue());
    context.getResults().setResult(std::find(items().begin(), items().end(), v) != items().end());
    return kj::READY_NOW;
  }

  kj::Promise<void> reverse(ReverseContext) override {
    std::reverse(items().begin(), items().end());
    return kj::READY_NOW;
  }

  kj::Promise<void> sort(SortContext context) override {
    // Sorted on a copy: a failed comparison (TypeError) leaves the list as it was.
    Value::List sorted = items();
    if (context.getParams().getReverse()) {
      // Python's reverse sort is stable too: equal items keep their order.
      std::stable_sort(sorted.begin(), sorted.end(), [](const Value& a, const Value& b) { return python_less(b, a); });
    } else {
      std::stable_sort(sorted.begin(), sorted.end(), python_less);
    }
    items() = std::move(sorted);
    return kj::READY_NOW;
  }

  kj::Promise<void> len(LenContext context) override {
    context.getResults().setLength(items().size());
    return kj::READY_NOW;
  }

  kj::Promise<void> copy(CopyContext context) override {
    write_values(context.getResults().initList(static_cast<unsigned>(items().size())), items());
    return kj::READY_NOW;
  }

  kj::Promise<void> multiply(MultiplyContext context) override {
    int64_t times = context.getParams().getTimes();
    if (times <= 0) {
      items().clear();
      return kj::READY_NOW;
    }
    if (static_cast<uint64_t>(times) * items().size() > (uint64_t{1} << 28)) throw ValueError("list too large");
    Value::List once = items();
    for (int64_t i = 1; i < times; ++i) items().insert(items().end(), once.begin(), once.end());
    return kj::READY_NOW;
  }

 private:
  Value::List& items() { return list_.as_list(); }
  int64_t size() { return static_cast<int64_t>(items().size()); }

  Value list_;
};

}  // namespace

kj::Own<SharedObject> make_list(Runtime& runtime, Value initial) {
  return kj::refcounted<ListObject>(runtime, std::move(initial));
}

}  // namespace xproc::rpc
