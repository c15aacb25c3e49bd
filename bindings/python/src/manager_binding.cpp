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

// The proxy over `ref` for an object of `kind`; None for an object of a user's interface
// (Python has no proxy type for it).
nb::object proxy_of(schema::Kind kind, std::shared_ptr<const rpc::ObjectRef> ref) {
  switch (kind) {
    case schema::Kind::DICT: return nb::cast(DictProxy(std::move(ref)));
    case schema::Kind::LIST: return nb::cast(ListProxy(std::move(ref)));
    case schema::Kind::NAMESPACE: return nb::cast(NamespaceProxy(std::move(ref)));
    case schema::Kind::VALUE: return nb::cast(ValueProxy(std::move(ref)));
    case schema::Kind::ARRAY: return nb::cast(ArrayProxy(std::move(ref)));
    case schema::Kind::QUEUE: return nb::cast(QueueProxy(std::move(ref)));
    case schema::Kind::JOINABLE_QUEUE: return nb::cast(JoinableQueueProxy(std::move(ref)));
    case schema::Kind::LOCK:
    case schema::Kind::RLOCK: return nb::cast(LockProxy(std::move(ref)));
    case schema::Kind::SEMAPHORE:
    case schema::Kind::BOUNDED_SEMAPHORE: return nb::cast(SemaphoreProxy(std::move(ref)));
    case schema::Kind::EVENT: return nb::cast(EventProxy(std::move(ref)));
    case schema::Kind::CONDITION: return nb::cast(ConditionProxy(std::move(ref)));
    case schema::Kind::BARRIER: return nb::cast(BarrierProxy(std::move(ref)));
    case schema::Kind::USER: break;
  }
  return nb::none();
}

// The Python package's name of a kind, as its proxy classes' `_kind` (and rlock,
// bounded_semaphore for the kinds that share a class there).
const char* kind_name(schema::Kind kind) {
  switch (kind) {
    case schema::Kind::DICT: return "dict";
    case schema::Kind::LIST: return "list";
    case schema::Kind::NAMESPACE: return "namespace";
    case schema::Kind::VALUE: return "value";
    case schema::Kind::ARRAY: return "array";
    case schema::Kind::QUEUE: return "queue";
    case schema::Kind::JOINABLE_QUEUE: return "joinable_queue";
    case schema::Kind::LOCK: return "lock";
    case schema::Kind::RLOCK: return "rlock";
    case schema::Kind::SEMAPHORE: return "semaphore";
    case schema::Kind::BOUNDED_SEMAPHORE: return "bounded_semaphore";
    case schema::Kind::EVENT: return "event";
    case schema::Kind::CONDITION: return "condition";
    case schema::Kind::BARRIER: return "barrier";
    case schema::Kind::USER: return "user";
  }
  return "user";
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
      .def_prop_ro(
          "instance", [](const Manager& self) { return without_gil([&] { return self.instance(); }); },
          "The server's random instance number, which proxies in messages carry.")
      .def(
          "attach",
          [](Manager& self, uint64_t id) {
            auto attached = without_gil([&] { return self.attach_held(id); });
            return nb::make_tuple(kind_name(attached.kind), proxy_of(attached.kind, std::move(attached.ref)));
          },
          nb::arg("id"),
          "(kind, proxy) for object `id` of this manager: kind as 'dict', 'rlock' ...; the proxy "
          "holds the object (None for an object of a user's interface). KeyError once it is gone.");
}

}  // namespace xproc::python
