// What each part of the `_xproc` extension registers, and the helpers they share.
#pragma once
#include <nanobind/nanobind.h>

#include <optional>
#include <string>

namespace xproc::python {

namespace nb = nanobind;

// A parameter that takes any Python object, None included. nanobind refuses None for a
// plain nb::handle unless every such argument is annotated; xproc's message and value
// parameters all take None (it is a Value), so they use this type instead.
inline bool is_any_object(PyObject*) { return true; }
class AnyObject : public nb::object {
 public:
  NB_OBJECT_DEFAULT(AnyObject, nb::object, "object", is_any_object)
};

void register_errors(nb::module_& m);
void register_values(nb::module_& m);
void register_queues(nb::module_& m);
void register_message_views(nb::module_& m);
void register_connections(nb::module_& m);
void register_managers(nb::module_& m);
void register_object_server(nb::module_& m);
// _xproc._nats, in builds with libnats (XPROC_HAVE_NATS) only.
void register_nats(nb::module_& m);

}  // namespace xproc::python

namespace xproc::python {

// Runs f() with the GIL released: a call that blocks lets other Python threads go on.
template <typename F>
auto without_gil(F&& f) {
  nb::gil_scoped_release unlocked;
  return f();
}

// Authkeys are bytes in Python, as in multiprocessing; the C++ library takes a string.
inline std::optional<std::string> authkey_string(const std::optional<nb::bytes>& authkey) {
  if (!authkey) return std::nullopt;
  return std::string(authkey->c_str(), authkey->size());
}

}  // namespace xproc::python

template <>
struct nanobind::detail::has_arg_defaults<xproc::python::AnyObject> : std::true_type {};
