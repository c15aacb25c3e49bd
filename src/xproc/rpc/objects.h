// The factories of the Manager's shared objects, one file each (dict_object.cpp, ...).
// Each returns the object with one reference, owned by the caller.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "xproc/rpc/server_core.h"
#include "xproc/value.h"

namespace xproc::rpc {

kj::Own<SharedObject> make_dict(Runtime& runtime, Value initial);  // a map or null
kj::Own<SharedObject> make_list(Runtime& runtime, Value initial);  // a list or null
kj::Own<SharedObject> make_namespace(Runtime& runtime);
kj::Own<SharedObject> make_value_cell(Runtime& runtime, std::string typecode, Value initial);
kj::Own<SharedObject> make_array(Runtime& runtime, std::string typecode, std::vector<Value> initial);
kj::Own<SharedObject> make_queue(Runtime& runtime, int64_t maxsize, bool joinable);
kj::Own<SharedObject> make_lock(Runtime& runtime, bool recursive);
kj::Own<SharedObject> make_semaphore(Runtime& runtime, int64_t value, bool bounded);
kj::Own<SharedObject> make_event(Runtime& runtime);
// `lock`: a lock or rlock of the same server.
kj::Own<SharedObject> make_condition(Runtime& runtime, kj::Own<SharedObject> lock);
kj::Own<SharedObject> make_barrier(Runtime& runtime, uint32_t parties, double default_timeout);
// A user's capability (made by a registered factory, or published by a client).
kj::Own<SharedObject> make_user_object(Runtime& runtime, capnp::Capability::Client object, uint64_t interface_id);

// What conditions need of a lock (lock_object.cpp).
class LockObject : public SharedObject {
 public:
  using SharedObject::SharedObject;
  // Resolves true once (session, owner) holds the lock.
  virtual kj::Promise<bool> acquire(Session& session, uint64_t owner, bool blocking, double timeout) = 0;
  virtual void release(uint64_t session, uint64_t owner) = 0;  // RuntimeError when not held
  virtual bool is_owned_by(uint64_t session, uint64_t owner) const = 0;
  virtual bool is_locked() const = 0;
  // Releases the lock completely (all recursion levels) and returns the level, for
  // Condition.wait; restore() takes it back at that level once reacquired.
  virtual uint32_t release_all(uint64_t session, uint64_t owner) = 0;
  virtual void restore(uint64_t session, uint64_t owner, uint32_t level) = 0;
  virtual std::string repr_text() const = 0;
};

}  // namespace xproc::rpc
