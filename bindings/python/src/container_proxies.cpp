// _xproc.DictProxy, ListProxy, NamespaceProxy, ValueProxy and ArrayProxy.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <vector>

#include "proxy_bindings.h"
#include "python_values.h"
#include "xproc/manager_proxies.h"

namespace xproc::python {
namespace {

nb::list list_of(const std::vector<Value>& values, bool as_keys = false) {
  nb::list out;
  for (const Value& v : values) out.append(from_value(v, as_keys));
  return out;
}

Value::List values_of(nb::handle iterable) {
  Value::List out;
  for (nb::handle item : iterable) out.push_back(to_value(item));
  return out;
}

ValueMap map_of(nb::handle mapping) {
  Value value = to_value(mapping);
  if (!value.is_map()) throw nb::type_error("expected a dict");
  return std::move(value.as_map());
}

nb::dict dict_of(const ValueMap& map) {
  nb::dict out;
  map.for_each([&](const Value& k, const Value& v) { out[from_value(k, true)] = from_value(v); });
  return out;
}

std::optional<int64_t> optional_index(nb::handle bound) {
  if (bound.is_none()) return std::nullopt;
  return nb::cast<int64_t>(bound);
}

Slice slice_of(nb::handle slice) {
  Slice out{optional_index(slice.attr("start")), optional_index(slice.attr("stop")), 1};
  nb::object step = slice.attr("step");
  if (!step.is_none()) out.step = nb::cast<int64_t>(step);
  return out;
}

void register_dict(nb::module_& m) {
  proxy_class<DictProxy>(m, "DictProxy", "A dict held by a manager.")
      .def("__getitem__",
           [](const DictProxy& self, AnyObject key) {
             Value k = to_value(key);
             return from_value(without_gil([&] { return self[k]; }));
           })
      .def(
          "get",
          [](const DictProxy& self, AnyObject key, AnyObject fallback) {
            Value k = to_value(key);
            Value f = to_value(fallback);
            return from_value(without_gil([&] { return self.get(k, f); }));
          },
          nb::arg("key"), nb::arg("default") = nb::none())
      .def("__setitem__",
           [](const DictProxy& self, AnyObject key, AnyObject value) {
             Value k = to_value(key);
             Value v = to_value(value);
             without_gil([&] { self.set(k, v); });
           })
      .def("__delitem__",
           [](const DictProxy& self, AnyObject key) {
             Value k = to_value(key);
             without_gil([&] { self.del(k); });
           })
      .def("__contains__",
           [](const DictProxy& self, AnyObject key) {
             Value k = to_value(key);
             return without_gil([&] { return self.contains(k); });
           })
      .def("__len__", [](const DictProxy& self) { return without_gil([&] { return self.size(); }); })
      .def("keys", [](const DictProxy& self) { return list_of(without_gil([&] { return self.keys(); }), true); })
      .def("values", [](const DictProxy& self) { return list_of(without_gil([&] { return self.values(); })); })
      .def("items",
           [](const DictProxy& self) {
             auto items = without_gil([&] { return self.items(); });
             nb::list out;
             for (const auto& [k, v] : items) out.append(nb::make_tuple(from_value(k, true), from_value(v)));
             return out;
           })
      .def("update",
           [](const DictProxy& self, nb::handle mapping) {
             ValueMap items = map_of(mapping);
             without_gil([&] { self.update(items); });
           })
      .def("pop",
           [](const DictProxy& self, AnyObject key) {
             Value k = to_value(key);
             return from_value(without_gil([&] { return self.pop(k); }));
           })
      .def("pop",
           [](const DictProxy& self, AnyObject key, AnyObject fallback) {
             Value k = to_value(key);
             Value f = to_value(fallback);
             return from_value(without_gil([&] { return self.pop(k, f); }));
           })
      .def("popitem",
           [](const DictProxy& self) {
             auto [k, v] = without_gil([&] { return self.popitem(); });
             return nb::make_tuple(from_value(k, true), from_value(v));
           })
      .def(
          "setdefault",
          [](const DictProxy& self, AnyObject key, AnyObject fallback) {
            Value k = to_value(key);
            Value f = to_value(fallback);
            return from_value(without_gil([&] { return self.setdefault(k, f); }));
          },
          nb::arg("key"), nb::arg("default") = nb::none())
      .def("clear", [](const DictProxy& self) { without_gil([&] { self.clear(); }); })
      .def("copy", [](const DictProxy& self) { return dict_of(without_gil([&] { return self.copy(); })); })
      .def(
          "increment",
          [](const DictProxy& self, AnyObject key, AnyObject delta) {
            Value k = to_value(key);
            Value d = to_value(delta);
            return from_value(without_gil([&] { return self.increment(k, d); }));
          },
          nb::arg("key"), nb::arg("delta") = 1)
      .def("compare_and_set",
           [](const DictProxy& self, AnyObject key, bool expect_present, AnyObject expected, AnyObject value) {
             Value k = to_value(key);
             std::optional<Value> e;
             if (expect_present) e = to_value(expected);
             Value v = to_value(value);
             auto result = without_gil([&] { return self.compare_and_set(k, e, v); });
             return nb::make_tuple(result.swapped, result.current.has_value(),
                                   result.current ? from_value(*result.current) : nb::none());
           })
      .def(
          "get_many",
          [](const DictProxy& self, nb::handle keys, AnyObject fallback) {
            std::vector<Value> ks = values_of(keys);
            auto found = without_gil([&] { return self.get_many(ks); });
            nb::list out;
            for (const auto& v : found) out.append(v ? from_value(*v) : nb::borrow(fallback));
            return out;
          },
          nb::arg("keys"), nb::arg("default") = nb::none())
      .def("set_many", [](const DictProxy& self, nb::handle mapping) {
        ValueMap items = map_of(mapping);
        without_gil([&] { self.set_many(items); });
      });
}

void register_list(nb::module_& m) {
  proxy_class<ListProxy>(m, "ListProxy", "A list held by a manager.")
      .def("__getitem__",
           [](const ListProxy& self, int64_t index) { return from_value(without_gil([&] { return self[index]; })); })
      .def("__getitem__",
           [](const ListProxy& self, nb::slice slice) {
             Slice s = slice_of(slice);
             return list_of(without_gil([&] { return self.slice(s); }));
           })
      .def("__setitem__",
           [](const ListProxy& self, int64_t index, AnyObject value) {
             Value v = to_value(value);
             without_gil([&] { self.set(index, v); });
           })
      .def("__setitem__",
           [](const ListProxy& self, nb::slice slice, nb::handle values) {
             Slice s = slice_of(slice);
             Value::List vs = values_of(values);
             without_gil([&] { self.set_slice(s, vs); });
           })
      .def("__delitem__", [](const ListProxy& self, int64_t index) { without_gil([&] { self.del(index); }); })
      .def("__delitem__",
           [](const ListProxy& self, nb::slice slice) {
             Slice s = slice_of(slice);
             without_gil([&] { self.del_slice(s); });
           })
      .def("__len__", [](const ListProxy& self) { return without_gil([&] { return self.size(); }); })
      .def("__contains__",
           [](const ListProxy& self, AnyObject value) {
             Value v = to_value(value);
             return without_gil([&] { return self.contains(v); });
           })
      .def("append",
           [](const ListProxy& self, AnyObject value) {
             Value v = to_value(value);
             without_gil([&] { self.append(v); });
           })
      .def("extend",
           [](const ListProxy& self, nb::handle values) {
             Value::List vs = values_of(values);
             without_gil([&] { self.extend(vs); });
           })
      .def("insert",
           [](const ListProxy& self, int64_t index, AnyObject value) {
             Value v = to_value(value);
             without_gil([&] { self.insert(index, v); });
           })
      .def(
          "pop",
          [](const ListProxy& self, int64_t index) { return from_value(without_gil([&] { return self.pop(index); })); },
          nb::arg("index") = -1)
      .def("remove",
           [](const ListProxy& self, AnyObject value) {
             Value v = to_value(value);
             without_gil([&] { self.remove(v); });
           })
      .def(
          "index",
          [](const ListProxy& self, AnyObject value, int64_t start, std::optional<int64_t> stop) {
            Value v = to_value(value);
            return without_gil([&] { return self.index(v, start, stop); });
          },
          nb::arg("value"), nb::arg("start") = 0, nb::arg("stop") = nb::none())
      .def("count",
           [](const ListProxy& self, AnyObject value) {
             Value v = to_value(value);
             return without_gil([&] { return self.count(v); });
           })
      .def("reverse", [](const ListProxy& self) { without_gil([&] { self.reverse(); }); })
      .def(
          "sort", [](const ListProxy& self, bool reverse) { without_gil([&] { self.sort(reverse); }); },
          nb::arg("reverse") = false)
      .def("copy", [](const ListProxy& self) { return list_of(without_gil([&] { return self.copy(); })); })
      .def("multiply", [](const ListProxy& self, int64_t times) { without_gil([&] { self.multiply(times); }); });
}

void register_namespace(nb::module_& m) {
  proxy_class<NamespaceProxy>(m, "NamespaceProxy", "A namespace held by a manager.")
      .def("get", [](const NamespaceProxy& self,
                     const std::string& name) { return from_value(without_gil([&] { return self.get(name); })); })
      .def("set",
           [](const NamespaceProxy& self, const std::string& name, AnyObject value) {
             Value v = to_value(value);
             without_gil([&] { self.set(name, v); });
           })
      .def("delete", [](const NamespaceProxy& self, const std::string& name) { without_gil([&] { self.del(name); }); })
      .def("items", [](const NamespaceProxy& self) {
        auto items = without_gil([&] { return self.items(); });
        nb::list out;
        for (const auto& [k, v] : items) out.append(nb::make_tuple(k, from_value(v)));
        return out;
      });
}

void register_cells(nb::module_& m) {
  proxy_class<ValueProxy>(m, "ValueProxy", "A single value held by a manager (manager.Value).")
      .def("get", [](const ValueProxy& self) { return from_value(without_gil([&] { return self.get(); })); })
      .def("set",
           [](const ValueProxy& self, AnyObject value) {
             Value v = to_value(value);
             without_gil([&] { self.set(v); });
           })
      .def(
          "increment",
          [](const ValueProxy& self, AnyObject delta) {
            Value d = to_value(delta);
            return from_value(without_gil([&] { return self.increment(d); }));
          },
          nb::arg("delta") = 1)
      .def_prop_ro("typecode", [](const ValueProxy& self) { return without_gil([&] { return self.typecode(); }); });

  proxy_class<ArrayProxy>(m, "ArrayProxy", "A fixed-length typed array held by a manager (manager.Array).")
      .def("__len__", [](const ArrayProxy& self) { return without_gil([&] { return self.size(); }); })
      .def("__getitem__",
           [](const ArrayProxy& self, int64_t index) { return from_value(without_gil([&] { return self[index]; })); })
      .def("__getitem__",
           [](const ArrayProxy& self, nb::slice slice) {
             Slice s = slice_of(slice);
             return list_of(without_gil([&] { return self.slice(s); }));
           })
      .def("__setitem__",
           [](const ArrayProxy& self, int64_t index, AnyObject value) {
             Value v = to_value(value);
             without_gil([&] { self.set(index, v); });
           })
      .def("__setitem__",
           [](const ArrayProxy& self, nb::slice slice, nb::handle values) {
             Slice s = slice_of(slice);
             Value::List vs = values_of(values);
             without_gil([&] { self.set_slice(s, vs); });
           })
      .def_prop_ro("typecode", [](const ArrayProxy& self) { return without_gil([&] { return self.typecode(); }); });
}

}  // namespace

void register_container_proxies(nb::module_& m) {
  register_dict(m);
  register_list(m);
  register_namespace(m);
  register_cells(m);
}

}  // namespace xproc::python
