// The Manager server's registry of shared objects (rpc/server_core.h).
#include "xproc/rpc/server_core.h"

#include <gtest/gtest.h>
#include <kj/async.h>
#include <kj/timer.h>

#include "xproc/rpc/objects.h"

namespace xproc::rpc {
namespace {

// Found by the manager_stream fuzz target (AddressSanitizer: stack-use-after-scope): the
// server declares its Registry before the Runtime that names it, so the registry drops its
// named objects after the Runtime is gone; an object must not reach its registry through
// the Runtime then. Caught here by the sanitizer builds.
TEST(ServerCoreTest, NamedObjectsAreDroppedAfterTheRuntimeThatMadeThem) {
  kj::EventLoop loop;
  kj::WaitScope scope(loop);
  kj::TimerImpl timer(kj::origin<kj::TimePoint>());
  Registry registry;
  uint64_t id = 0;
  {
    Runtime runtime{timer, registry};
    auto dict = make_dict(runtime, Value());
    id = dict->id();
    registry.bind_name("kept", kj::mv(dict));
  }
  EXPECT_NE(registry.find(id), nullptr);
  EXPECT_EQ(registry.names(), std::vector<std::string>{"kept"});
  registry.unbind_name("kept");  // the last reference: the object leaves the registry
  EXPECT_EQ(registry.find(id), nullptr);
}

}  // namespace
}  // namespace xproc::rpc
