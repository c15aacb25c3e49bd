// _xproc._nats: xproc::nats's connection, queue and dict taking Python objects, for the
// xproc.nats package module. A private submodule, present only in builds with libnats
// (XPROC_HAVE_NATS), so that the rest of the extension and its stub are the same in every
// build; xproc.nats raises ImportError when it is absent.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include <capnp/common.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bindings.h"
#include "blocking.h"
#include "message_codec.h"
#include "python_values.h"
#include "xproc/errors.h"
#include "xproc/nats/connection.h"
#include "xproc/nats/dict.h"
#include "xproc/nats/queue.h"

namespace xproc::python {
namespace {

// Called by xproc::nats's waits, without the GIL, at least every 100 ms.
void raise_pending_signal() {
  nb::gil_scoped_acquire locked;
  check_signals();
}

// Python's timeout in seconds; a negative one counts as 0, as multiprocessing's queues take it.
Timeout timeout_of(std::optional<double> seconds) {
  if (!seconds) return std::nullopt;
  return std::chrono::duration<double>(std::max(0.0, *seconds));
}

std::chrono::milliseconds milliseconds_of(double seconds, const char* what) {
  if (!std::isfinite(seconds) || seconds <= 0) {
    throw ValueError(std::string(what) + " must be a positive number of seconds, not " + std::to_string(seconds));
  }
  return std::chrono::milliseconds(std::max<int64_t>(1, std::llround(seconds * 1000)));
}

struct PythonNatsConnection {
  std::shared_ptr<nats::Connection> connection;
};

// The stream is held through a shared_ptr that each call copies before it lets the GIL go:
// close() from another thread then ends this handle's use of it without pulling it from
// under a get that is waiting (which finishes, and the stream goes with it).
struct PythonNatsQueue {
  std::shared_ptr<nats::StreamQueue> stream;
  MessageCodec codec;
  size_t maxsize = 0;

  std::shared_ptr<nats::StreamQueue> open() const {
    if (!stream) throw ValueError("the queue is closed");
    return stream;
  }
};

struct PythonNatsDict {
  std::shared_ptr<nats::Dict> dict;
};

}  // namespace

void register_nats(nb::module_& m) {
  nats::set_wait_interrupt_check(&raise_pending_signal);
  nb::module_ sub = m.def_submodule("_nats", "xproc::nats (use xproc.nats, not this module)");

  nb::class_<PythonNatsConnection>(sub, "Connection", "A connection to NATS (the engine under xproc.nats.Connection).")
      .def(
          "__init__",
          [](PythonNatsConnection* self, std::vector<std::string> servers, std::string user, std::string password,
             std::string token, std::string credentials, std::string ca, std::string cert, std::string key,
             double connect_timeout, std::string name) {
            nats::Options options;
            options.servers = std::move(servers);
            options.user = std::move(user);
            options.password = std::move(password);
            options.token = std::move(token);
            options.credentials_file = std::move(credentials);
            options.ca_file = std::move(ca);
            options.cert_file = std::move(cert);
            options.key_file = std::move(key);
            options.connect_timeout = milliseconds_of(connect_timeout, "connect_timeout");
            options.name = std::move(name);
            auto connection = without_gil([&] { return nats::connect(options); });
            new (self) PythonNatsConnection{std::move(connection)};
          },
          nb::arg("servers"), nb::arg("user") = "", nb::arg("password") = "", nb::arg("token") = "",
          nb::arg("credentials") = "", nb::arg("ca") = "", nb::arg("cert") = "", nb::arg("key") = "",
          nb::arg("connect_timeout") = 2.0, nb::arg("name") = "xproc",
          "Connects (ConnectionError, AuthenticationError, ValueError as xproc::nats::connect).")
      .def_prop_ro(
          "servers", [](const PythonNatsConnection& self) { return self.connection->options().servers; },
          "The servers given, in the order tried.");

  nb::class_<PythonNatsQueue>(sub, "Queue", "A JetStream work queue of xproc Values (xproc::nats::StreamQueue).")
      .def(
          "__init__",
          [](PythonNatsQueue* self, const PythonNatsConnection& connection, std::string name, size_t maxsize,
             int replicas, std::string subject, double ack_wait, bool acknowledge_on_get) {
            const nats::QueueOptions options{
                .maxsize = maxsize,
                .replicas = replicas,
                .subject = std::move(subject),
                .ack_wait = milliseconds_of(ack_wait, "ack_wait"),
                .acknowledge = acknowledge_on_get ? nats::Acknowledge::kOnGet : nats::Acknowledge::kOnTaskDone};
            const uint64_t schema_id = MessageCodec::value_schema_id();
            auto stream = without_gil([&] {
              return std::make_shared<nats::StreamQueue>(connection.connection, std::move(name), schema_id, options);
            });
            new (self) PythonNatsQueue{std::move(stream), MessageCodec(schema_id), maxsize};
          },
          nb::arg("connection"), nb::arg("name"), nb::arg("maxsize") = 0, nb::arg("replicas") = 1,
          nb::arg("subject") = "", nb::arg("ack_wait") = 30.0, nb::arg("acknowledge_on_get") = false,
          "Binds to the queue `name`, creating its stream and consumer when absent.")
      .def(
          "put",
          [](PythonNatsQueue& self, AnyObject object, bool block, std::optional<double> timeout) {
            auto stream = self.open();
            std::vector<capnp::word> words;
            {
              EncodedMessage message;
              self.codec.encode(object, message);
              words.resize(message.size() / sizeof(capnp::word));
              message.write_to(reinterpret_cast<std::byte*>(words.data()));
            }
            without_gil([&] { stream->put_bytes(std::as_bytes(std::span(words)), block, timeout_of(timeout)); });
          },
          nb::arg("obj"), nb::arg("block") = true, nb::arg("timeout") = nb::none(),
          "Puts `obj` once the stream stored it; queue.Full when full past the deadline.")
      .def(
          "get",
          [](PythonNatsQueue& self, bool block, std::optional<double> timeout) {
            auto stream = self.open();
            auto message = without_gil([&] { return stream->get_bytes(block, timeout_of(timeout)); });
            if (!message) throw Empty();
            return self.codec.decode(*message);
          },
          nb::arg("block") = true, nb::arg("timeout") = nb::none(),
          "The oldest message not delivered elsewhere; queue.Empty at the deadline.")
      .def(
          "task_done",
          [](PythonNatsQueue& self) {
            auto stream = self.open();
            without_gil([&] { stream->task_done(); });
          },
          "Acknowledges the oldest message got here and not yet acknowledged.")
      .def(
          "join",
          [](PythonNatsQueue& self, std::optional<double> timeout) {
            auto stream = self.open();
            without_gil([&] { stream->join(timeout_of(timeout)); });
          },
          nb::arg("timeout") = nb::none(), "Waits until the stream holds no message; TimeoutError at the deadline.")
      .def(
          "qsize",
          [](PythonNatsQueue& self) {
            auto stream = self.open();
            return without_gil([&] { return stream->qsize(); });
          },
          "Messages in the stream now, delivered-but-unacknowledged ones included.")
      .def(
          "close", [](PythonNatsQueue& self) { self.stream.reset(); },
          "Lets go of the stream: messages got and not acknowledged are delivered again at once.")
      .def_prop_ro(
          "closed", [](const PythonNatsQueue& self) { return !self.stream; }, "Whether close() was called.")
      .def_prop_ro(
          "maxsize", [](const PythonNatsQueue& self) { return self.maxsize; }, "The bound given (0: none).");

  nb::class_<PythonNatsDict>(sub, "Dict", "A JetStream key-value bucket of xproc Values (xproc::nats::Dict).")
      .def(
          "__init__",
          [](PythonNatsDict* self, const PythonNatsConnection& connection, std::string name, int replicas) {
            auto dict = without_gil([&] {
              return std::make_shared<nats::Dict>(connection.connection, std::move(name),
                                                  nats::DictOptions{.replicas = replicas});
            });
            new (self) PythonNatsDict{std::move(dict)};
          },
          nb::arg("connection"), nb::arg("name"), nb::arg("replicas") = 1,
          "Binds to the bucket `name`, creating it when absent.")
      .def(
          "get",
          [](const PythonNatsDict& self, std::string_view key, nb::object otherwise) {
            auto value = without_gil([&] { return self.dict->get(key); });
            return value ? from_value(*value) : otherwise;
          },
          nb::arg("key"), nb::arg("otherwise").none(), "The value under `key`, or `otherwise` when absent.")
      .def(
          "at",
          [](const PythonNatsDict& self, std::string_view key) {
            auto value = without_gil([&] { return self.dict->at(key); });
            return from_value(value);
          },
          nb::arg("key"), "The value under `key`; KeyError when absent.")
      .def(
          "entry",
          [](const PythonNatsDict& self, std::string_view key) -> nb::object {
            auto entry = without_gil([&] { return self.dict->entry(key); });
            if (!entry) return nb::none();
            return nb::make_tuple(from_value(entry->value), entry->revision);
          },
          nb::arg("key"), "(value, revision) under `key`, or None when absent.")
      .def(
          "contains",
          [](const PythonNatsDict& self, std::string_view key) {
            return without_gil([&] { return self.dict->contains(key); });
          },
          nb::arg("key"), "Whether `key` is present.")
      .def(
          "set",
          [](PythonNatsDict& self, std::string_view key, AnyObject value) {
            const Value stored = to_value(value);
            return without_gil([&] { return self.dict->set(key, stored); });
          },
          nb::arg("key"), nb::arg("value"), "Stores `value` under `key` and returns its revision.")
      .def(
          "erase", [](PythonNatsDict& self, std::string_view key) { without_gil([&] { self.dict->erase(key); }); },
          nb::arg("key"), "Deletes `key`; KeyError when absent.")
      .def(
          "keys", [](const PythonNatsDict& self) { return without_gil([&] { return self.dict->keys(); }); },
          "The keys present now, in no particular order.")
      .def(
          "compare_and_set",
          [](PythonNatsDict& self, std::string_view key, AnyObject value, uint64_t revision) {
            const Value stored = to_value(value);
            return without_gil([&] { return self.dict->compare_and_set(key, stored, revision); });
          },
          nb::arg("key"), nb::arg("value"), nb::arg("revision"),
          "Stores `value` if the key's revision is `revision` (0: absent); False when it is not.")
      .def(
          "increment",
          [](PythonNatsDict& self, std::string_view key, int64_t by) {
            return without_gil([&] { return self.dict->increment(key, by); });
          },
          nb::arg("key"), nb::arg("by") = 1, "Adds `by` to the int under `key` (absent: 0), atomically.");
}

}  // namespace xproc::python
