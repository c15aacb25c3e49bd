// The `xproc._xproc` extension: the C++ library's queues, connections and Manager
// proxies, taking and returning Python objects. The `xproc` package wraps it in
// multiprocessing's API; nothing here is meant to be imported directly.
#include "bindings.h"
#include "xproc/version.h"

NB_MODULE(_xproc, m) {
  m.doc() = "xproc's C++ core (use the `xproc` package, not this module)";
  m.attr("__version__") = XPROC_VERSION_STRING;
  xproc::python::register_errors(m);
  xproc::python::register_values(m);
  xproc::python::register_message_views(m);
  xproc::python::register_queues(m);
  xproc::python::register_connections(m);
  xproc::python::register_managers(m);
  xproc::python::register_object_server(m);
#ifdef XPROC_HAVE_NATS
  xproc::python::register_nats(m);
#endif
}
