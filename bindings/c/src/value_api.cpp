// xproc_value_*: making and reading the common Value kinds without Cap'n Proto.
#include <string>

#include "c_status.h"
#include "xproc/value.h"

namespace {

void encode_out(const xproc::Value& value, void** data, size_t* size) {
  auto words = value.encode();  // kept alive while copied
  auto bytes = words.asBytes();
  *data = xproc::c_api::copy_out({reinterpret_cast<const std::byte*>(bytes.begin()), bytes.size()});
  *size = bytes.size();
}

xproc::Value decoded(const void* data, size_t size) {
  return xproc::Value::decode({static_cast<const std::byte*>(data), size});
}

}  // namespace

extern "C" {

int xproc_value_from_int(int64_t value, void** data, size_t* size) {
  XPROC_REQUIRE_ARG(data);
  XPROC_REQUIRE_ARG(size);
  return xproc::c_api::guarded([&] { encode_out(xproc::Value(static_cast<long long>(value)), data, size); });
}

int xproc_value_from_text(const char* text, void** data, size_t* size) {
  XPROC_REQUIRE_ARG(text);
  XPROC_REQUIRE_ARG(data);
  XPROC_REQUIRE_ARG(size);
  return xproc::c_api::guarded([&] { encode_out(xproc::Value(std::string(text)), data, size); });
}

int xproc_value_to_int(const void* data, size_t size, int64_t* out) {
  XPROC_REQUIRE_ARG(data);
  XPROC_REQUIRE_ARG(out);
  return xproc::c_api::guarded([&] { *out = decoded(data, size).as_int(); });
}

int xproc_value_to_text(const void* data, size_t size, char** out) {
  XPROC_REQUIRE_ARG(data);
  XPROC_REQUIRE_ARG(out);
  return xproc::c_api::guarded([&] { *out = xproc::c_api::copy_text(decoded(data, size).as_text()); });
}

int xproc_value_repr(const void* data, size_t size, char** out) {
  XPROC_REQUIRE_ARG(data);
  XPROC_REQUIRE_ARG(out);
  return xproc::c_api::guarded([&] { *out = xproc::c_api::copy_text(decoded(data, size).repr()); });
}

}  // extern "C"
