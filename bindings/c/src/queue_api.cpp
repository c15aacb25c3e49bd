// xproc_queue_*: ByteQueue behind an opaque handle.
#include <cmath>
#include <string_view>

#include "c_status.h"
#include "xproc/byte_queue.h"
#include "xproc/errors.h"

struct xproc_queue {
  xproc::ByteQueue queue;
};

namespace {

// The C convention (negative: forever) as the library's (nullopt: forever).
xproc::Timeout timeout_of(double seconds) {
  if (seconds < 0 || std::isnan(seconds)) return std::nullopt;
  return std::chrono::duration<double>(seconds);
}

xproc::QueueOptions options_of(size_t maxsize, size_t capacity_bytes) {
  xproc::QueueOptions options;
  options.maxsize = maxsize;
  if (capacity_bytes != 0) options.capacity_bytes = capacity_bytes;
  return options;
}

// The C convention (-1: unset) as Sharing's.
xproc::Sharing sharing_of(unsigned mode, int64_t owner_uid, int64_t group_gid) {
  xproc::Sharing sharing;
  sharing.mode = mode;
  if (owner_uid >= 0) sharing.owner = static_cast<uid_t>(owner_uid);
  if (group_gid >= 0) sharing.group = static_cast<gid_t>(group_gid);
  return sharing;
}

}  // namespace

extern "C" {

int xproc_queue_create_shared(const char* name, size_t maxsize, size_t capacity_bytes, uint64_t schema_id,
                              unsigned mode, int64_t group_gid, xproc_queue** out) {
  XPROC_REQUIRE_ARG(out);
  return xproc::c_api::guarded([&] {
    auto options = options_of(maxsize, capacity_bytes);
    options.sharing = sharing_of(mode, -1, group_gid);
    const auto kind = xproc::detail::QueueKind::kQueue;
    *out = new xproc_queue{name == nullptr ? xproc::ByteQueue(options, schema_id, kind)
                                           : xproc::ByteQueue::create(name, options, schema_id, kind)};
  });
}

int xproc_queue_open_shared(const char* name, unsigned mode, int64_t owner_uid, int64_t group_gid, xproc_queue** out) {
  XPROC_REQUIRE_ARG(name);
  XPROC_REQUIRE_ARG(out);
  return xproc::c_api::guarded(
      [&] { *out = new xproc_queue{xproc::ByteQueue::open(name, sharing_of(mode, owner_uid, group_gid))}; });
}

int xproc_queue_create_typed(const char* name, size_t maxsize, size_t capacity_bytes, uint64_t schema_id,
                             xproc_queue** out) {
  return xproc_queue_create_shared(name, maxsize, capacity_bytes, schema_id, 0600, -1, out);
}

int xproc_queue_create(const char* name, size_t maxsize, size_t capacity_bytes, xproc_queue** out) {
  return xproc_queue_create_typed(name, maxsize, capacity_bytes, 0, out);
}

int xproc_queue_open(const char* name, xproc_queue** out) {
  XPROC_REQUIRE_ARG(name);
  XPROC_REQUIRE_ARG(out);
  return xproc_queue_open_shared(name, 0600, -1, -1, out);
}

int xproc_queue_schema_id(const xproc_queue* queue, uint64_t* out) {
  XPROC_REQUIRE_ARG(queue);
  XPROC_REQUIRE_ARG(out);
  *out = queue->queue.schema_id();
  return XPROC_OK;
}

int xproc_queue_put(xproc_queue* queue, const void* data, size_t size, double timeout) {
  XPROC_REQUIRE_ARG(queue);
  if (data == nullptr && size != 0) return xproc::c_api::fail(XPROC_INVALID_ARGUMENT, "data is NULL");
  return xproc::c_api::guarded([&] {
    queue->queue.put_bytes({static_cast<const std::byte*>(data), size}, timeout != 0, timeout_of(timeout));
  });
}

int xproc_queue_get(xproc_queue* queue, void** data, size_t* size, double timeout) {
  XPROC_REQUIRE_ARG(queue);
  XPROC_REQUIRE_ARG(data);
  XPROC_REQUIRE_ARG(size);
  return xproc::c_api::guarded([&] {
    auto message = queue->queue.get_bytes(timeout != 0, timeout_of(timeout));
    *data = xproc::c_api::copy_out(message);
    *size = message.size();
  });
}

int xproc_queue_qsize(const xproc_queue* queue, size_t* out) {
  XPROC_REQUIRE_ARG(queue);
  XPROC_REQUIRE_ARG(out);
  *out = queue->queue.qsize();
  return XPROC_OK;
}

int xproc_queue_remove(const char* name) {
  XPROC_REQUIRE_ARG(name);
  return xproc::c_api::guarded([&] {
    if (!xproc::ByteQueue::remove(name)) throw xproc::ValueError("no queue named '" + std::string(name) + "'");
  });
}

void xproc_queue_close(xproc_queue* queue) { delete queue; }

}  // extern "C"
