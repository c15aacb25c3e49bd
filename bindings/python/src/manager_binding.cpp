// _xproc.Manager: starts a Manager server process (or connects to one) and makes the
// shared objects; the proxies themselves are in container_proxies.cpp and
// sync_proxies.cpp. Also installs the interrupt check that lets Ctrl-C cancel a proxy
// call blocked on the server.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include <capnp/common.h>
#include <dlfcn.h>

#include <string>

#include "blocking.h"
#include "proxy_bindings.h"
#include "python_values.h"
#include "xproc/errors.h"
#include "xproc/manager.h"

namespace xproc::python {
namespace {

// Called by a waiting proxy call, without the GIL, every kSignalCheckInterval.
void raise_pending_signal() {
  nb::gil_scoped_acquire locked;
  check_signals();
}

// pycapnp carries its own, newer Cap'n Proto. If it was loaded first, the dynamic
// linker binds the template instances both define (GNU unique symbols such as the heap
// disposer of the RPC system) to pycapnp's copies, and the RPC client would destroy its
// objects with the other version's code. Detected here, as a clear error, before any
// connection is made; loading xproc first avoids it.
void require_own_capnp() {
  static const bool own = [] {
    const std::string name = "libcapnp-rpc-" + std::to_string(CAPNP_VERSION_MAJOR) + "." +
                             std::to_string(CAPNP_VERSION_MINOR) + "." + std::to_string(CAPNP_VERSION_MICRO) + ".so";
    void* library = dlopen(name.c_str(), RTLD_NOW | RTLD_NOLOAD);
    if (library == nullptr) return true;  // linked some other way: nothing to compare
    void* symbol = dlsym(library, "_ZN2kj1_12HeapDisposerIN5capnp1_13RpcSystemBase4ImplEE8instanceE");
    Dl_info info{};
    const bool ours = symbol == nullptr || (dladdr(symbol, &info) != 0 && info.dli_fname != nullptr &&
                                            std::string(info.dli_fname).find("libcapnp-rpc") != std::string::npos);
    dlclose(library);
    return ours;
  }();
  if (!own) {
    throw RuntimeError(
        "pycapnp was imported before xproc in this process, and its Cap'n Proto (another version) "
        "now stands in for xproc's: the Manager client cannot run safely. Import xproc before "
        "capnp (put `import xproc` above `import capnp`).");
  }
}

nb::object attach(Manager& manager, std::string_view kind, uint64_t id) {
  if (kind == "dict") return nb::cast(manager.attach<DictProxy>(id));
  if (kind == "list") return nb::cast(manager.attach<ListProxy>(id));
  if (kind == "namespace") return nb::cast(manager.attach<NamespaceProxy>(id));
  if (kind == "value") return nb::cast(manager.attach<ValueProxy>(id));
  if (kind == "array") return nb::cast(manager.attach<ArrayProxy>(id));
  if (kind == "queue") return nb::cast(manager.attach<QueueProxy>(id));
  if (kind == "joinable_queue") return nb::cast(manager.attach<JoinableQueueProxy>(id));
  if (kind == "lock") return nb::cast(manager.attach<LockProxy>(id));
  if (kind == "semaphore") return nb::cast(manager.attach<SemaphoreProxy>(id));
  if (kind == "event") return nb::cast(manager.attach<EventProxy>(id));
  if (kind == "condition") return nb::cast(manager.attach<ConditionProxy>(id));
  if (kind == "barrier") return nb::cast(manager.attach<BarrierProxy>(id));
  throw nb::value_error(("no proxy kind '" + std::string(kind) + "'").c_str());
}

}  // namespace

void register_managers(nb::module_& m) {
  set_call_interrupt_check(&raise_pending_signal, kSignalCheckInterval);
  register_container_proxies(m);
  register_queue_proxies(m);
  register_synchronization_proxies(m);

  nb::class_<Manager>(m, "Manager", "A Manager server this process started, or a connection to one.")
      .def(
          "__init__",
          [](Manager* self, std::string address, std::optional<nb::bytes> authkey) {
            require_own_capnp();
            ManagerOptions options;
            options.address = std::move(address);
            options.authkey = authkey_string(authkey);
            new (self) Manager(std::move(options));
          },
          nb::arg("address") = "", nb::arg("authkey") = nb::none(),
          "Starts a server process (unix socket in a private directory unless `address` says "
          "otherwise) and connects to it.")
      .def_static(
          "connect",
          [](const std::string& address, std::optional<nb::bytes> authkey, std::string cafile, std::string certfile,
             std::string keyfile, std::string server_hostname) {
            require_own_capnp();
            auto secret = authkey_string(authkey);
            ConnectOptions options;
            options.tls = TlsClientOptions{std::move(cafile), std::move(certfile), std::move(keyfile),
                                           std::move(server_hostname)};
            return without_gil([&] { return Manager::connect(address, secret, options); });
          },
          nb::arg("address"), nb::arg("authkey") = nb::none(), nb::arg("cafile") = "", nb::arg("certfile") = "",
          nb::arg("keyfile") = "", nb::arg("server_hostname") = "",
          "A connection to a server started elsewhere; for a tls:host:port address, the server's "
          "certificate must chain to `cafile` (empty: the system's CAs) and name `server_hostname` (empty: "
          "the address's host), and `certfile`/`keyfile` are the client's own certificate, if any.")
      .def("shutdown", [](Manager& self) { without_gil([&] { self.shutdown(); }); })
      .def_prop_ro("address", &Manager::address)
      .def_prop_ro("authkey",
                   [](const Manager& self) -> std::optional<nb::bytes> {
                     if (!self.authkey()) return std::nullopt;
                     return nb::bytes(self.authkey()->data(), self.authkey()->size());
                   })
      .def_prop_ro("pid", &Manager::pid)
      .def(
          "dict",
          [](Manager& self, nb::handle initial, std::string_view name) {
            Value v = to_value(initial);
            if (!v.is_map()) throw nb::type_error("dict() takes a dict");
            return without_gil([&] { return self.dict(v.as_map(), name); });
          },
          nb::arg("initial"), nb::arg("name") = "")
      .def(
          "list",
          [](Manager& self, nb::handle initial, std::string_view name) {
            Value::List items;
            for (nb::handle item : initial) items.push_back(to_value(item));
            return without_gil([&] { return self.list(items, name); });
          },
          nb::arg("initial"), nb::arg("name") = "")
      .def(
          "namespace",
          [](Manager& self, std::string_view name) { return without_gil([&] { return self.namespace_(name); }); },
          nb::arg("name") = "")
      .def(
          "value",
          [](Manager& self, std::string_view typecode, nb::handle initial, std::string_view name) {
            Value v = to_value(initial);
            return without_gil([&] { return self.value(typecode, v, name); });
          },
          nb::arg("typecode"), nb::arg("initial"), nb::arg("name") = "")
      .def(
          "array",
          [](Manager& self, std::string_view typecode, nb::handle initial, std::string_view name) {
            Value::List items;
            for (nb::handle item : initial) items.push_back(to_value(item));
            return without_gil([&] { return self.array(typecode, items, name); });
          },
          nb::arg("typecode"), nb::arg("initial"), nb::arg("name") = "")
      .def(
          "queue",
          [](Manager& self, int64_t maxsize, std::string_view name) {
            return without_gil([&] { return self.queue(maxsize, name); });
          },
          nb::arg("maxsize") = 0, nb::arg("name") = "")
      .def(
          "joinable_queue",
          [](Manager& self, int64_t maxsize, std::string_view name) {
            return without_gil([&] { return self.joinable_queue(maxsize, name); });
          },
          nb::arg("maxsize") = 0, nb::arg("name") = "")
      .def(
          "lock", [](Manager& self, std::string_view name) { return without_gil([&] { return self.lock(name); }); },
          nb::arg("name") = "")
      .def(
          "rlock", [](Manager& self, std::string_view name) { return without_gil([&] { return self.rlock(name); }); },
          nb::arg("name") = "")
      .def(
          "semaphore",
          [](Manager& self, int64_t value, std::string_view name) {
            return without_gil([&] { return self.semaphore(value, name); });
          },
          nb::arg("value") = 1, nb::arg("name") = "")
      .def(
          "bounded_semaphore",
          [](Manager& self, int64_t value, std::string_view name) {
            return without_gil([&] { return self.bounded_semaphore(value, name); });
          },
          nb::arg("value") = 1, nb::arg("name") = "")
      .def(
          "event", [](Manager& self, std::string_view name) { return without_gil([&] { return self.event(name); }); },
          nb::arg("name") = "")
      .def(
          "condition",
          [](Manager& self, std::optional<LockProxy> lock, std::string_view name) {
            return without_gil([&] { return self.condition(lock, name); });
          },
          nb::arg("lock") = nb::none(), nb::arg("name") = "")
      .def(
          "barrier",
          [](Manager& self, uint32_t parties, std::optional<double> timeout, std::string_view name) {
            return without_gil([&] { return self.barrier(parties, python_timeout(timeout), name); });
          },
          nb::arg("parties"), nb::arg("timeout") = nb::none(), nb::arg("name") = "")
      .def("names", [](Manager& self) { return without_gil([&] { return self.names(); }); })
      .def("unregister", [](Manager& self, std::string_view name) { without_gil([&] { self.unregister(name); }); })
      .def("attach", &attach, nb::arg("kind"), nb::arg("id"),
           "The proxy of `kind` ('dict', 'list', ... 'barrier') for object `id` of this manager.");
}

}  // namespace xproc::python
