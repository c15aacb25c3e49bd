// Implementation of byte_connection.h: the checks every call makes, then its transport
// (stream_transport_internal.h or ring_transport_internal.h) moves the bytes.
#include "xproc/byte_connection.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "xproc/byte_transport_internal.h"
#include "xproc/errors.h"
#include "xproc/ring_transport_internal.h"
#include "xproc/stream_transport_internal.h"

namespace xproc {

namespace {

// The transport of an open connection: OSError("handle is closed") when it is closed or
// moved from. (Here rather than a member function: a member could be interposed in a
// shared library, so the compiler would call it, and every message passes here.)
detail::ByteTransport& open_transport(const std::unique_ptr<detail::ByteTransport>& transport) {
  if (!transport) [[unlikely]]
    detail::ByteTransport::throw_closed();
  transport->require_open();
  return *transport;
}

bool is_closed(const std::unique_ptr<detail::ByteTransport>& transport) noexcept {
  return !transport || transport->closed();
}

}  // namespace

ByteConnection::ByteConnection(int fd, bool readable, bool writable, ConnectionOptions options)
    : transport_(std::make_unique<detail::StreamTransport>(Fd(fd), readable, writable, options)) {}

ByteConnection::ByteConnection(std::unique_ptr<detail::ByteTransport> transport) noexcept
    : transport_(std::move(transport)) {}

ByteConnection::ByteConnection(ByteConnection&& other) noexcept = default;
ByteConnection& ByteConnection::operator=(ByteConnection&& other) noexcept = default;
ByteConnection::~ByteConnection() = default;

void ByteConnection::close() noexcept {
  if (transport_) transport_->close();
}

bool ByteConnection::closed() const noexcept { return is_closed(transport_); }
bool ByteConnection::shared_memory() const noexcept { return transport_ && transport_->shared_memory(); }
bool ByteConnection::readable() const noexcept { return transport_ && transport_->readable(); }
bool ByteConnection::writable() const noexcept { return transport_ && transport_->writable(); }

int ByteConnection::fileno() const { return open_transport(transport_).fileno(); }
int ByteConnection::wait_fileno() const { return open_transport(transport_).wait_fileno(); }

ByteConnection::SharedMemoryHandles ByteConnection::shared_memory_handles() const {
  return open_transport(transport_).shared_memory_handles();
}

ByteConnection ByteConnection::adopt_shared_memory(const SharedMemoryHandles& handles, ConnectionOptions options) {
  return ByteConnection(detail::RingTransport::adopt(handles, options));
}

std::span<const std::byte> ByteConnection::message_slice(std::span<const std::byte> buf, size_t offset,
                                                         std::optional<size_t> size) {
  if (offset > buf.size()) throw ValueError("offset is negative or larger than the buffer");
  const size_t n = size.value_or(buf.size() - offset);
  if (n > buf.size() - offset) throw ValueError("buffer length < offset + size");
  return buf.subspan(offset, n);
}

void ByteConnection::send_bytes(std::span<const std::byte> buf, size_t offset, std::optional<size_t> size) {
  const std::span<const std::byte> part = message_slice(buf, offset, size);
  send_parts({&part, 1});
}

void ByteConnection::send_parts(std::span<const std::span<const std::byte>> parts) {
  detail::ByteTransport& transport = open_transport(transport_);
  transport.require_writable();
  size_t total = 0;
  for (auto part : parts) total += part.size();
  transport.send_parts(parts, total);
}

void ByteConnection::send_erased(size_t size, void (*fill)(void*, std::byte*), void* ctx) {
  detail::ByteTransport& transport = open_transport(transport_);
  transport.require_writable();
  transport.send_in_place(size, fill, ctx);
}

bool ByteConnection::try_send_erased(size_t size, void (*fill)(void*, std::byte*), void* ctx) {
  detail::ByteTransport& transport = open_transport(transport_);
  transport.require_writable();
  return transport.try_send_in_place(size, fill, ctx);
}

ByteConnection::SendAttempt ByteConnection::send_if_room_erased(size_t size, void (*fill)(void*, std::byte*),
                                                                void* ctx) {
  detail::ByteTransport& transport = open_transport(transport_);
  transport.require_writable();
  return transport.send_if_room(size, fill, ctx);
}

bool ByteConnection::try_finish_send() { return open_transport(transport_).try_finish_send(); }

const ByteQueue* ByteConnection::send_ring() const noexcept {
  return is_closed(transport_) || !transport_->writable() ? nullptr : transport_->send_ring();
}

void ByteConnection::finish_send() {
  if (transport_) transport_->finish_send();
}

std::vector<std::byte> ByteConnection::recv_bytes(std::optional<size_t> maxlength) {
  detail::ByteTransport& transport = open_transport(transport_);
  transport.require_readable();
  const size_t most = transport.options().max_message_bytes;
  return transport.recv_bytes(std::min(maxlength.value_or(most), most));
}

size_t ByteConnection::recv_bytes_into(std::span<std::byte> buffer, size_t offset) {
  if (offset > buffer.size()) throw ValueError("negative offset or offset beyond the buffer");
  auto message = recv_bytes();
  if (message.size() > buffer.size() - offset) {
    throw BufferTooShort(std::string(reinterpret_cast<const char*>(message.data()), message.size()));
  }
  if (!message.empty()) std::memcpy(buffer.data() + offset, message.data(), message.size());
  return message.size();
}

void ByteConnection::recv_erased(void (*consume)(void*, std::span<const std::byte>), void* ctx) {
  detail::ByteTransport& transport = open_transport(transport_);
  transport.require_readable();
  transport.recv_in_place(consume, ctx);
}

bool ByteConnection::try_recv_erased(void (*consume)(void*, std::span<const std::byte>), void* ctx) {
  if (is_closed(transport_) || !transport_->readable()) return false;  // recv_bytes raises the error
  return transport_->try_recv_in_place(consume, ctx);
}

bool ByteConnection::poll(Timeout timeout) {
  detail::ByteTransport& transport = open_transport(transport_);
  transport.require_readable();
  return transport.poll(timeout);
}

bool ByteConnection::ready_or_wait_fds(std::vector<int>& fds) {
  if (is_closed(transport_)) return false;
  return transport_->ready_or_wait_fds(fds);
}

}  // namespace xproc
