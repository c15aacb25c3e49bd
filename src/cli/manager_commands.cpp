// See manager_commands.h.
#include "manager_commands.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "authkey_file.h"
#include "local_time.h"
#include "printable.h"
#include "xproc/errors.h"
#include "xproc/manager.h"
#include "xproc/manager_directory.h"
#include "xproc/rpc/dynamic_call.h"

namespace xproc::cli {
namespace {

using json = nlohmann::ordered_json;

// When a Manager started, as `ls --managers` shows it.
std::string started_at(uint64_t unix_ns) {
  return local_time(static_cast<std::time_t>(unix_ns / 1'000'000'000u), "%Y-%m-%d %H:%M:%S");
}

}  // namespace

void print_managers(bool as_json) {
  const auto managers = list_managers();
  if (as_json) {
    json all = json::array();
    for (const auto& m : managers) {
      all.push_back({{"address", m.address},
                     {"pid", m.pid},
                     {"instance", m.instance},
                     {"started_unix_ns", m.started_unix_ns},
                     {"objects", m.objects},
                     {"named", m.named},
                     {"live", m.live}});
    }
    std::cout << all.dump(2, ' ', true, json::error_handler_t::replace) << "\n";
    return;
  }
  if (managers.empty()) {
    std::cout << "no Manager is running for this user\n";
    return;
  }
  std::printf("%-8s %-8s %8s %6s  %-19s  %s\n", "PID", "STATE", "OBJECTS", "NAMED", "STARTED", "ADDRESS");
  for (const auto& m : managers) {
    std::printf("%-8d %-8s %8llu %6llu  %-19s  %s\n", m.pid, m.live ? "live" : "stale",
                static_cast<unsigned long long>(m.objects), static_cast<unsigned long long>(m.named),
                started_at(m.started_unix_ns).c_str(), printable(m.address).c_str());
  }
}

bool is_manager_address(const std::string& argument) {
  return argument.find(':') != std::string::npos || argument.find('/') != std::string::npos;
}

void print_manager_objects(const std::string& address, const std::optional<std::string>& authkey_file, bool as_json) {
  std::optional<std::string> authkey;
  if (authkey_file) {
    authkey = read_authkey(*authkey_file);
  } else if (const char* key = std::getenv("XPROC_AUTHKEY")) {
    authkey = std::string(key);
  }
  Manager manager = Manager::connect(address, authkey);
  struct Named {
    std::string name;
    std::string kind;
    uint64_t id = 0;
  };
  std::vector<Named> objects;
  for (const auto& name : manager.names()) {
    rpc::DynamicCall lookup(*manager.endpoint(), "lookup");
    lookup.set("registeredName", name);
    rpc::Reply reply(std::move(lookup));
    // A name unregistered meanwhile raises KeyError: the listing is of one instant.
    objects.push_back({name, rpc::kind_name(reply["kind"].as<schema::Kind>()), reply["id"].as<uint64_t>()});
  }
  if (as_json) {
    json out{{"address", address}, {"instance", manager.instance()}, {"named", json::array()}};
    for (const auto& o : objects) out["named"].push_back({{"name", o.name}, {"kind", o.kind}, {"id", o.id}});
    std::cout << out.dump(2, ' ', true, json::error_handler_t::replace) << "\n";
    return;
  }
  std::printf("address   %s\ninstance  %llu\nnamed     %zu\n", printable(address).c_str(),
              static_cast<unsigned long long>(manager.instance()), objects.size());
  if (objects.empty()) return;
  std::printf("\n%-24s %-16s %s\n", "NAME", "KIND", "ID");
  for (const auto& o : objects) {
    std::printf("%-24s %-16s %llu\n", printable(o.name).c_str(), o.kind.c_str(), static_cast<unsigned long long>(o.id));
  }
}

}  // namespace xproc::cli
