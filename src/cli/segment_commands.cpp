// `xproc ls`, `stat`, `rm` and `cleanup`. Names, and the errors that quote them, come from
// files any local user can create in /dev/shm: tables print them with every byte outside
// printable ASCII escaped, and --json is ASCII JSON written by a JSON library.
#include "segment_commands.h"

#include "manager_commands.h"
#include "printable.h"

#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "xproc/errors.h"
#include "xproc/message.h"
#include "xproc/segments.h"

namespace xproc::cli {
namespace {

using json = nlohmann::ordered_json;

std::string mode_text(unsigned mode) {
  char text[8];
  std::snprintf(text, sizeof(text), "0%03o", mode & 07777);
  return text;
}

// ASCII only (every other character \u-escaped), bytes that are not UTF-8 replaced by U+FFFD.
std::string dump(const json& value) { return value.dump(2, ' ', true, json::error_handler_t::replace); }

std::string holders_text(const SegmentStatus& s) {
  if (!s.holders) return "?";
  return *s.holders == 0 ? "0 (abandoned)" : std::to_string(*s.holders);
}

json to_json(const SegmentStatus& s) {
  json out{{"name", s.name},
           {"valid_name", s.valid_name},
           {"file_bytes", s.file_bytes},
           {"owner_uid", s.owner},
           {"mode", mode_text(s.mode)},
           {"holders", s.holders ? json(*s.holders) : json(nullptr)},
           {"abandoned", s.holders && *s.holders == 0}};
  if (s.queue) {
    const QueueInfo& q = *s.queue;
    out.update({{"kind", q.kind},
                {"schema_id", schema_id_hex(q.schema_id)},
                {"messages", q.messages},
                {"maxsize", q.maxsize},
                {"capacity_bytes", q.capacity_bytes},
                {"bytes_used", q.bytes_used},
                {"bytes_reserved", q.bytes_reserved},
                {"max_message_bytes", q.max_message_bytes},
                {"put", q.put_count},
                {"got", q.got_count},
                {"lock_recoveries", q.recoveries},
                {"creator_pid", q.creator_pid}});
  } else {
    out["error"] = s.error;
  }
  return out;
}

void print_table(const std::vector<SegmentStatus>& segments) {
  std::printf("%-32s %-14s %-18s %10s %10s %12s %6s  %s\n", "NAME", "KIND", "SCHEMA", "MESSAGES", "MAXSIZE", "USED/CAP",
              "MODE", "HOLDERS");
  for (const auto& s : segments) {
    const std::string name = printable(s.name);
    if (s.queue) {
      const QueueInfo& q = *s.queue;
      const std::string used = std::to_string(q.bytes_used) + "/" + std::to_string(q.capacity_bytes);
      std::printf("%-32s %-14s %-18s %10zu %10zu %12s %6s  %s\n", name.c_str(), q.kind.c_str(),
                  schema_id_hex(q.schema_id).c_str(), q.messages, q.maxsize, used.c_str(), mode_text(s.mode).c_str(),
                  holders_text(s).c_str());
    } else {
      std::printf("%-32s %-14s %s  %s\n", name.c_str(), "?", printable(s.error).c_str(), holders_text(s).c_str());
    }
  }
  if (segments.empty()) std::printf("(no xproc segments)\n");
}

void print_stat(const SegmentStatus& s) {
  const std::string name = printable(s.name);
  std::printf(
      "name            %s\nfile            /dev/shm/xproc.%s (%zu bytes)\nowner           uid %u, mode %s\n"
      "holders         %s\n",
      name.c_str(), name.c_str(), s.file_bytes, static_cast<unsigned>(s.owner), mode_text(s.mode).c_str(),
      holders_text(s).c_str());
  if (!s.queue) {
    std::printf("error           %s\n", printable(s.error).c_str());
    return;
  }
  const QueueInfo& q = *s.queue;
  std::printf(
      "kind            %s\nschema id       %s\nmessages        %zu (maxsize %zu)\n"
      "bytes used      %zu of %zu (largest message %zu)\nmemory held     %zu bytes\n"
      "put / got       %u / %u (modulo 2^32)\n"
      "lock recoveries %llu (locks taken over from processes that died holding them)\n"
      "creator pid     %d (in its PID namespace)\n",
      q.kind.c_str(), schema_id_hex(q.schema_id).c_str(), q.messages, q.maxsize, q.bytes_used, q.capacity_bytes,
      q.max_message_bytes, q.bytes_reserved, q.put_count, q.got_count, static_cast<unsigned long long>(q.recoveries),
      q.creator_pid);
}

}  // namespace

void add_segment_commands(CLI::App& app) {
  auto json_flag = std::make_shared<bool>(false);
  auto* ls = app.add_subcommand("ls", "list every xproc queue in /dev/shm, with depth and holders");
  auto managers_flag = std::make_shared<bool>(false);
  ls->footer("Examples:\n  xproc ls\n  xproc ls --json\n  xproc ls --managers\n");
  ls->add_flag("--json", *json_flag, "one JSON array, for scripts");
  ls->add_flag("--managers", *managers_flag,
               "list this user's running Managers instead (address, pid, object counts; stale entries marked)");
  ls->callback([json_flag, managers_flag] {
    if (*managers_flag) return print_managers(*json_flag);
    auto segments = list_segments();
    if (!*json_flag) return print_table(segments);
    json all = json::array();
    for (const auto& s : segments) all.push_back(to_json(s));
    std::cout << dump(all) << "\n";
  });

  auto name = std::make_shared<std::string>();
  auto stat_json = std::make_shared<bool>(false);
  auto authkey_file = std::make_shared<std::string>();
  auto* stat = app.add_subcommand("stat", "one queue in detail, with its counters; or a Manager's named objects");
  stat->footer(
      "NAME is a queue's name, or a Manager's address (it has ':' or '/'), whose named objects are listed after "
      "logging in with the authkey of --authkey-file, or else of the XPROC_AUTHKEY environment variable.\n\n"
      "Examples:\n  xproc stat jobs\n  xproc stat jobs --json\n"
      "  xproc stat /run/app/manager.sock --authkey-file key\n");
  stat->add_option("NAME", *name, "the queue's name (without the xproc. prefix), or a Manager's address")->required();
  stat->add_flag("--json", *stat_json, "one JSON object, for scripts");
  stat->add_option("--authkey-file", *authkey_file, "for a Manager: the file holding its authkey");
  stat->callback([name, stat_json, authkey_file] {
    if (is_manager_address(*name)) {
      return print_manager_objects(*name, authkey_file->empty() ? std::nullopt : std::optional(*authkey_file),
                                   *stat_json);
    }
    auto status = segment_status(*name);
    if (*stat_json) {
      std::cout << dump(to_json(status)) << "\n";
    } else {
      print_stat(status);
    }
  });

  auto rm_name = std::make_shared<std::string>();
  auto rm_force = std::make_shared<bool>(false);
  auto* rm = app.add_subcommand("rm", "unlink a queue (processes that hold it keep working)");
  rm->footer("Examples:\n  xproc rm jobs\n  xproc rm --force jobs    # though it still holds messages\n");
  rm->add_option("NAME", *rm_name, "the queue's name")->required();
  rm->add_flag("--force,-f", *rm_force, "also when it holds messages, or is not a queue");
  rm->callback([rm_name, rm_force] {
    remove_segment(*rm_name, *rm_force);
    std::cout << "removed " << *rm_name << "\n";
  });

  auto options = std::make_shared<CleanupOptions>();
  auto* cleanup = app.add_subcommand(
      "cleanup",
      "remove the queues no process holds (and, without NAMES, the doorbell sockets of dead event-loop waiters)");
  cleanup->footer("Examples:\n  xproc cleanup --dry-run\n  xproc cleanup jobs results\n");
  cleanup->add_flag("--dry-run,-n", options->dry_run, "only list what would be removed");
  cleanup->add_flag("--force,-f", options->force,
                    "also remove unheld queues that hold messages (a consumer may not have opened them yet), and "
                    "files under the prefix that are not queues");
  cleanup->add_option("NAMES", options->only, "consider only these queues (default: all)");
  cleanup->callback([options] {
    using Action = CleanupOutcome::Action;
    size_t acted = 0, failed = 0;
    for (const auto& outcome : cleanup_segments(*options)) {
      const std::string shown = printable(outcome.name);
      switch (outcome.action) {
        case Action::kRemoved:
          std::cout << "removed " << shown << "\n";
          ++acted;
          break;
        case Action::kWouldRemove:
          std::cout << "would remove " << shown << "\n";
          ++acted;
          break;
        case Action::kKept: std::cout << "kept " << shown << ": " << printable(outcome.reason) << "\n"; break;
        case Action::kFailed:
          std::cerr << "xproc: cannot remove " << shown << ": " << printable(outcome.reason) << "\n";
          ++failed;
          break;
      }
    }
    if (acted == 0 && failed == 0) std::cout << "nothing to remove\n";
    if (failed != 0) throw RuntimeError(std::to_string(failed) + " segment(s) could not be removed");
  });
}

}  // namespace xproc::cli
