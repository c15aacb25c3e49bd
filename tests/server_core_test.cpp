// The Manager server's registry of shared objects (rpc/server_core.h).
#include "xproc/rpc/server_core.h"

#include <capnp/serialize.h>
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

// A container holding a proxy holds its object; containers holding each other (a list
// appended to itself, as multiprocessing allows) are emptied when the registry goes, so the
// sanitizer builds' leak check passes.
TEST(ServerCoreTest, ProxiesInContainersHoldTheirObjectsAndCyclesEndWithTheRegistry) {
  kj::EventLoop loop;
  kj::WaitScope scope(loop);
  kj::TimerImpl timer(kj::origin<kj::TimePoint>());
  Registry registry;
  Runtime runtime{timer, registry, /*instance=*/7};
  auto session = kj::refcounted<Session>(1);
  uint64_t list_id = 0, dict_id = 0;
  {
    auto list = make_list(runtime, Value());
    list_id = list->id();
    auto holder = Value::map({{"list", ProxyRef{7, list_id, nullptr}}}).encode();
    capnp::FlatArrayMessageReader message(holder);
    auto dict = make_dict(runtime, runtime.read(message.getRoot<schema::Value>()));
    dict_id = dict->id();
    auto append = list->client(*session).castAs<schema::SharedList>().appendRequest();
    Value(ProxyRef{7, dict_id, nullptr}).to_capnp(append.initValue());
    append.send().wait(scope);
    auto itself = list->client(*session).castAs<schema::SharedList>().appendRequest();
    Value(ProxyRef{7, list_id, nullptr}).to_capnp(itself.initValue());
    itself.send().wait(scope);

    auto foreign = list->client(*session).castAs<schema::SharedList>().appendRequest();
    Value(ProxyRef{8, dict_id, nullptr}).to_capnp(foreign.initValue());  // another server's
    EXPECT_THROW(foreign.send().wait(scope), kj::Exception);
  }
  EXPECT_NE(registry.find(list_id), nullptr);  // no proxy holds them: each other does
  EXPECT_NE(registry.find(dict_id), nullptr);
}

}  // namespace
}  // namespace xproc::rpc
