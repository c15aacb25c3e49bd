// _xproc.Queue: a ByteQueue (shared-memory ring) that takes and returns Python objects.
// The xproc package's Queue, SimpleQueue and JoinableQueue derive from it in Python.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>

#include <memory>
#include <vector>

#include "bindings.h"
#include "blocking.h"
#include "held_record.h"
#include "message_codec.h"
#include "message_view.h"
#include "xproc/byte_queue.h"
#include "xproc/errors.h"
#include "xproc/queue_waiter.h"

namespace xproc::python {
namespace {

struct PythonQueue {
  ByteQueue queue;
  MessageCodec codec;
  // The records of get_view calls still held (by their blocks, or by arrays made from
  // their views). Only touched with the GIL held.
  std::vector<std::weak_ptr<HeldRecord>> held;
};

// A get in the thread that holds a record of this queue would wait for itself: the
// record is released only when that thread ends its get_view block (or drops the arrays
// made from it). RuntimeError instead of that deadlock; other threads and processes wait.
void refuse_get_while_held_here(PythonQueue& self) {
  std::erase_if(self.held, [](const std::weak_ptr<HeldRecord>& record) { return record.expired(); });
  for (const auto& weak : self.held) {
    auto record = weak.lock();
    if (record && record->taken_by_this_thread()) {
      throw RuntimeError(
          "this thread holds a message of this queue from get_view (its block has not ended, or arrays "
          "made from its views are alive): another get would wait for it forever");
    }
  }
}

Sharing sharing_for(unsigned mode, std::optional<uid_t> owner, std::optional<gid_t> group) {
  return Sharing{.mode = mode, .owner = owner, .group = group};
}

void put_encoded(PythonQueue& self, const EncodedMessage& message, bool block, std::optional<double> timeout) {
  const size_t size = message.size();
  auto fill = [&](std::byte* out) { message.write_to(out); };
  if (!wait_in_slices(SlicedWait(block, timeout),
                      [&](Timeout slice) { return self.queue.put_in_place(size, fill, true, slice); })) {
    throw Full();
  }
}

std::vector<std::byte> get_message(PythonQueue& self, const SlicedWait& deadline) {
  std::optional<std::vector<std::byte>> message;
  if (!wait_in_slices(deadline, [&](Timeout slice) {
        message = self.queue.try_get_bytes(slice);
        return message.has_value();
      })) {
    throw Empty();
  }
  return std::move(*message);
}

}  // namespace

void register_queues(nb::module_& m) {
  nb::class_<PythonQueue>(m, "Queue", "A queue of messages in shared memory (the engine under xproc.Queue).")
      .def(
          "__init__",
          [](PythonQueue* self, size_t maxsize, size_t capacity_bytes, size_t max_message_bytes, uint32_t kind,
             uint64_t schema_id, std::optional<std::string_view> name, unsigned mode, std::optional<gid_t> group) {
            const QueueOptions options{.maxsize = maxsize,
                                       .capacity_bytes = capacity_bytes,
                                       .max_message_bytes = max_message_bytes,
                                       .sharing = sharing_for(mode, std::nullopt, group)};
            auto queue_kind = static_cast<detail::QueueKind>(kind);
            new (self) PythonQueue{name ? ByteQueue::create(*name, options, schema_id, queue_kind)
                                        : ByteQueue(options, schema_id, queue_kind),
                                   MessageCodec(schema_id)};
          },
          nb::arg("maxsize") = 0, nb::arg("capacity_bytes") = QueueOptions{}.capacity_bytes,
          nb::arg("max_message_bytes") = 0, nb::arg("kind") = 0, nb::arg("schema_id") = MessageCodec::value_schema_id(),
          nb::arg("name") = nb::none(), nb::arg("mode") = 0600, nb::arg("group") = nb::none(),
          "A new queue: anonymous, or named with permission bits `mode` and group `group` (ValueError "
          "when the name is invalid or taken).")
      .def_static(
          "open",
          [](std::string_view name, unsigned mode, std::optional<uid_t> owner, std::optional<gid_t> group) {
            ByteQueue queue = ByteQueue::open(name, sharing_for(mode, owner, group));
            const uint64_t schema_id = queue.schema_id();
            return PythonQueue{std::move(queue), MessageCodec(schema_id)};
          },
          nb::arg("name"), nb::arg("mode") = 0600, nb::arg("owner") = nb::none(), nb::arg("group") = nb::none(),
          "Opens the named queue any process made: PermissionError unless it is owned by `owner` (default: "
          "this user) with permission bits within `mode` (and group `group` when it has group bits).")
      .def_static(
          "adopt",
          [](int fd) {
            ByteQueue queue = ByteQueue::adopt_anonymous(fd);
            const uint64_t schema_id = queue.schema_id();
            return PythonQueue{std::move(queue), MessageCodec(schema_id)};
          },
          nb::arg("fd"), "Re-opens an anonymous queue from a received duplicate of its anonymous_fd (owned).")
      .def_static("remove", &ByteQueue::remove, nb::arg("name"),
                  "Unlinks a named queue (open handles keep working); False when there was none.")
      .def(
          "put",
          [](PythonQueue& self, AnyObject object, bool block, std::optional<double> timeout) {
            EncodedMessage message;
            self.codec.encode(object, message);
            put_encoded(self, message, block, timeout);
          },
          nb::arg("obj"), nb::arg("block") = true, nb::arg("timeout") = nb::none())
      .def(
          "get",
          [](PythonQueue& self, bool block, std::optional<double> timeout) {
            refuse_get_while_held_here(self);
            // A message that is there is decoded where it lies in the ring, with the GIL
            // held (no copy out). Building the objects runs no Python code, so holding the
            // consumer lock meanwhile cannot deadlock with another thread.
            nb::object result;
            auto take_in_place = [&] {
              return self.queue.get_in_place(
                  [&](std::span<const std::byte> bytes) { result = self.codec.decode(bytes); }, false);
            };
            if (take_in_place()) return result;
            // None: wait for one without the GIL, then take it in place as well (a large
            // message is then copied once, not into a buffer and again into objects).
            const SlicedWait deadline(block, timeout);
            if (!wait_in_slices(deadline, [&](Timeout slice) { return self.queue.wait_for_message(slice); })) {
              throw Empty();
            }
            if (take_in_place()) return result;
            // Another consumer took it, or holds the queue: wait as a get does.
            auto message = get_message(self, deadline);
            return self.codec.decode(message);
          },
          nb::arg("block") = true, nb::arg("timeout") = nb::none())
      .def(
          "get_if_any",
          [](PythonQueue& self, nb::object otherwise) {
            refuse_get_while_held_here(self);
            nb::object result = otherwise;
            self.queue.get_in_place([&](std::span<const std::byte> bytes) { result = self.codec.decode(bytes); },
                                    false);
            return result;
          },
          nb::arg("otherwise"),
          "The oldest item, taken without waiting, or `otherwise` when there is none: no "
          "exception for the common miss (an event loop's attempts).")
      .def(
          "put_if_room",
          [](PythonQueue& self, AnyObject object) {
            EncodedMessage message;
            self.codec.encode(object, message);
            return self.queue.put_in_place(
                message.size(), [&](std::byte* out) { message.write_to(out); }, false);
          },
          nb::arg("obj"), "Puts `obj` without waiting: false, nothing put, when the queue is full.")
      .def(
          "put_bytes",
          [](PythonQueue& self, nb::bytes message, bool block, std::optional<double> timeout) {
            const auto* data = reinterpret_cast<const std::byte*>(message.c_str());
            const size_t size = message.size();
            if (!wait_in_slices(SlicedWait(block, timeout), [&](Timeout slice) {
                  return self.queue.try_put_bytes({data, size}, slice);
                })) {
              throw Full();
            }
          },
          nb::arg("message"), nb::arg("block") = true, nb::arg("timeout") = nb::none(),
          "Puts raw bytes (not checked: the reader decides what they are).")
      .def(
          "get_bytes",
          [](PythonQueue& self, bool block, std::optional<double> timeout) {
            refuse_get_while_held_here(self);
            auto message = get_message(self, SlicedWait(block, timeout));
            return nb::bytes(reinterpret_cast<const char*>(message.data()), message.size());
          },
          nb::arg("block") = true, nb::arg("timeout") = nb::none())
      .def(
          "get_view",
          [](PythonQueue& self, bool block, std::optional<double> timeout) {
            if (!self.codec.carries_values()) {
              throw TypeError("get_view reads queues of xproc Values; this one carries Cap'n Proto structs");
            }
            refuse_get_while_held_here(self);
            auto record = HeldRecord::take(self.queue, SlicedWait(block, timeout));
            if (!record) throw Empty();
            self.held.push_back(record);
            return MessageView(std::move(record));
          },
          nb::arg("block") = true, nb::arg("timeout") = nb::none(),
          "Takes the oldest message and leaves it in the queue's memory while the returned "
          "MessageView is used: its arrays are read-only memoryviews of that memory (no copy). The "
          "queue's other gets wait until the view is released (see xproc.Queue.get_view).")
      .def("qsize", [](const PythonQueue& self) { return self.queue.qsize(); })
      .def("empty", [](const PythonQueue& self) { return self.queue.empty(); })
      .def("full", [](const PythonQueue& self) { return self.queue.full(); })
      .def("close", [](PythonQueue& self) { self.queue.close(); })
      .def_prop_ro("closed", [](const PythonQueue& self) { return self.queue.closed(); })
      .def("task_done", [](PythonQueue& self) { self.queue.task_done(); })
      .def(
          "join",
          [](PythonQueue& self, std::optional<double> timeout) {
            // ByteQueue::join raises TimeoutError at the end of each slice; only the last
            // one is the caller's.
            const SlicedWait deadline(true, timeout);
            const bool done = wait_in_slices(deadline, [&](Timeout slice) {
              try {
                self.queue.join(slice);
                return true;
              } catch (const TimeoutError&) {
                return false;
              }
            });
            if (!done) throw TimeoutError("join() timed out with tasks still not done");
          },
          nb::arg("timeout") = nb::none())
      .def_prop_ro("name", [](const PythonQueue& self) { return self.queue.info().name; })
      .def_prop_ro("schema_id", [](const PythonQueue& self) { return self.queue.schema_id(); })
      .def_prop_ro("maxsize", [](const PythonQueue& self) { return self.queue.info().maxsize; })
      .def_prop_ro("capacity_bytes", [](const PythonQueue& self) { return self.queue.info().capacity_bytes; })
      .def_prop_ro("max_message_bytes", [](const PythonQueue& self) { return self.queue.info().max_message_bytes; })
      .def_prop_ro("anonymous_fd", [](const PythonQueue& self) { return self.queue.anonymous_fd(); });

  nb::class_<QueueWaiter>(m, "QueueWaiter",
                          "A doorbell an event loop polls for a queue (xproc.queues awaits through it).")
      .def(
          "__init__",
          [](QueueWaiter* self, const PythonQueue& queue, uint32_t what) {
            if (what > 2) throw ValueError("a QueueWaiter waits for 0 (a message), 1 (room) or 2 (a join)");
            new (self) QueueWaiter(queue.queue, static_cast<QueueWaiter::For>(what));
          },
          nb::arg("queue"), nb::arg("what"))
      .def("fileno", &QueueWaiter::fileno, "The descriptor to poll for reading.")
      .def("arm", &QueueWaiter::arm,
           "After an attempt that would block: True when the caller may wait for fileno(), False when the "
           "queue changed since the waiter last looked (try again now).")
      .def("clear", &QueueWaiter::clear, "After fileno() was readable: reads the rings and looks again.")
      .def_prop_ro_static("recheck_seconds",
                          [](nb::handle) { return std::chrono::duration<double>(QueueWaiter::kRecheck).count(); });
}

}  // namespace xproc::python
