// The Manager's proxies as Python classes (_xproc.DictProxy ...): each method converts
// its arguments to Values, makes the remote call without the GIL, and converts back.
// The xproc package wraps them in multiprocessing's proxy API (MutableMapping ...).
#pragma once
#include <nanobind/stl/string.h>
#include <optional>
#include "bindings.h"

#include "xproc/byte_queue.h"  // Timeout

namespace xproc::python {

// Python's timeout argument: None (or, for acquire, a negative number) waits forever.
inline Timeout python_timeout(std::optional<double> seconds) {
  if (!seconds || *seconds < 0) return std::nullopt;
  return std::chrono::duration<double>(*seconds);
}

// Runs f() with the GIL released: remote calls block, and other Python threads go on.
template <typename F>
auto without_gil(F&& f) {
  nb::gil_scoped_release unlocked;
  return f();
}

// A proxy class with what every proxy has: its object id and the remote repr.
template <typename P>
nb::class_<P> proxy_class(nb::module_& m, const char* name, const char* doc) {
  return nb::class_<P>(m, name, doc)
      .def_prop_ro("id", &P::id, "The object's id on its manager (what attach() takes).")
      .def_prop_ro(
          "manager_instance",
          [](const P& self) { return without_gil([&] { return self.as_value().as_proxy().manager; }); },
          "Its manager's instance number (Manager.instance).")
      .def("__repr__", [](const P& self) { return without_gil([&] { return self.repr(); }); });
}

void register_container_proxies(nb::module_& m);        // dict, list, namespace, value, array
void register_queue_proxies(nb::module_& m);            // queue, joinable queue
void register_synchronization_proxies(nb::module_& m);  // lock, semaphore, event, condition, barrier

}  // namespace xproc::python
