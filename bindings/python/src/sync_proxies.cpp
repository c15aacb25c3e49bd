// _xproc.QueueProxy, JoinableQueueProxy, LockProxy, SemaphoreProxy, EventProxy,
// ConditionProxy and BarrierProxy. Their blocking calls wait on the server; Ctrl-C
// cancels them (see the interrupt check in manager_binding.cpp).
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include "proxy_bindings.h"
#include "python_values.h"
#include "xproc/manager_proxies.h"

namespace xproc::python {
void register_queue_proxies(nb::module_& m) {
  proxy_class<QueueProxy>(m, "QueueProxy", "A queue held by a manager (manager.Queue).")
      .def(
          "put",
          [](const QueueProxy& self, AnyObject object, bool block, std::optional<double> timeout) {
            Value v = to_value(object);
            without_gil([&] { self.put(v, block, python_timeout(timeout)); });
          },
          nb::arg("obj"), nb::arg("block") = true, nb::arg("timeout") = nb::none())
      .def(
          "get",
          [](const QueueProxy& self, bool block, std::optional<double> timeout) {
            return from_value(without_gil([&] { return self.get(block, python_timeout(timeout)); }));
          },
          nb::arg("block") = true, nb::arg("timeout") = nb::none())
      .def("qsize", [](const QueueProxy& self) { return without_gil([&] { return self.qsize(); }); })
      .def("empty", [](const QueueProxy& self) { return without_gil([&] { return self.empty(); }); })
      .def("full", [](const QueueProxy& self) { return without_gil([&] { return self.full(); }); });

  nb::class_<JoinableQueueProxy, QueueProxy>(m, "JoinableQueueProxy", "A joinable queue held by a manager.")
      .def("task_done", [](const JoinableQueueProxy& self) { without_gil([&] { self.task_done(); }); })
      .def(
          "join",
          [](const JoinableQueueProxy& self, std::optional<double> timeout) {
            return without_gil([&] { return self.join(python_timeout(timeout)); });
          },
          nb::arg("timeout") = nb::none());
}

void register_synchronization_proxies(nb::module_& m) {
  proxy_class<LockProxy>(m, "LockProxy", "A Lock or RLock held by a manager.")
      .def(
          "acquire",
          [](const LockProxy& self, bool blocking, std::optional<double> timeout) {
            return without_gil([&] { return self.acquire(blocking, python_timeout(timeout)); });
          },
          nb::arg("blocking") = true, nb::arg("timeout") = -1.0)
      .def("release", [](const LockProxy& self) { without_gil([&] { self.release(); }); })
      .def("locked", [](const LockProxy& self) { return without_gil([&] { return self.locked(); }); });

  proxy_class<SemaphoreProxy>(m, "SemaphoreProxy", "A Semaphore or BoundedSemaphore held by a manager.")
      .def(
          "acquire",
          [](const SemaphoreProxy& self, bool blocking, std::optional<double> timeout) {
            return without_gil([&] { return self.acquire(blocking, python_timeout(timeout)); });
          },
          nb::arg("blocking") = true, nb::arg("timeout") = nb::none())
      .def(
          "release", [](const SemaphoreProxy& self, uint32_t n) { without_gil([&] { self.release(n); }); },
          nb::arg("n") = 1)
      .def("get_value", [](const SemaphoreProxy& self) { return without_gil([&] { return self.value(); }); });

  proxy_class<EventProxy>(m, "EventProxy", "An Event held by a manager.")
      .def("set", [](const EventProxy& self) { without_gil([&] { self.set(); }); })
      .def("clear", [](const EventProxy& self) { without_gil([&] { self.clear(); }); })
      .def("is_set", [](const EventProxy& self) { return without_gil([&] { return self.is_set(); }); })
      .def(
          "wait",
          [](const EventProxy& self, std::optional<double> timeout) {
            return without_gil([&] { return self.wait(python_timeout(timeout)); });
          },
          nb::arg("timeout") = nb::none());

  proxy_class<ConditionProxy>(m, "ConditionProxy", "A Condition held by a manager.")
      .def(
          "acquire",
          [](const ConditionProxy& self, bool blocking, std::optional<double> timeout) {
            return without_gil([&] { return self.acquire(blocking, python_timeout(timeout)); });
          },
          nb::arg("blocking") = true, nb::arg("timeout") = -1.0)
      .def("release", [](const ConditionProxy& self) { without_gil([&] { self.release(); }); })
      .def(
          "wait",
          [](const ConditionProxy& self, std::optional<double> timeout) {
            return without_gil([&] { return self.wait(python_timeout(timeout)); });
          },
          nb::arg("timeout") = nb::none())
      .def(
          "notify", [](const ConditionProxy& self, uint32_t n) { without_gil([&] { self.notify(n); }); },
          nb::arg("n") = 1)
      .def("notify_all", [](const ConditionProxy& self) { without_gil([&] { self.notify_all(); }); });

  proxy_class<BarrierProxy>(m, "BarrierProxy", "A Barrier held by a manager.")
      .def(
          "wait",
          [](const BarrierProxy& self, std::optional<double> timeout) {
            return without_gil([&] { return self.wait(python_timeout(timeout)); });
          },
          nb::arg("timeout") = nb::none())
      .def("reset", [](const BarrierProxy& self) { without_gil([&] { self.reset(); }); })
      .def("abort", [](const BarrierProxy& self) { without_gil([&] { self.abort(); }); })
      .def_prop_ro("parties", [](const BarrierProxy& self) { return without_gil([&] { return self.parties(); }); })
      .def_prop_ro("n_waiting", [](const BarrierProxy& self) { return without_gil([&] { return self.n_waiting(); }); })
      .def_prop_ro("broken", [](const BarrierProxy& self) { return without_gil([&] { return self.broken(); }); });
}

}  // namespace xproc::python
