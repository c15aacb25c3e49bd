// xproc_manager_*, xproc_dict_* and xproc_list_*: Manager proxies moving Value messages.
#include <optional>
#include <string>

#include "c_status.h"
#include "xproc/manager.h"
#include "xproc/value.h"

struct xproc_manager {
  xproc::Manager manager;
};
struct xproc_dict {
  xproc::DictProxy proxy;
};
struct xproc_list {
  xproc::ListProxy proxy;
};

namespace {

xproc::Value value_of(const void* data, size_t size) {
  return xproc::Value::decode({static_cast<const std::byte*>(data), size});
}

void encode_out(const xproc::Value& value, void** data, size_t* size) {
  auto words = value.encode();
  auto bytes = words.asBytes();
  *data = xproc::c_api::copy_out({reinterpret_cast<const std::byte*>(bytes.begin()), bytes.size()});
  *size = bytes.size();
}

}  // namespace

extern "C" {

int xproc_manager_connect_tls(const char* address, const void* authkey, size_t authkey_size, const char* ca_file,
                              const char* cert_file, const char* key_file, const char* server_name,
                              xproc_manager** out) {
  XPROC_REQUIRE_ARG(address);
  XPROC_REQUIRE_ARG(out);
  return xproc::c_api::guarded([&] {
    std::optional<std::string> key;
    if (authkey != nullptr && authkey_size != 0) key.emplace(static_cast<const char*>(authkey), authkey_size);
    auto text = [](const char* s) { return s == nullptr ? std::string() : std::string(s); };
    xproc::ConnectOptions options;
    options.tls = xproc::TlsClientOptions{text(ca_file), text(cert_file), text(key_file), text(server_name)};
    *out = new xproc_manager{xproc::Manager::connect(address, key, options)};
  });
}

int xproc_manager_connect(const char* address, const void* authkey, size_t authkey_size, xproc_manager** out) {
  return xproc_manager_connect_tls(address, authkey, authkey_size, nullptr, nullptr, nullptr, nullptr, out);
}

void xproc_manager_close(xproc_manager* manager) { delete manager; }

int xproc_manager_dict(xproc_manager* manager, const char* name, xproc_dict** out) {
  XPROC_REQUIRE_ARG(manager);
  XPROC_REQUIRE_ARG(out);
  return xproc::c_api::guarded([&] { *out = new xproc_dict{manager->manager.dict({}, name == nullptr ? "" : name)}; });
}

int xproc_manager_list(xproc_manager* manager, const char* name, xproc_list** out) {
  XPROC_REQUIRE_ARG(manager);
  XPROC_REQUIRE_ARG(out);
  return xproc::c_api::guarded([&] { *out = new xproc_list{manager->manager.list({}, name == nullptr ? "" : name)}; });
}

int xproc_dict_get(xproc_dict* dict, const void* key, size_t key_size, void** value, size_t* value_size) {
  XPROC_REQUIRE_ARG(dict);
  XPROC_REQUIRE_ARG(key);
  XPROC_REQUIRE_ARG(value);
  XPROC_REQUIRE_ARG(value_size);
  return xproc::c_api::guarded([&] { encode_out(dict->proxy[value_of(key, key_size)], value, value_size); });
}

int xproc_dict_set(xproc_dict* dict, const void* key, size_t key_size, const void* value, size_t value_size) {
  XPROC_REQUIRE_ARG(dict);
  XPROC_REQUIRE_ARG(key);
  XPROC_REQUIRE_ARG(value);
  return xproc::c_api::guarded([&] { dict->proxy.set(value_of(key, key_size), value_of(value, value_size)); });
}

int xproc_dict_delete(xproc_dict* dict, const void* key, size_t key_size) {
  XPROC_REQUIRE_ARG(dict);
  XPROC_REQUIRE_ARG(key);
  return xproc::c_api::guarded([&] { dict->proxy.del(value_of(key, key_size)); });
}

int xproc_dict_len(xproc_dict* dict, size_t* out) {
  XPROC_REQUIRE_ARG(dict);
  XPROC_REQUIRE_ARG(out);
  return xproc::c_api::guarded([&] { *out = dict->proxy.size(); });
}

void xproc_dict_close(xproc_dict* dict) { delete dict; }

int xproc_list_append(xproc_list* list, const void* value, size_t value_size) {
  XPROC_REQUIRE_ARG(list);
  XPROC_REQUIRE_ARG(value);
  return xproc::c_api::guarded([&] { list->proxy.append(value_of(value, value_size)); });
}

int xproc_list_get(xproc_list* list, int64_t index, void** value, size_t* value_size) {
  XPROC_REQUIRE_ARG(list);
  XPROC_REQUIRE_ARG(value);
  XPROC_REQUIRE_ARG(value_size);
  return xproc::c_api::guarded([&] { encode_out(list->proxy[index], value, value_size); });
}

int xproc_list_len(xproc_list* list, size_t* out) {
  XPROC_REQUIRE_ARG(list);
  XPROC_REQUIRE_ARG(out);
  return xproc::c_api::guarded([&] { *out = list->proxy.size(); });
}

void xproc_list_close(xproc_list* list) { delete list; }

}  // extern "C"
