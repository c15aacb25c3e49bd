// _xproc.Connection, _xproc.Listener, _xproc.client and _xproc.pipe: the C++ connections
// (multiprocessing.connection's framing and authentication) taking Python objects.
// The xproc package adds pickling and Python's address forms on top.
#include <poll.h>

#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>

#include <cerrno>
#include <cstring>

#include "bindings.h"
#include "blocking.h"
#include "message_codec.h"
#include "xproc/byte_connection.h"
#include "xproc/connection.h"
#include "xproc/errors.h"
#include "xproc/listener.h"
#include "xproc/queue_waiter.h"

namespace xproc::python {
namespace {

struct PythonConnection {
  ByteConnection connection;
  MessageCodec codec;
};

// A Python object's bytes (bytes, bytearray, memoryview, array ...), held for a call.
class BufferView {
 public:
  BufferView(nb::handle object, bool writable) {
    if (PyObject_GetBuffer(object.ptr(), &view_, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) != 0) {
      throw nb::python_error();
    }
  }
  ~BufferView() { PyBuffer_Release(&view_); }
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
  std::byte* data() const { return static_cast<std::byte*>(view_.buf); }
  size_t size() const { return static_cast<size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

// Waits until the connection has something to read (or EOF), interruptibly.
bool wait_readable(PythonConnection& self, const SlicedWait& deadline) {
  return wait_in_slices(deadline, [&](Timeout slice) { return self.connection.poll(slice); });
}

std::vector<std::byte> receive(PythonConnection& self, std::optional<size_t> maxlength = std::nullopt) {
  wait_readable(self, SlicedWait(true, std::nullopt));
  nb::gil_scoped_release unlocked;
  return self.connection.recv_bytes(maxlength);
}

nb::bytes as_bytes(const std::vector<std::byte>& message) {
  return nb::bytes(reinterpret_cast<const char*>(message.data()), message.size());
}

// buf[offset, offset + size) of a send_bytes call. As multiprocessing's: offset and size
// count bytes, and negative ones are ValueError.
std::span<const std::byte> sliced(const BufferView& view, int64_t offset, std::optional<int64_t> size) {
  if (offset < 0) throw ValueError("offset is negative");
  if (size && *size < 0) throw ValueError("size is negative");
  return ByteConnection::message_slice({view.data(), view.size()}, static_cast<size_t>(offset),
                                       size ? std::optional<size_t>(static_cast<size_t>(*size)) : std::nullopt);
}

// A small frame is offered to the socket with the GIL held (most go out at once, saving
// two GIL transfers); only when the socket is full is the GIL released to wait.
template <typename Fill>
void send_small(PythonConnection& self, size_t size, Fill&& fill) {
  if (self.connection.try_send_in_place(size, fill)) return;
  nb::gil_scoped_release unlocked;
  self.connection.finish_send();
}

// send_if_room for the awaiting sends: the GIL is held for a message that goes into a
// buffer without waiting, and released for one large enough to be sent blocking.
template <typename Fill>
int send_if_room(PythonConnection& self, size_t size, Fill&& fill) {
  if (size <= ByteConnection::kSmallFrameLimit) return static_cast<int>(self.connection.send_if_room(size, fill));
  nb::gil_scoped_release unlocked;
  return static_cast<int>(self.connection.send_if_room(size, fill));
}

constexpr const char* kSendIfRoomDoc =
    "For xproc.Connection.asend: sends only if that needs no wait. 0: sent whole; 1: nothing sent "
    "or kept, wait for room (room_waiter(), else fileno() writable) and call again; 2: part went "
    "onto the socket, call try_finish_send() until True. A message too large for the connection's "
    "buffer (over 4 KiB on a socket, over the ring's inline limit) is sent blocking (0).";

PythonConnection wrap(ByteConnection connection, uint64_t schema_id) {
  return PythonConnection{std::move(connection), MessageCodec(schema_id)};
}

}  // namespace

void register_connections(nb::module_& m) {
  nb::class_<PythonConnection>(m, "Connection", "One end of a connection (the engine under xproc's Connection).")
      .def(
          "__init__",
          [](PythonConnection* self, int fd, bool readable, bool writable, uint64_t schema_id) {
            new (self) PythonConnection{ByteConnection(fd, readable, writable), MessageCodec(schema_id)};
          },
          nb::arg("fd"), nb::arg("readable") = true, nb::arg("writable") = true,
          nb::arg("schema_id") = MessageCodec::value_schema_id(),
          "Takes ownership of the socket or pipe descriptor `fd`.")
      .def(
          "send",
          [](PythonConnection& self, AnyObject object) {
            EncodedMessage message;
            self.codec.encode(object, message);
            const size_t size = message.size();
            auto fill = [&](std::byte* out) { message.write_to(out); };  // no Python: safe without the GIL
            if (size <= ByteConnection::kSmallFrameLimit) {
              send_small(self, size, fill);
              return;
            }
            nb::gil_scoped_release unlocked;
            self.connection.send_in_place(size, fill);
          },
          nb::arg("obj"))
      .def("recv",
           [](PythonConnection& self) {
             // A frame that is already here is decoded in place, with the GIL held.
             nb::object result;
             if (self.connection.try_recv_in_place(
                     [&](std::span<const std::byte> bytes) { result = self.codec.decode(bytes); })) {
               return result;
             }
             return self.codec.decode(receive(self));
           })
      .def(
          "send_bytes",
          [](PythonConnection& self, nb::handle buffer, int64_t offset, std::optional<int64_t> size) {
            BufferView view(buffer, false);
            const auto part = sliced(view, offset, size);
            if (part.size() <= ByteConnection::kSmallFrameLimit) {
              send_small(self, part.size(), [&](std::byte* out) { std::memcpy(out, part.data(), part.size()); });
              return;
            }
            nb::gil_scoped_release unlocked;
            self.connection.send_bytes(part);
          },
          nb::arg("buf"), nb::arg("offset") = 0, nb::arg("size") = nb::none())
      .def(
          "recv_bytes",
          [](PythonConnection& self, std::optional<size_t> maxlength) {
            nb::bytes result;
            if (!maxlength && self.connection.try_recv_in_place([&](std::span<const std::byte> bytes) {
                  result = nb::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
                })) {
              return result;
            }
            return as_bytes(receive(self, maxlength));
          },
          nb::arg("maxlength") = nb::none())
      .def(
          "recv_bytes_into",
          [](PythonConnection& self, nb::handle buffer, size_t offset) {
            wait_readable(self, SlicedWait(true, std::nullopt));
            BufferView view(buffer, true);
            try {
              nb::gil_scoped_release unlocked;
              return self.connection.recv_bytes_into({view.data(), view.size()}, offset);
            } catch (const BufferTooShort& e) {
              // As CPython: the whole message travels in the exception's args[0].
              nb::object error = nb::module_::import_("multiprocessing")
                                     .attr("BufferTooShort")(nb::bytes(e.message().data(), e.message().size()));
              PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
              throw nb::python_error();
            }
          },
          nb::arg("buf"), nb::arg("offset") = 0)
      .def(
          "send_if_room",
          [](PythonConnection& self, AnyObject object) {
            EncodedMessage message;
            self.codec.encode(object, message);
            return send_if_room(self, message.size(), [&](std::byte* out) { message.write_to(out); });
          },
          nb::arg("obj"), kSendIfRoomDoc)
      .def(
          "send_bytes_if_room",
          [](PythonConnection& self, nb::handle buffer, int64_t offset, std::optional<int64_t> size) {
            BufferView view(buffer, false);
            const auto part = sliced(view, offset, size);
            return send_if_room(self, part.size(), [&](std::byte* out) {
              if (!part.empty()) std::memcpy(out, part.data(), part.size());
            });
          },
          nb::arg("buf"), nb::arg("offset") = 0, nb::arg("size") = nb::none(), kSendIfRoomDoc)
      .def(
          "try_finish_send", [](PythonConnection& self) { return self.connection.try_finish_send(); },
          "Sends the rest of a message send_if_room began, without waiting: True when none is left.")
      .def(
          "room_waiter",
          [](const PythonConnection& self) -> nb::object {
            const ByteQueue* ring = self.connection.send_ring();
            if (ring == nullptr) return nb::none();
            return nb::cast(QueueWaiter(*ring, QueueWaiter::For::kRoom));
          },
          nb::sig("def room_waiter(self) -> QueueWaiter | None"),
          "A QueueWaiter rung when the receiver makes room in the ring this shared-memory end sends "
          "into; None for another end (its fileno() turns writable instead).")
      .def(
          "poll",
          [](PythonConnection& self, std::optional<double> timeout) {
            return wait_readable(self, SlicedWait(true, timeout));
          },
          nb::arg("timeout") = 0.0)
      .def("close", [](PythonConnection& self) { self.connection.close(); })
      .def_prop_ro("closed", [](const PythonConnection& self) { return self.connection.closed(); })
      .def_prop_ro("readable", [](const PythonConnection& self) { return self.connection.readable(); })
      .def_prop_ro("writable", [](const PythonConnection& self) { return self.connection.writable(); })
      .def_prop_ro("schema_id", [](const PythonConnection& self) { return self.codec.schema_id(); })
      .def("fileno", [](const PythonConnection& self) { return self.connection.fileno(); })
      .def(
          "wait_fileno", [](const PythonConnection& self) { return self.connection.wait_fileno(); },
          "A descriptor for xproc.connection.wait(): readable when a message arrives after poll(0) found "
          "none (or possibly for one another reader took), or when the other end goes. Unlike fileno(), "
          "it makes later receives cost nothing.")
      .def_prop_ro("shared_memory", [](const PythonConnection& self) { return self.connection.shared_memory(); })
      .def(
          "handles",
          [](const PythonConnection& self) {
            const auto h = self.connection.shared_memory_handles();
            return nb::make_tuple(h.socket, h.memory, h.side, h.readable, h.writable);
          },
          "The descriptors behind a shared-memory end (socket, memory), then its side, readable and writable; "
          "the descriptors stay this end's: duplicate them to hand it on.")
      .def_static(
          "adopt",
          [](int socket, int memory, int side, bool readable, bool writable, uint64_t schema_id) {
            ByteConnection::SharedMemoryHandles h;
            h.socket = socket;
            h.memory = memory;
            h.side = side;
            h.readable = readable;
            h.writable = writable;
            return wrap(ByteConnection::adopt_shared_memory(h), schema_id);
          },
          nb::arg("socket"), nb::arg("memory"), nb::arg("side"), nb::arg("readable"), nb::arg("writable"),
          nb::arg("schema_id") = MessageCodec::value_schema_id(),
          "Rebuilds a shared-memory end from duplicates of another process's handles (taking ownership).");

  m.def(
      "pipe",
      [](bool duplex, uint64_t schema_id) {
        auto [a, b] = byte_pipe(duplex);
        return std::make_pair(wrap(std::move(a), schema_id), wrap(std::move(b), schema_id));
      },
      nb::arg("duplex") = true, nb::arg("schema_id") = MessageCodec::value_schema_id());

  nb::class_<Listener>(m, "Listener", "A bound, listening socket (the engine under xproc.connection.Listener).")
      .def(
          "__init__",
          [](Listener* self, std::string address, int backlog, std::optional<nb::bytes> authkey,
             double handshake_timeout) {
            const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(handshake_timeout * 1000));
            new (self) Listener(std::move(address), backlog, authkey_string(authkey), {}, timeout);
          },
          nb::arg("address") = "", nb::arg("backlog") = 1, nb::arg("authkey") = nb::none(),
          nb::arg("handshake_timeout") = 5.0)
      .def(
          "accept",
          [](Listener& self, uint64_t schema_id) {
            // Accepts and authenticates in slices without the GIL, looking for Ctrl-C between them.
            std::optional<ByteConnection> accepted;
            const SlicedWait forever(true, std::nullopt);
            wait_in_slices(forever, [&](Timeout slice) {
              accepted = self.try_accept(slice);
              return accepted.has_value();
            });
            return wrap(std::move(*accepted), schema_id);
          },
          nb::arg("schema_id") = MessageCodec::value_schema_id())
      .def_prop_ro("address", &Listener::address)
      .def("fileno", &Listener::fileno)
      .def("keep_path", &Listener::keep_path)
      .def("close", &Listener::close);

  m.def(
      "client",
      [](const std::string& address, std::optional<nb::bytes> authkey, uint64_t schema_id) {
        auto secret = authkey_string(authkey);
        nb::gil_scoped_release unlocked;
        return wrap(Client(address, std::move(secret)), schema_id);
      },
      nb::arg("address"), nb::arg("authkey") = nb::none(), nb::arg("schema_id") = MessageCodec::value_schema_id());
}

}  // namespace xproc::python
