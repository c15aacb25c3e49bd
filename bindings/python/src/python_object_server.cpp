// _xproc.PythonObjectServer: a Manager server (manager_server.h) whose registered types
// are Python callables, run by this interpreter: xproc.managers.BaseManager.register's
// server side. Every Manager object is served as always; an object of a registered type
// answers manager.capnp's Dynamic interface, each call running the Python method on a
// worker thread (call_workers.h) with the GIL, so that a method may wait while the
// server's loop goes on serving (it waits a moment for a method that answers at once).
//
// The policy is Python's (xproc/_object_server.py): the `registry` object given here
// makes a handler for each new object, `registry.create(typeid, args, kwargs)`, whose
// `call(method, args, kwargs)` runs a method (answering a `registry.Shared` for a result
// that becomes a shared object) and whose `exposed` names them; and
// `registry.describe(exception)` gives the (name, message) a failure travels under.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <capnp/message.h>
#include <kj/async.h>

#include "bindings.h"
#include "call_workers.h"
#include "python_values.h"
#include "xproc/errors.h"
#include "xproc/manager.capnp.h"
#include "xproc/manager_server.h"
#include "xproc/rpc/remote_error.h"
#include "xproc/rpc/server_core.h"

namespace xproc::python {
namespace {

// A Python object held from C++ threads that may not hold the GIL: it is released with
// the GIL taken, wherever the last reference goes.
struct HeldObject {
  nb::object object;
  explicit HeldObject(nb::object o) : object(std::move(o)) {}
  HeldObject(const HeldObject&) = delete;
  HeldObject& operator=(const HeldObject&) = delete;
  ~HeldObject() {
    if (!Py_IsInitialized()) {
      (void)object.release();  // the interpreter is gone: nothing left to release into
      return;
    }
    nb::gil_scoped_acquire locked;
    object.reset();
  }
};

// The Python side's policy (see the file's comment), shared by every object served.
struct Registry {
  std::shared_ptr<HeldObject> python;
  // What Handler.call answers for a method that returns a shared object (Registry.Shared,
  // a class the registry keeps alive).
  PyTypeObject* shared_type;
  CallWorkers workers;
  Registry(nb::object registry, size_t max_threads, std::chrono::microseconds spin)
      : python(std::make_shared<HeldObject>(std::move(registry))),
        shared_type(reinterpret_cast<PyTypeObject*>(nb::object(python->object.attr("Shared")).ptr())),
        workers(max_threads, spin, keep_thread_state, drop_thread_state) {}

  // A worker's Python thread state, made when it starts and kept until it stops: every
  // call then takes only the GIL (PyGILState_Ensure otherwise makes and frees a thread
  // state, and its frame stack, each time).
  static thread_local inline PyGILState_STATE outer_state = PyGILState_UNLOCKED;
  static void keep_thread_state() {
    outer_state = PyGILState_Ensure();
    PyEval_SaveThread();
  }
  static void drop_thread_state() {
    if (!Py_IsInitialized()) return;
    PyEval_RestoreThread(PyGILState_GetThisThreadState());
    PyGILState_Release(outer_state);
  }

  // The failure a Python exception travels as. Call with the GIL held.
  kj::Exception failure(nb::python_error& error) const {
    try {
      nb::tuple described = nb::cast<nb::tuple>(python->object.attr("describe")(error.value()));
      return rpc::remote_error(nb::cast<std::string>(described[0]), nb::cast<std::string>(described[1]));
    } catch (const nb::python_error& inner) {
      return rpc::remote_error("RuntimeError", std::string("the error could not be described: ") + inner.what());
    }
  }
};

nb::tuple python_args(capnp::List<schema::Value>::Reader args) {
  nb::list out;
  for (auto arg : args) out.append(read_value(arg));
  return nb::tuple(out);
}

nb::dict python_kwargs(capnp::List<schema::Value::Entry>::Reader kwargs) {
  nb::dict out;
  for (auto entry : kwargs) {
    nb::object key = read_value(entry.getKey(), true);
    if (!nb::isinstance<nb::str>(key)) throw TypeError("keyword argument names must be text");
    out[key] = read_value(entry.getValue());
  }
  return out;
}

// How long the loop waits for a call's worker before it goes back to serving: most methods
// answer within it, and their reply then leaves without a cross-thread wake-up.
constexpr std::chrono::microseconds kAwaitWorker{50};

// One call on its way through a worker: its parameters (copied off the RPC message, which
// the loop thread owns) and its result or failure. The loop waits for it up to
// kAwaitWorker; past that it detaches, and the worker hands the result back through
// `done` instead.
struct PendingCall {
  enum State : int { kRunning, kFinished, kDetached };
  capnp::MallocMessageBuilder params;
  capnp::MallocMessageBuilder result;
  kj::Maybe<kj::Exception> failure;
  std::atomic<int> state{kRunning};
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> done;

  // The worker's side: true if the loop is still waiting (it takes the result itself).
  bool finish() {
    int running = kRunning;
    return state.compare_exchange_strong(running, kFinished, std::memory_order_acq_rel);
  }
  // The loop's side: waits up to `budget`; true if the result is in, false once detached.
  bool await(std::chrono::microseconds budget) {
    const auto until = std::chrono::steady_clock::now() + budget;
    while (state.load(std::memory_order_acquire) == kRunning && std::chrono::steady_clock::now() < until) {
      std::this_thread::yield();
    }
    int running = kRunning;
    return !state.compare_exchange_strong(running, kDetached, std::memory_order_acq_rel);
  }
};

class PythonDynamic final : public schema::Dynamic::Server {
 public:
  PythonDynamic(std::shared_ptr<Registry> registry, std::shared_ptr<HeldObject> handler)
      : registry_(std::move(registry)), handler_(std::move(handler)) {}

  kj::Promise<void> call(CallContext context) override {
    // Counted, as the Manager's own objects' calls are, so that the server keeps polling
    // its connections while calls keep coming instead of sleeping between them.
    rpc::count_call();
    auto pending = std::make_shared<PendingCall>();
    pending->params.setRoot(context.getParams());
    context.releaseParams();
    auto reply = kj::newPromiseAndCrossThreadFulfiller<void>();
    pending->done = kj::mv(reply.fulfiller);
    registry_->workers.run([pending, handler = handler_, registry = registry_] {
      {
        nb::gil_scoped_acquire locked;
        try {
          auto params = pending->params.getRoot<schema::Dynamic::CallParams>();
          nb::object result = handler->object.attr("call")(
              nb::str(params.getMethod().cStr()), python_args(params.getArgs()), python_kwargs(params.getKwargs()));
          auto results = pending->result.initRoot<schema::Dynamic::CallResults>();
          if (Py_TYPE(result.ptr()) == registry->shared_type) {
            results.setSharedAs(nb::cast<std::string>(result.attr("typeid")));
            write_value(result.attr("claim"), results.initResult());
          } else {
            write_value(result, results.initResult());
          }
        } catch (nb::python_error& error) {
          pending->failure = registry->failure(error);
        } catch (...) {
          pending->failure = rpc::to_remote(std::current_exception());
        }
      }
      if (!pending->finish()) pending->done->fulfill();  // the loop went on: wake it
    });
    auto answer = [pending, context]() mutable {
      rpc::count_call();  // the reply goes out now: the caller's next call comes soon
      KJ_IF_MAYBE (failure, pending->failure) kj::throwFatalException(kj::mv(*failure));
      context.setResults(pending->result.getRoot<schema::Dynamic::CallResults>());
    };
    if (pending->await(kAwaitWorker)) {
      answer();
      return kj::READY_NOW;
    }
    return reply.promise.then(kj::mv(answer));
  }

  kj::Promise<void> exposed(ExposedContext context) override {
    nb::gil_scoped_acquire locked;
    try {
      std::vector<std::string> names;
      for (nb::handle name : handler_->object.attr("exposed")) names.push_back(nb::cast<std::string>(name));
      auto out = context.getResults().initMethods(static_cast<unsigned>(names.size()));
      for (size_t i = 0; i < names.size(); ++i) out.set(static_cast<unsigned>(i), names[i]);
    } catch (nb::python_error& error) {
      kj::throwFatalException(registry_->failure(error));
    }
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<Registry> registry_;
  std::shared_ptr<HeldObject> handler_;
};

// What a registered type's objects are made by: registry.create(typeid, args, kwargs), on
// the server's loop (a constructor that takes long holds the server up meanwhile).
schema::Dynamic::Client make_object(const std::shared_ptr<Registry>& registry, const std::string& typeid_,
                                    const CreateArguments& arguments) {
  nb::gil_scoped_acquire locked;
  try {
    nb::object handler = registry->python->object.attr("create")(nb::str(typeid_.c_str()), python_args(arguments.args),
                                                                 python_kwargs(arguments.kwargs));
    return kj::heap<PythonDynamic>(registry, std::make_shared<HeldObject>(std::move(handler)));
  } catch (nb::python_error& error) {
    kj::throwFatalException(registry->failure(error));
  }
}

class PythonObjectServer {
 public:
  PythonObjectServer(std::string address, std::optional<nb::bytes> authkey, nb::object registry,
                     const std::vector<std::string>& typeids, size_t max_threads)
      : registry_(std::make_shared<Registry>(std::move(registry), max_threads, std::chrono::microseconds(50))) {
    ServerOptions options;
    options.address = std::move(address);
    options.authkey = authkey_string(authkey);
    for (const auto& typeid_ : typeids) {
      options.types.add_with_arguments<schema::Dynamic>(
          typeid_, [registry = registry_, typeid_](const CreateArguments& arguments) {
            return make_object(registry, typeid_, arguments);
          });
    }
    server_.emplace(std::move(options));
  }

  const std::string& address() const { return server_->address(); }
  void close() { server_->close_unserved(); }

  // Until a client calls the Manager's shutdown; the GIL is released meanwhile.
  void serve_forever() {
    nb::gil_scoped_release unlocked;
    server_->serve_forever();
  }

 private:
  std::shared_ptr<Registry> registry_;
  std::optional<ManagerServer> server_;
};

}  // namespace

void register_object_server(nb::module_& m) {
  nb::class_<PythonObjectServer>(m, "PythonObjectServer",
                                 "A Manager server whose registered types are Python callables (BaseManager's server).")
      .def(nb::init<std::string, std::optional<nb::bytes>, nb::object, const std::vector<std::string>&, size_t>(),
           nb::arg("address"), nb::arg("authkey").none(), nb::arg("registry"), nb::arg("typeids"),
           nb::arg("max_threads") = 256,
           "Binds `address` now. `registry` makes each object's handler (create(typeid, args, kwargs)) and "
           "names failures (describe(exception) -> (name, message)); at most `max_threads` methods run at once.")
      .def_prop_ro("address", &PythonObjectServer::address)
      .def("close", &PythonObjectServer::close, "Closes the listening socket without serving.")
      .def("serve_forever", &PythonObjectServer::serve_forever, "Serves until a client calls the Manager's shutdown.");
  m.def(
      "exit_with_parent",
      [](int parent) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(0);  // it died before prctl took effect
      },
      nb::arg("parent"), "This process is killed when the thread that started it, in process `parent`, ends.");
}

}  // namespace xproc::python
