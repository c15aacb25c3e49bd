// An object of a user's own interface: made on the server by a registered factory, or
// implemented by a client and published. The Manager only hands the capability around.
#include "xproc/rpc/objects.h"

namespace xproc::rpc {
namespace {

class UserObject final : public SharedObject {
 public:
  UserObject(Runtime& runtime, capnp::Capability::Client object, uint64_t interface_id)
      : SharedObject(runtime, schema::Kind::USER, interface_id), object_(kj::mv(object)) {}

  capnp::Capability::Client client(Session&) override { return object_; }

 private:
  capnp::Capability::Client object_;
};

}  // namespace

kj::Own<SharedObject> make_user_object(Runtime& runtime, capnp::Capability::Client object, uint64_t interface_id) {
  return kj::refcounted<UserObject>(runtime, kj::mv(object), interface_id);
}

}  // namespace xproc::rpc
