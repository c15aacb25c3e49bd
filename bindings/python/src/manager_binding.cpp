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
#include "python_values.h"
#include "remote_object.h"
#include "xproc/errors.h"
#include "xproc/manager.h"
#include "xproc/rpc/dynamic_call.h"

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
// connection is made; loading xproc first avoids it. A module with its own hidden copy of
// Cap'n Proto (XPROC_PYTHON_PRIVATE_CAPNP: the wheel) binds nothing to pycapnp's.
#ifdef XPROC_PYTHON_PRIVATE_CAPNP
void require_own_capnp() {}
#else
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
#endif

}  // namespace

void register_managers(nb::module_& m) {
  set_call_interrupt_check(&raise_pending_signal, kSignalCheckInterval);
  register_remote_objects(m);

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
      .def(
          "stop_server",
          [](Manager& self) {
            without_gil([&] { rpc::Reply stopped(rpc::DynamicCall(*self.endpoint(), "shutdown")); });
          },
          "Asks the server to stop (the Manager's shutdown call), whoever started it.")
      .def_prop_ro("address", &Manager::address)
      .def_prop_ro("authkey",
                   [](const Manager& self) -> std::optional<nb::bytes> {
                     if (!self.authkey()) return std::nullopt;
                     return nb::bytes(self.authkey()->data(), self.authkey()->size());
                   })
      .def_prop_ro("pid", &Manager::pid)
      .def(
          "make",
          [](Manager& self, const std::string& kind, const std::string& name, nb::args args, nb::kwargs kwargs) {
            const schema::Kind made = kind_named(kind);
            std::optional<rpc::DynamicCall> request;
            {
              nb::gil_scoped_release unlocked;
              request.emplace(*self.endpoint(), rpc::factory_of(made));
            }
            nb::list rest;  // registeredName first
            rest.append(name);
            for (nb::handle arg : args) rest.append(arg);
            fill_call(*request, nb::tuple(rest), kwargs);
            std::shared_ptr<const rpc::ObjectRef> ref;
            {
              nb::gil_scoped_release unlocked;
              ref = rpc::make_object(self.endpoint(), made, std::move(*request));
            }
            return remote_object(made, std::move(ref));
          },
          nb::arg("kind"), nb::arg("name"), nb::arg("args"), nb::arg("kwargs"),
          "A new object of `kind` ('dict', 'joinable_queue' ...) made by its factory in "
          "schema/xproc/manager.capnp, or the one registered under `name`; the other parameters "
          "in schema order or by schema name.")
      .def("names", [](Manager& self) { return without_gil([&] { return self.names(); }); })
      .def("unregister", [](Manager& self, std::string_view name) { without_gil([&] { self.unregister(name); }); })
      .def_prop_ro(
          "instance", [](const Manager& self) { return without_gil([&] { return self.instance(); }); },
          "The server's random instance number, which proxies in messages carry.")
      .def(
          "attach",
          [](Manager& self, uint64_t id) {
            auto attached = without_gil([&] { return self.attach_held(id); });
            return nb::make_tuple(kind_name(attached.kind), remote_object(attached.kind, std::move(attached.ref)));
          },
          nb::arg("id"),
          "(kind, proxy) for object `id` of this manager: kind as 'dict', 'rlock' ...; the proxy "
          "holds the object (None for an object of a user's interface). KeyError once it is gone.");
}

}  // namespace xproc::python
