// Manager: every object kind and its errors, over a real server process; proxies in
// threads and forked children; clients and servers that die.
#include "xproc/manager.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "counter.capnp.h"
#include "support/test_support.h"
#include "xproc/errors.h"
#include "xproc/process.h"
#include "xproc/rpc/dynamic_call.h"
#include "xproc/rpc/remote_error.h"

namespace xproc {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// Runs `body` in a forked child; the child's exit code is 0 when it returned normally.
int run_in_child(std::function<void()> body) {
  Process child(std::move(body));
  child.start();
  child.join();
  return child.exitcode().value_or(-100);
}

// Cap'n Proto's generated Server has a non-virtual destructor by design (kj::Own disposes).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class CounterImpl final : public Counter::Server {
 protected:
  kj::Promise<void> increment(IncrementContext context) override {
    value_ += context.getParams().getBy();
    context.getResults().setValue(value_);
    return kj::READY_NOW;
  }
  kj::Promise<void> value(ValueContext context) override {
    context.getResults().setValue(value_);
    return kj::READY_NOW;
  }

 private:
  int64_t value_ = 0;
};

// The Dynamic interface served from C++ (what Python's registered types answer): a tally
// made from its constructor's arguments, whose "add" method takes x and optional y.
class TallyImpl final : public schema::Dynamic::Server {
 public:
  explicit TallyImpl(int64_t start) : total_(start) {}

 protected:
  kj::Promise<void> call(CallContext context) override {
    auto params = context.getParams();
    std::string method = params.getMethod().cStr();
    if (method != "add") rpc::throw_remote("AttributeError", "no method " + method);
    for (auto arg : params.getArgs()) total_ += Value::from_capnp(arg).as_int();
    for (auto entry : params.getKwargs()) total_ += Value::from_capnp(entry.getValue()).as_int();
    Value(total_).to_capnp(context.getResults().initResult());
    return kj::READY_NOW;
  }
  kj::Promise<void> exposed(ExposedContext context) override {
    context.getResults().initMethods(1).set(0, "add");
    return kj::READY_NOW;
  }

 private:
  int64_t total_;
};
#pragma GCC diagnostic pop

// ---- dict ----------------------------------------------------------------------------

TEST(ManagerDict, PythonOperations) {
  Manager manager;
  auto d = manager.dict(ValueMap{{"a", 1}});
  d.set("b", 2);
  d.set(0.25, nullptr);
  EXPECT_EQ(d["a"], Value(1));
  EXPECT_EQ(d.get("zz"), Value(nullptr));
  EXPECT_EQ(d.get("zz", 7), Value(7));
  EXPECT_TRUE(d.contains("b"));
  EXPECT_FALSE(d.contains("c"));
  EXPECT_EQ(d.size(), 3u);
  EXPECT_EQ(d.repr(), "{'a': 1, 'b': 2, 0.25: None}");
  EXPECT_EQ(d.keys(), (std::vector<Value>{"a", "b", 0.25}));
  EXPECT_EQ(d.values(), (std::vector<Value>{1, 2, nullptr}));
  EXPECT_EQ(d.items().size(), 3u);
  d.update(ValueMap{{"a", 10}, {"c", 3}});
  EXPECT_EQ(d["a"], Value(10));
  EXPECT_EQ(d.pop("c"), Value(3));
  EXPECT_EQ(d.pop("c", "gone"), Value("gone"));
  EXPECT_EQ(d.setdefault("e", 5), Value(5));
  EXPECT_EQ(d.setdefault("e", 6), Value(5));
  auto last = d.popitem();
  EXPECT_EQ(last.first, Value("e"));
  d.del("b");
  EXPECT_EQ(d.copy(), (ValueMap{{"a", 10}, {0.25, nullptr}}));
  d.set(1, "one");
  EXPECT_EQ(d[1.0], Value("one"));  // Python: 1 == 1.0 == True is one key
  EXPECT_EQ(d[true], Value("one"));
  d.clear();
  EXPECT_EQ(d.size(), 0u);
}

TEST(ManagerDict, ErrorsArePythonsAndLeaveTheDictUsable) {
  Manager manager;
  auto d = manager.dict();
  try {
    d["missing"];
    FAIL() << "no KeyError";
  } catch (const KeyError& e) {
    EXPECT_STREQ(e.what(), "'missing'");
  }
  EXPECT_THROW(d.del("missing"), KeyError);
  EXPECT_THROW(d.pop("missing"), KeyError);
  EXPECT_THROW(d.popitem(), KeyError);
  EXPECT_THROW(d.set(Value::map({{"k", 1}}), 1), TypeError);  // a dict is unhashable
  d.set("s", "text");
  EXPECT_THROW(d.increment("s"), TypeError);
  d.set("ok", 1);
  EXPECT_EQ(d["ok"], Value(1));
}

TEST(ManagerDict, AtomicOperations) {
  Manager manager;
  auto d = manager.dict();
  EXPECT_EQ(d.increment("n"), Value(1));
  EXPECT_EQ(d.increment("n", 41), Value(42));
  EXPECT_EQ(d.increment("f", 0.5), Value(0.5));
  auto cas = d.compare_and_set("n", Value(41), 0);
  EXPECT_FALSE(cas.swapped);
  EXPECT_EQ(cas.current, Value(42));
  cas = d.compare_and_set("n", Value(42), 0);
  EXPECT_TRUE(cas.swapped);
  EXPECT_EQ(d["n"], Value(0));
  cas = d.compare_and_set("new", std::nullopt, "x");
  EXPECT_TRUE(cas.swapped);
  cas = d.compare_and_set("new", std::nullopt, "y");
  EXPECT_FALSE(cas.swapped);
  EXPECT_EQ(cas.current, Value("x"));
  d.set_many(ValueMap{{"a", 1}, {"b", 2}});
  auto got = d.get_many({"a", "zz", "b"});
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], Value(1));
  EXPECT_FALSE(got[1].has_value());
  EXPECT_EQ(got[2], Value(2));
}

TEST(ManagerDict, TenProcessesIncrementingOneKeyLoseNothing) {
  Manager manager;
  auto d = manager.dict();
  std::vector<Process> workers;
  for (int i = 0; i < 10; ++i) {
    workers.emplace_back([d] {
      for (int k = 0; k < 300; ++k) d.increment("hits");
    });
    workers.back().start();
  }
  for (auto& w : workers) {
    w.join();
    EXPECT_EQ(w.exitcode(), 0);
  }
  EXPECT_EQ(d["hits"], Value(3000));
}

TEST(ManagerDict, FiftyMegabytes) {
  Manager manager;
  auto d = manager.dict();
  const std::string megabyte(1 << 20, 'x');
  for (int i = 0; i < 50; ++i) d.set(i, Value::bytes(megabyte));
  EXPECT_EQ(d.size(), 50u);
  ValueMap copy = d.copy();
  ASSERT_EQ(copy.size(), 50u);
  EXPECT_EQ(copy.at(49).as_bytes().size(), megabyte.size());
  EXPECT_EQ(d[17].as_bytes(), megabyte);
}

// ---- list, namespace, value, array -----------------------------------------------------

TEST(ManagerList, PythonOperations) {
  Manager manager;
  auto l = manager.list({0, 1, 2, 3, 4});
  l.append(5);
  l.extend({6, 7});
  EXPECT_EQ(l.size(), 8u);
  EXPECT_EQ(l[-1], Value(7));
  l.set(0, "zero");
  EXPECT_EQ(l[0], Value("zero"));
  l.del(0);
  EXPECT_EQ(l.slice({1, 5, 2}), (Value::List{2, 4}));
  EXPECT_EQ(l.slice({std::nullopt, std::nullopt, -1}), (Value::List{7, 6, 5, 4, 3, 2, 1}));
  l.set_slice({0, 2}, {"a", "b", "c"});
  EXPECT_EQ(l.copy(), (Value::List{"a", "b", "c", 3, 4, 5, 6, 7}));
  l.del_slice({0, 3});
  l.insert(0, 2);
  l.insert(-100, 1);
  EXPECT_EQ(l.pop(), Value(7));
  EXPECT_EQ(l.pop(0), Value(1));
  l.remove(2);
  EXPECT_EQ(l.index(5), 2);
  EXPECT_EQ(l.count(5), 1u);
  EXPECT_TRUE(l.contains(6));
  l.reverse();
  EXPECT_EQ(l.copy(), (Value::List{6, 5, 4, 3}));
  l.sort();
  EXPECT_EQ(l.repr(), "[3, 4, 5, 6]");
  l.sort(true);
  EXPECT_EQ(l.copy(), (Value::List{6, 5, 4, 3}));
  l.multiply(2);
  EXPECT_EQ(l.size(), 8u);
}

TEST(ManagerList, ErrorsArePythons) {
  Manager manager;
  auto l = manager.list({1, "a"});
  EXPECT_THROW(l[5], IndexError);
  EXPECT_THROW(l.set(-3, 0), IndexError);
  EXPECT_THROW(l.remove(99), ValueError);
  EXPECT_THROW(l.index(99), ValueError);
  EXPECT_THROW(l.set_slice({0, 2, 2}, {1, 2}), ValueError);  // extended slice of size 1
  EXPECT_THROW(l.slice({0, 2, 0}), ValueError);
  try {
    l.sort();
    FAIL() << "no TypeError";
  } catch (const TypeError& e) {
    EXPECT_NE(std::string(e.what()).find("'<' not supported"), std::string::npos);
  }
  EXPECT_EQ(l.copy(), (Value::List{1, "a"}));  // a failed sort changes nothing
  auto empty = manager.list();
  EXPECT_THROW(empty.pop(), IndexError);
}

TEST(ManagerNamespace, AttributesAndRepr) {
  Manager manager;
  auto ns = manager.namespace_();
  ns.set("x", 1);
  ns.set("name", "n");
  ns.set("_hidden", true);
  EXPECT_EQ(ns.get("x"), Value(1));
  EXPECT_EQ(ns.repr(), "Namespace(name='n', x=1)");
  ns.del("x");
  EXPECT_THROW(ns.get("x"), AttributeError);
  EXPECT_THROW(ns.del("x"), AttributeError);
  EXPECT_EQ(ns.items().size(), 2u);
}

TEST(ManagerValue, GetSetIncrement) {
  Manager manager;
  auto v = manager.value("i", 0);
  EXPECT_EQ(v.repr(), "Value('i', 0)");
  v.set(5);
  EXPECT_EQ(v.get(), Value(5));
  EXPECT_EQ(v.increment(2), Value(7));
  EXPECT_EQ(v.typecode(), "i");
}

TEST(ManagerArray, TypecodeChecked) {
  Manager manager;
  auto a = manager.array("i", {1, 2, 3});
  EXPECT_EQ(a.repr(), "array('i', [1, 2, 3])");
  EXPECT_EQ(a.size(), 3u);
  a.set(-1, 30);
  EXPECT_EQ(a[2], Value(30));
  EXPECT_THROW(a.set(0, "x"), TypeError);
  EXPECT_THROW(a.set(0, int64_t{1} << 40), ValueError);  // out of range for 'i'
  EXPECT_THROW(a[3], IndexError);
  a.set_slice({0, 2}, {7, 8});
  EXPECT_EQ(a.slice({}), (Value::List{7, 8, 30}));
  EXPECT_THROW(a.set_slice({0, 2}, {1}), ValueError);
  auto d = manager.array("d", {1, 2.5});
  EXPECT_EQ(d.repr(), "array('d', [1.0, 2.5])");
  EXPECT_THROW(manager.array("z", {}), ValueError);
}

// ---- queues ----------------------------------------------------------------------------

TEST(ManagerQueue, FifoAcrossProcessesAndTimeouts) {
  Manager manager;
  auto q = manager.queue(2);
  EXPECT_TRUE(q.empty());
  q.put(1);
  q.put("two");
  EXPECT_TRUE(q.full());
  auto started = Clock::now();
  EXPECT_THROW(q.put(3, true, milliseconds(100)), Full);
  EXPECT_GE(Clock::now() - started, milliseconds(90));
  EXPECT_THROW(q.put_nowait(3), Full);
  EXPECT_EQ(q.get(), Value(1));
  EXPECT_EQ(q.get(), Value("two"));
  EXPECT_THROW(q.get_nowait(), Empty);
  EXPECT_THROW(q.get(true, milliseconds(50)), Empty);

  Process producer([q] {
    for (int i = 0; i < 20; ++i) q.put(i);
  });
  producer.start();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(q.get(true, seconds(10)), Value(i));
  producer.join();
  EXPECT_EQ(producer.exitcode(), 0);
}

TEST(ManagerQueue, ANegativeTimeoutIsAValueErrorAndWaitsForNothing) {
  Manager manager;
  auto q = manager.queue();
  auto lock = manager.lock();
  auto event = manager.event();
  const auto negative = Timeout(std::chrono::duration<double>(-1));
  EXPECT_THROW(q.get(true, negative), ValueError);
  EXPECT_THROW(q.put(1, true, negative), ValueError);
  EXPECT_THROW(lock.acquire(true, negative), ValueError);
  EXPECT_THROW(event.wait(negative), ValueError);
  EXPECT_THROW(manager.condition().wait_for([] { return false; }, negative), ValueError);
  EXPECT_THROW(manager.barrier(2, negative), ValueError);
  EXPECT_EQ(q.qsize(), 0u);  // nothing was sent
  EXPECT_FALSE(lock.locked());
}

TEST(ManagerFactories, EachKindIsMadeByTheFactoryOfItsOrdinal) {
  // manager.capnp keeps Kind and the Manager's factories in step; rpc::make_object relies on it.
  const auto kinds = capnp::Schema::from<schema::Kind>().getEnumerants();
  for (unsigned i = 0; i < kinds.size(); ++i) {
    const auto kind = static_cast<schema::Kind>(i);
    if (kind == schema::Kind::USER) {  // made by create; its interface is the object's own
      EXPECT_EQ(rpc::factory_of(kind), "create");
      continue;
    }
    EXPECT_EQ(rpc::factory_of(kind), std::string(kinds[i].getProto().getName().cStr()));
    EXPECT_TRUE(rpc::interface_of(kind).getProto().getId() != 0);
  }
}

TEST(ManagerQueue, JoinableQueue) {
  Manager manager;
  auto q = manager.joinable_queue();
  q.put("job");
  EXPECT_FALSE(q.join(milliseconds(50)));
  Process worker([q] {
    q.get();
    q.task_done();
  });
  worker.start();
  EXPECT_TRUE(q.join(seconds(10)));
  worker.join();
  EXPECT_THROW(q.task_done(), ValueError);
}

// ---- locks and other synchronisation -------------------------------------------------

TEST(ManagerLock, LockAndRLockSemantics) {
  Manager manager;
  auto lock = manager.lock();
  EXPECT_TRUE(lock.acquire());
  EXPECT_TRUE(lock.locked());
  EXPECT_FALSE(lock.acquire(false));
  EXPECT_FALSE(lock.acquire(true, milliseconds(50)));
  lock.release();
  EXPECT_THROW(lock.release(), RuntimeError);
  {
    std::lock_guard guard(lock);
    EXPECT_TRUE(lock.locked());
  }
  EXPECT_FALSE(lock.locked());

  auto rlock = manager.rlock();
  EXPECT_TRUE(rlock.acquire());
  EXPECT_TRUE(rlock.acquire());  // re-entrant for its owner
  std::thread other([&] { EXPECT_FALSE(rlock.acquire(false)); });
  other.join();
  rlock.release();
  rlock.release();
  EXPECT_THROW(rlock.release(), RuntimeError);
}

TEST(ManagerLock, ReleasedWhenHolderIsKilled) {
  Manager manager;
  auto lock = manager.lock();
  auto held = manager.event();
  Process holder([lock, held] {
    lock.acquire();
    held.set();
    pause();
  });
  holder.start();
  ASSERT_TRUE(held.wait(seconds(10)));
  EXPECT_FALSE(lock.acquire(false));
  holder.kill();
  holder.join();
  EXPECT_TRUE(lock.acquire(true, seconds(5)));  // the server saw the connection drop
  lock.release();
}

// A plain lock may be released by another process than the one that took it, as
// multiprocessing's: the server's release for a holder that left settles that release.
TEST(ManagerLock, TakenByAProcessThatLeftAndReleasedByAnother) {
  Manager manager;
  auto lock = manager.lock();
  Process taker([lock] {
    lock.acquire();
    _exit(0);
  });
  taker.start();
  taker.join();
  EXPECT_NO_THROW(lock.release());
  EXPECT_THROW(lock.release(), RuntimeError);  // released once, not twice
  EXPECT_TRUE(lock.acquire(false));
  lock.release();

  auto rlock = manager.rlock();  // an rlock is its owner's alone
  Process rtaker([rlock] {
    rlock.acquire();
    _exit(0);
  });
  rtaker.start();
  rtaker.join();
  EXPECT_THROW(rlock.release(), RuntimeError);
}

// A forked child does not keep its parent's connections open: when the parent dies, what
// it held comes free even though the child it forked lives on.
TEST(ManagerLock, ReleasedWhenHolderIsKilledWhileItsForkedChildLives) {
  Manager manager;
  auto lock = manager.lock();
  auto held = manager.event();
  auto* grandchild = static_cast<std::atomic<pid_t>*>(
      ::mmap(nullptr, sizeof(std::atomic<pid_t>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(grandchild, MAP_FAILED);
  new (grandchild) std::atomic<pid_t>(0);
  Process holder([lock, held, grandchild] {
    lock.acquire();
    pid_t child = ::fork();  // a child that never touches the manager
    if (child == 0) {
      ::pause();
      ::_exit(0);
    }
    grandchild->store(child);
    held.set();
    ::pause();
  });
  holder.start();
  ASSERT_TRUE(held.wait(seconds(10)));
  holder.kill();
  holder.join();
  EXPECT_TRUE(lock.acquire(true, seconds(5)));  // the server saw the holder's connection drop
  ::kill(grandchild->load(), SIGKILL);
  ::waitpid(grandchild->load(), nullptr, 0);
  ::munmap(grandchild, sizeof(std::atomic<pid_t>));
}

TEST(ManagerSemaphore, CountsAndBounds) {
  Manager manager;
  auto s = manager.semaphore(2);
  EXPECT_TRUE(s.acquire());
  EXPECT_TRUE(s.acquire());
  EXPECT_FALSE(s.acquire(false));
  s.release(2);
  EXPECT_EQ(s.value(), 2);
  s.release();  // an unbounded semaphore may go above its start
  EXPECT_EQ(s.value(), 3);

  auto b = manager.bounded_semaphore(1);
  EXPECT_TRUE(b.acquire());
  b.release();
  EXPECT_THROW(b.release(), ValueError);
  Process holder([b] {
    b.acquire();
    _exit(0);  // leaves without releasing
  });
  holder.start();
  holder.join();
  EXPECT_TRUE(b.acquire(true, seconds(5)));  // given back when its connection dropped
  b.release();
}

// A bounded semaphore acquired by a process that left may be released by another, as
// multiprocessing's: that release settles what the server gave back, once.
TEST(ManagerSemaphore, AcquiredByAProcessThatLeftAndReleasedByAnother) {
  Manager manager;
  auto b = manager.bounded_semaphore(1);
  Process taker([b] {
    b.acquire();
    _exit(0);
  });
  taker.start();
  taker.join();
  EXPECT_NO_THROW(b.release());
  EXPECT_EQ(b.value(), 1);
  EXPECT_THROW(b.release(), ValueError);
  EXPECT_TRUE(b.acquire(false));
  b.release();
}

TEST(ManagerEvent, WaitSetClear) {
  Manager manager;
  auto e = manager.event();
  EXPECT_FALSE(e.is_set());
  EXPECT_FALSE(e.wait(milliseconds(50)));
  Process setter([e] {
    std::this_thread::sleep_for(milliseconds(50));
    e.set();
  });
  setter.start();
  EXPECT_TRUE(e.wait(seconds(10)));
  setter.join();
  e.clear();
  EXPECT_FALSE(e.is_set());
}

TEST(ManagerCondition, WaitNotifyAcrossProcesses) {
  Manager manager;
  auto cond = manager.condition();
  auto state = manager.dict();
  state.set("ready", false);
  Process waiter([cond, state] {
    std::lock_guard guard(cond);
    bool ok = cond.wait_for([&] { return state["ready"].truthy(); }, seconds(10));
    if (!ok) _exit(3);
  });
  waiter.start();
  std::this_thread::sleep_for(milliseconds(100));
  {
    std::lock_guard guard(cond);
    state.set("ready", true);
    cond.notify_all();
  }
  waiter.join();
  EXPECT_EQ(waiter.exitcode(), 0);
  EXPECT_THROW(cond.notify(), RuntimeError);  // not holding the lock
  EXPECT_THROW(cond.wait(milliseconds(10)), RuntimeError);
  std::lock_guard guard(cond);
  EXPECT_FALSE(cond.wait(milliseconds(50)));  // nobody notifies: times out, lock held again
}

TEST(ManagerCondition, OverAnExistingLock) {
  Manager manager;
  auto lock = manager.lock();
  auto cond = manager.condition(lock);
  cond.acquire();
  EXPECT_TRUE(lock.locked());
  cond.release();
  EXPECT_FALSE(lock.locked());
}

TEST(ManagerBarrier, PartiesMeetAndBreak) {
  Manager manager;
  auto barrier = manager.barrier(3);
  EXPECT_EQ(barrier.parties(), 3u);
  std::vector<Process> parties;
  for (int i = 0; i < 2; ++i) {
    parties.emplace_back([barrier] { barrier.wait(seconds(10)); });
    parties.back().start();
  }
  uint32_t index = barrier.wait(seconds(10));
  EXPECT_LT(index, 3u);
  for (auto& p : parties) {
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
  }
  EXPECT_THROW(barrier.wait(milliseconds(50)), BrokenBarrierError);  // alone: times out, breaks
  EXPECT_TRUE(barrier.broken());
  EXPECT_THROW(barrier.wait(), BrokenBarrierError);
  barrier.reset();
  EXPECT_FALSE(barrier.broken());
  barrier.abort();
  EXPECT_TRUE(barrier.broken());
}

// ---- names, user types, async ---------------------------------------------------------

TEST(ManagerNames, SharedByNameAcrossUnrelatedConnections) {
  Manager manager;
  auto d = manager.dict(ValueMap{{"from", "parent"}}, "config");
  auto other = Manager::connect(manager.address(), manager.authkey());
  auto same = other.dict({}, "config");  // exists: initial is ignored
  EXPECT_EQ(same["from"], Value("parent"));
  EXPECT_EQ(same.id(), d.id());
  EXPECT_THROW(other.list({}, "config"), ValueError);
  EXPECT_EQ(other.names(), std::vector<std::string>{"config"});
  other.unregister("config");
  EXPECT_TRUE(other.names().empty());
  EXPECT_THROW(other.unregister("config"), KeyError);
  EXPECT_EQ(d["from"], Value("parent"));  // still held by proxies
}

TEST(ManagerUserTypes, DynamicObjectsTakeConstructorArgumentsAndMethodsByName) {
  ManagerOptions options;
  options.types.add_with_arguments<schema::Dynamic>("Tally", [](const CreateArguments& arguments) {
    int64_t start = arguments.args.size() > 0 ? Value::from_capnp(arguments.args[0]).as_int() : 0;
    return schema::Dynamic::Client(kj::heap<TallyImpl>(start));
  });
  options.types.add<Counter>("Counter", [] { return Counter::Client(kj::heap<CounterImpl>()); });
  Manager manager(options);

  auto tally = manager.create_dynamic("Tally", {10});
  EXPECT_EQ(tally.call("add", {1, 2}), Value(13));
  EXPECT_EQ(tally.call("add", {}, ValueMap{{"y", 7}}), Value(20));
  EXPECT_EQ(tally.exposed(), std::vector<std::string>{"add"});
  EXPECT_THROW(tally.call("nope"), AttributeError);
  EXPECT_THROW(tally.call_for_object("add", {1}), TypeError);  // it returns a Value
  EXPECT_EQ(run_in_child([&] {                                 // from a forked child's connection
              if (tally.call("add", {1}) != Value(22)) _exit(2);
            }),
            0);
  auto named = manager.create_dynamic("Tally", {}, {}, "shared");
  EXPECT_EQ(manager.create_dynamic("Tally", {5}, {}, "shared").id(), named.id());  // exists: arguments unused

  // A type without arguments refuses them; a type of another interface is refused.
  EXPECT_THROW(rpc::create_user_object(manager.endpoint(), "Counter", {}, capnp::typeId<Counter>(), {1}, {}),
               TypeError);
  EXPECT_THROW(manager.create_dynamic("Counter"), TypeError);
  EXPECT_THROW(manager.create_dynamic("Nope"), KeyError);
}

TEST(ManagerUserTypes, RegisteredFactoryAndPublishedObject) {
  ManagerOptions options;
  options.types.add<Counter>("Counter", [] { return Counter::Client(kj::heap<CounterImpl>()); });
  Manager manager(options);
  auto counter = manager.create<Counter>("Counter");
  auto request = counter.client().incrementRequest();
  request.setBy(5);
  EXPECT_EQ(manager.wait(request.send()).getValue(), 5);
  EXPECT_THROW(manager.create<Counter>("Nope"), KeyError);

  auto shared = manager.create<Counter>("Counter", "shared");
  EXPECT_EQ(run_in_child([&] {
              auto c = manager.lookup<Counter>("shared");
              auto r = c.client().incrementRequest();
              r.setBy(2);
              if (manager.wait(r.send()).getValue() != 2) _exit(2);
            }),
            0);
  EXPECT_EQ(manager.wait(shared.client().valueRequest().send()).getValue(), 2);

  // A client's own object, published: other clients' calls come back to it.
  std::atomic<bool> published{false};
  std::atomic<bool> done{false};
  std::thread host([&] {
    auto& scope = manager.wait_scope();
    manager.publish<Counter>("hosted", Counter::Client(kj::heap<CounterImpl>()));
    published = true;
    while (!done) scope.poll(), std::this_thread::sleep_for(milliseconds(1));
  });
  while (!published) std::this_thread::sleep_for(milliseconds(1));
  auto hosted = manager.lookup<Counter>("hosted");
  auto r = hosted.client().incrementRequest();
  r.setBy(7);
  EXPECT_EQ(manager.wait(r.send()).getValue(), 7);
  EXPECT_THROW(manager.lookup<Counter>("nothing"), KeyError);
  done = true;
  host.join();
}

TEST(ManagerAsync, PipelinedRequestsOnThisThreadsLoop) {
  Manager manager;
  auto d = manager.dict();
  auto dict = d.client();
  kj::Vector<kj::Promise<void>> sends;
  for (int i = 0; i < 100; ++i) {
    auto request = dict.setItemRequest();
    Value(i).to_capnp(request.initKey());
    Value(i * i).to_capnp(request.initValue());
    sends.add(request.send().ignoreResult());
  }
  kj::joinPromises(sends.releaseAsArray()).wait(manager.wait_scope());
  EXPECT_EQ(d.size(), 100u);
  EXPECT_EQ(d[9], Value(81));
}

// ---- threads, children, many clients ------------------------------------------------

TEST(ManagerProxies, UsableFromManyThreads) {
  Manager manager;
  auto d = manager.dict();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([d] {
      for (int k = 0; k < 100; ++k) d.increment("n");
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(d["n"], Value(400));
}

TEST(ManagerProxies, TwoHundredClientProcessesAtOnce) {
  Manager manager;
  auto d = manager.dict();
  auto l = manager.list();
  std::vector<Process> clients;
  for (int i = 0; i < 200; ++i) {
    clients.emplace_back([d, l, i] {
      d.increment("clients");
      l.append(i);
    });
    clients.back().start();
  }
  int failed = 0;
  for (auto& c : clients) {
    c.join();
    failed += c.exitcode() != 0;
  }
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(d["clients"], Value(200));
  EXPECT_EQ(l.size(), 200u);
}

TEST(ManagerProxies, PrintedAsThePythonRepr) {
  Manager manager;
  auto d = manager.dict(ValueMap{{"k", Value::list({1, "x"})}});
  std::ostringstream out;
  out << d;
  EXPECT_EQ(out.str(), "{'k': [1, 'x']}");
}

// ---- failures ------------------------------------------------------------------------

// ---- proxies inside containers --------------------------------------------------------

TEST(ManagerNesting, AProxyInAContainerHoldsItsObjectAndComesBackAsItsId) {
  Manager manager;
  auto outer = manager.dict();
  uint64_t inner_id = 0;
  {
    auto inner = manager.list({1, 2});
    inner_id = inner.id();
    outer.set("inner", inner.as_value());
  }  // no proxy holds the list now: the dict does
  Value stored = outer["inner"];
  ASSERT_TRUE(stored.is_proxy());
  EXPECT_EQ(stored.as_proxy().manager, manager.instance());
  EXPECT_EQ(stored.as_proxy().id, inner_id);
  auto attached = manager.attach_held(inner_id);
  EXPECT_EQ(attached.kind, schema::Kind::LIST);
  ListProxy again(attached.ref);
  again.append(3);
  outer.clear();  // now only `again` holds it
  EXPECT_EQ(again.size(), 3u);
  EXPECT_EQ(again.repr(), "[1, 2, 3]");
}

TEST(ManagerNesting, ProxiesOfAnotherServerOrOfGoneObjectsAreRefusedAndStoreNothing) {
  Manager manager;
  Manager other;
  EXPECT_NE(manager.instance(), other.instance());
  auto d = manager.dict();
  auto foreign = other.dict();  // its id may well be one of `manager`'s ids too
  EXPECT_THROW(d.set("x", Value::list({foreign.as_value()})), ValueError);
  EXPECT_THROW(d.set("x", Value(ProxyRef{manager.instance(), 999999, nullptr})), KeyError);
  EXPECT_THROW(manager.attach_held(999999), KeyError);
  EXPECT_EQ(d.size(), 0u);
  // Looked up, a proxy is only its numbers: a gone object is simply not there.
  const Value gone = ProxyRef{manager.instance(), 999999, nullptr};
  EXPECT_FALSE(d.contains(gone));
  EXPECT_EQ(d.get(gone, "absent"), Value("absent"));
  auto l = manager.list({1});
  EXPECT_EQ(l.count(gone), 0u);
  d.set("x", 1);
  EXPECT_EQ(d["x"], Value(1));
}

TEST(ManagerNesting, ContainersHoldingEachOtherAndThemselvesEndWithTheServer) {
  Manager manager;
  auto a = manager.list();
  auto b = manager.dict();
  a.append(a.as_value());  // multiprocessing allows it; the server breaks the cycle when it stops
  a.append(b.as_value());
  b.set("a", a.as_value());
  EXPECT_EQ(a.repr(),
            "[<proxy of object " + std::to_string(a.id()) + ">, <proxy of object " + std::to_string(b.id()) + ">]");
  manager.shutdown();
}

TEST(ManagerFailures, WrongAuthkey) {
  Manager manager;
  EXPECT_THROW(Manager::connect(manager.address(), "wrong key"), AuthenticationError);
  EXPECT_THROW(Manager::connect(manager.address(), std::nullopt), AuthenticationError);
  auto good = Manager::connect(manager.address(), manager.authkey());
  EXPECT_EQ(good.dict().size(), 0u);
}

TEST(ManagerFailures, NobodyListening) {
  EXPECT_THROW(Manager::connect("unix:/nonexistent/xproc.sock", "k"), ConnectionError);
  EXPECT_THROW(ManagerServer(ServerOptions{.address = "tcp:127.0.0.1:0"}), ValueError);  // TCP needs a key
}

TEST(ManagerFailures, CallsAfterShutdownFailFast) {
  Manager manager;
  auto d = manager.dict();
  d.set("a", 1);
  manager.shutdown();
  auto started = Clock::now();
  EXPECT_THROW(d["a"], ConnectionError);
  EXPECT_THROW(d.set("a", 2), ConnectionError);
  EXPECT_LT(Clock::now() - started, seconds(1));
}

TEST(ManagerFailures, ServerKilledMidCall) {
  Manager manager;
  auto q = manager.queue();
  auto e = manager.event();
  auto started = Clock::now();
  std::thread killer([&] {
    std::this_thread::sleep_for(milliseconds(100));
    ::kill(manager.pid(), SIGKILL);
  });
  EXPECT_THROW(q.get(), ConnectionError);  // blocked in the server when it died
  killer.join();
  EXPECT_LT(Clock::now() - started, seconds(2));
  started = Clock::now();
  EXPECT_THROW(e.set(), ConnectionError);
  EXPECT_LT(Clock::now() - started, seconds(1));
}

// Bytes that are not Cap'n Proto RPC: the server drops that connection and serves the rest.
TEST(ManagerFailures, MalformedInputLeavesTheServerServing) {
  Manager manager;
  auto d = manager.dict();
  std::string path = manager.address();
  if (path.starts_with("unix:")) path = path.substr(5);
  const std::vector<std::string> garbage = {
      std::string("\xff\xff\xff\xff garbage", 13),
      // One segment of two words holding a struct pointer far outside it.
      std::string("\x00\x00\x00\x00\x02\x00\x00\x00"
                  "\xf0\xff\xff\x0f\x01\x00\x01\x00"
                  "\x00\x00\x00\x00\x00\x00\x00\x00",
                  24),
      std::string("\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00", 12),  // truncated
      std::string(4096, '\x7f')};
  for (const auto& bytes : garbage) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    ::shutdown(fd, SHUT_WR);  // a truncated message then ends the stream
    timeval patience{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof(patience));
    char sink[256];
    while (::read(fd, sink, sizeof(sink)) > 0) {
    }  // the server answers with an abort and closes
    ::close(fd);
  }
  d.set("still", "serving");
  EXPECT_EQ(d["still"], Value("serving"));
}

TEST(ManagerFailures, ObjectGoneWhenEveryHolderReleasedIt) {
  Manager manager;
  auto keep = manager.dict();
  uint64_t id = 0;
  {
    auto d = manager.dict();
    id = d.id();
    auto copy = d;  // copies share one reference
    copy.set("x", 1);
  }
  EXPECT_EQ(keep.size(), 0u);  // a round trip after the release went out
  auto request = manager.client().objectRequest();
  request.setId(id);
  EXPECT_THROW(manager.wait(request.send()), KeyError);
  auto again = manager.client().objectRequest();
  again.setId(keep.id());
  EXPECT_EQ(manager.wait(again.send()).getKind(), schema::Kind::DICT);
}

TEST(ManagerFailures, BadArgumentsAreTypedErrorsAndChangeNothing) {
  ManagerOptions options;
  options.types.add<Counter>("Counter", [] { return Counter::Client(kj::heap<CounterImpl>()); });
  Manager manager(options);
  EXPECT_THROW(manager.semaphore(-1), ValueError);
  EXPECT_THROW(manager.barrier(0), ValueError);
  auto d = manager.dict({}, "d");
  EXPECT_THROW(manager.lookup<Counter>("d"), TypeError);  // a dict, not a Counter

  auto condition = manager.client().conditionRequest();
  condition.setLock(d.id());  // not a lock
  EXPECT_THROW(manager.wait(condition.send()), TypeError);
  auto orphan = manager.client().conditionRequest();
  orphan.setLock(999999);  // no such object
  EXPECT_THROW(manager.wait(orphan.send()), KeyError);
  auto not_a_map = manager.client().dictRequest();
  not_a_map.initInitial().setInt64(5);
  EXPECT_THROW(manager.wait(not_a_map.send()), TypeError);

  manager.wait_scope();  // publish needs this thread's loop to exist
  EXPECT_THROW(manager.publish<Counter>("", Counter::Client(kj::heap<CounterImpl>())), ValueError);
  EXPECT_THROW(manager.publish<Counter>("d", Counter::Client(kj::heap<CounterImpl>())), ValueError);
  EXPECT_EQ(manager.names(), std::vector<std::string>{"d"});
  d.set("still", "works");
  EXPECT_EQ(d["still"], Value("works"));
}

}  // namespace
}  // namespace xproc
