// xproc_pipe, xproc_listener_*, xproc_client_connect and xproc_connection_*.
#include <cmath>
#include <optional>
#include <string>

#include "c_status.h"
#include "xproc/byte_connection.h"
#include "xproc/connection.h"
#include "xproc/listener.h"

struct xproc_connection {
  xproc::ByteConnection connection;
};

struct xproc_listener {
  xproc::Listener listener;
  std::string address;  // as C can hold it: an abstract address as "unix:@name"
};

namespace {

std::optional<std::string> key_of(const void* authkey, size_t size) {
  if (authkey == nullptr || size == 0) return std::nullopt;
  return std::string(static_cast<const char*>(authkey), size);
}

}  // namespace

extern "C" {

int xproc_pipe(int duplex, xproc_connection** a, xproc_connection** b) {
  XPROC_REQUIRE_ARG(a);
  XPROC_REQUIRE_ARG(b);
  return xproc::c_api::guarded([&] {
    auto [first, second] = xproc::byte_pipe(duplex != 0);
    auto* left = new xproc_connection{std::move(first)};
    *b = new xproc_connection{std::move(second)};
    *a = left;
  });
}

int xproc_listener_create(const char* address, const void* authkey, size_t authkey_size, xproc_listener** out) {
  XPROC_REQUIRE_ARG(out);
  return xproc::c_api::guarded([&] {
    xproc::Listener listener(address == nullptr ? "" : address, 1, key_of(authkey, authkey_size));
    std::string printable = listener.address();
    if (!printable.empty() && printable[0] == '\0') printable = "unix:@" + printable.substr(1);
    *out = new xproc_listener{std::move(listener), std::move(printable)};
  });
}

const char* xproc_listener_address(const xproc_listener* listener) {
  return listener == nullptr ? "" : listener->address.c_str();
}

int xproc_listener_accept(xproc_listener* listener, xproc_connection** out) {
  XPROC_REQUIRE_ARG(listener);
  XPROC_REQUIRE_ARG(out);
  return xproc::c_api::guarded([&] { *out = new xproc_connection{listener->listener.accept()}; });
}

void xproc_listener_close(xproc_listener* listener) { delete listener; }

int xproc_client_connect(const char* address, const void* authkey, size_t authkey_size, xproc_connection** out) {
  XPROC_REQUIRE_ARG(address);
  XPROC_REQUIRE_ARG(out);
  return xproc::c_api::guarded(
      [&] { *out = new xproc_connection{xproc::Client(address, key_of(authkey, authkey_size))}; });
}

int xproc_connection_send_bytes(xproc_connection* connection, const void* data, size_t size) {
  XPROC_REQUIRE_ARG(connection);
  if (data == nullptr && size != 0) return xproc::c_api::fail(XPROC_INVALID_ARGUMENT, "data is NULL");
  return xproc::c_api::guarded([&] { connection->connection.send_bytes({static_cast<const std::byte*>(data), size}); });
}

int xproc_connection_recv_bytes(xproc_connection* connection, void** data, size_t* size) {
  XPROC_REQUIRE_ARG(connection);
  XPROC_REQUIRE_ARG(data);
  XPROC_REQUIRE_ARG(size);
  return xproc::c_api::guarded([&] {
    auto message = connection->connection.recv_bytes();
    *data = xproc::c_api::copy_out(message);
    *size = message.size();
  });
}

int xproc_connection_poll(xproc_connection* connection, double timeout, int* ready) {
  XPROC_REQUIRE_ARG(connection);
  XPROC_REQUIRE_ARG(ready);
  return xproc::c_api::guarded([&] {
    xproc::Timeout wait;
    if (timeout >= 0 && !std::isnan(timeout)) wait = std::chrono::duration<double>(timeout);
    *ready = connection->connection.poll(wait) ? 1 : 0;
  });
}

void xproc_connection_close(xproc_connection* connection) { delete connection; }

}  // extern "C"
