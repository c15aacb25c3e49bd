// What each part of the `_xproc` extension registers, and the helpers they share.
#pragma once
#include <nanobind/nanobind.h>

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
void register_connections(nb::module_& m);
void register_managers(nb::module_& m);

}  // namespace xproc::python

template <>
struct nanobind::detail::has_arg_defaults<xproc::python::AnyObject> : std::true_type {};
