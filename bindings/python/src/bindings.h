// What each part of the `_xproc` extension registers, and the helpers they share.
#pragma once
#include <nanobind/nanobind.h>

namespace xproc::python {

namespace nb = nanobind;

void register_errors(nb::module_& m);
void register_values(nb::module_& m);
void register_queues(nb::module_& m);
void register_connections(nb::module_& m);
void register_managers(nb::module_& m);

}  // namespace xproc::python
