// _xproc.RemoteObject (remote_object.cpp): a Manager's shared object, called by the names
// of schema/xproc/manager.capnp.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <capnp/schema.h>

#include "bindings.h"
#include "xproc/manager.capnp.h"
#include "xproc/rpc/client_connection.h"
#include "xproc/rpc/dynamic_call.h"

namespace xproc::rpc {
class DynamicCall;
}

namespace xproc::python {

struct RemoteObject {
  std::shared_ptr<const rpc::ObjectRef> ref;
  capnp::InterfaceSchema interface;
  schema::Kind kind;

  // Calls `method` with Python arguments; the GIL is released while the call waits.
  nb::object call(const std::string& method, const nb::tuple& args, const nb::dict& kwargs) const;
  // Sends `method` on this thread's event-loop connection without waiting; `future` (of
  // the asyncio `loop`) is settled by settle_async_calls (remote_object.cpp). Returns
  // (token, whether the call travels in a batch, the connection's socket).
  nb::tuple call_async(const std::string& method, const nb::tuple& args, const nb::dict& kwargs, const nb::object& loop,
                       const nb::object& future) const;
  // The socket of that connection, connecting first if need be.
  int async_fileno() const;
};

// The RemoteObject of an object of `kind` (None for a user's interface).
nb::object remote_object(schema::Kind kind, std::shared_ptr<const rpc::ObjectRef> ref);
// Fills `call`'s parameters from Python arguments as RemoteObject::call does.
void fill_call(rpc::DynamicCall& call, const nb::tuple& args, const nb::dict& kwargs);

// Kinds by their Python names ("joinable_queue"): rpc/dynamic_call.h.
using rpc::kind_name;
using rpc::kind_named;

void register_remote_objects(nb::module_& m);

}  // namespace xproc::python
