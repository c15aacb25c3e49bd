#include "segment_commands.h"

#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "xproc/errors.h"
#include "xproc/message.h"
#include "xproc/segments.h"

namespace xproc::cli {
namespace {

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string holders_text(const SegmentStatus& s) {
  if (s.holders.empty()) return "none (abandoned)";
  std::string out;
  for (pid_t pid : s.holders) out += (out.empty() ? "" : ",") + std::to_string(pid);
  return out;
}

std::string json(const SegmentStatus& s) {
  std::ostringstream out;
  out << "{\"name\": " << json_string(s.name) << ", \"file_bytes\": " << s.file_bytes << ", \"holders\": [";
  for (size_t i = 0; i < s.holders.size(); ++i) out << (i ? ", " : "") << s.holders[i];
  out << "], \"abandoned\": " << (s.holders.empty() ? "true" : "false");
  if (s.queue) {
    const QueueInfo& q = *s.queue;
    out << ", \"kind\": " << json_string(q.kind) << ", \"schema_id\": " << json_string(schema_id_hex(q.schema_id))
        << ", \"messages\": " << q.messages << ", \"maxsize\": " << q.maxsize
        << ", \"capacity_bytes\": " << q.capacity_bytes << ", \"bytes_used\": " << q.bytes_used
        << ", \"max_message_bytes\": " << q.max_message_bytes << ", \"put\": " << q.put_count
        << ", \"got\": " << q.got_count << ", \"lock_recoveries\": " << q.recoveries
        << ", \"creator_pid\": " << q.creator_pid;
  } else {
    out << ", \"error\": " << json_string(s.error);
  }
  return out.str() + "}";
}

void print_table(const std::vector<SegmentStatus>& segments) {
  std::printf("%-32s %-14s %-18s %10s %10s %12s  %s\n", "NAME", "KIND", "SCHEMA", "MESSAGES", "MAXSIZE",
              "USED/CAP", "HOLDERS");
  for (const auto& s : segments) {
    if (s.queue) {
      const QueueInfo& q = *s.queue;
      const std::string used = std::to_string(q.bytes_used) + "/" + std::to_string(q.capacity_bytes);
      std::printf("%-32s %-14s %-18s %10zu %10zu %12s  %s\n", s.name.c_str(), q.kind.c_str(),
                  schema_id_hex(q.schema_id).c_str(), q.messages, q.maxsize, used.c_str(), holders_text(s).c_str());
    } else {
      std::printf("%-32s %-14s %s  %s\n", s.name.c_str(), "?", s.error.c_str(), holders_text(s).c_str());
    }
  }
  if (segments.empty()) std::printf("(no xproc segments)\n");
}

void print_stat(const SegmentStatus& s) {
  std::printf("name            %s\nfile            /dev/shm/xproc.%s (%zu bytes)\nholders         %s\n",
              s.name.c_str(), s.name.c_str(), s.file_bytes, holders_text(s).c_str());
  if (!s.queue) {
    std::printf("error           %s\n", s.error.c_str());
    return;
  }
  const QueueInfo& q = *s.queue;
  std::printf("kind            %s\nschema id       %s\nmessages        %zu (maxsize %zu)\n"
              "bytes used      %zu of %zu (largest message %zu)\nput / got       %u / %u (modulo 2^32)\n"
              "lock recoveries %llu (locks taken over from processes that died holding them)\n"
              "creator pid     %d\n",
              q.kind.c_str(), schema_id_hex(q.schema_id).c_str(), q.messages, q.maxsize, q.bytes_used, q.capacity_bytes,
              q.max_message_bytes, q.put_count, q.got_count, static_cast<unsigned long long>(q.recoveries),
              q.creator_pid);
}

}  // namespace

void add_segment_commands(CLI::App& app) {
  auto json_flag = std::make_shared<bool>(false);
  auto* ls = app.add_subcommand("ls", "list every xproc queue in /dev/shm, with depth and holders");
  ls->add_flag("--json", *json_flag, "one JSON array, for scripts");
  ls->callback([json_flag] {
    auto segments = list_segments();
    if (!*json_flag) return print_table(segments);
    std::cout << "[";
    for (size_t i = 0; i < segments.size(); ++i) std::cout << (i ? ",\n " : "") << json(segments[i]);
    std::cout << "]\n";
  });

  auto name = std::make_shared<std::string>();
  auto stat_json = std::make_shared<bool>(false);
  auto* stat = app.add_subcommand("stat", "one queue in detail, with its counters");
  stat->add_option("NAME", *name, "the queue's name (without the xproc. prefix)")->required();
  stat->add_flag("--json", *stat_json, "one JSON object, for scripts");
  stat->callback([name, stat_json] {
    auto status = segment_status(*name);
    if (*stat_json) {
      std::cout << json(status) << "\n";
    } else {
      print_stat(status);
    }
  });

  auto rm_name = std::make_shared<std::string>();
  auto* rm = app.add_subcommand("rm", "unlink a queue (processes that hold it keep working)");
  rm->add_option("NAME", *rm_name, "the queue's name")->required();
  rm->callback([rm_name] {
    segment_status(*rm_name);  // "no queue named ..." when absent
    ByteQueue::remove(*rm_name);
    std::cout << "removed " << *rm_name << "\n";
  });

  auto dry_run = std::make_shared<bool>(false);
  auto only = std::make_shared<std::vector<std::string>>();
  auto* cleanup = app.add_subcommand("cleanup", "remove the queues no live process holds");
  cleanup->add_flag("--dry-run,-n", *dry_run, "only list what would be removed");
  cleanup->add_option("NAMES", *only, "consider only these queues (default: all)");
  cleanup->callback([dry_run, only] {
    auto removed = remove_abandoned_segments(*dry_run, *only);
    for (const auto& n : removed) std::cout << (*dry_run ? "would remove " : "removed ") << n << "\n";
    if (removed.empty()) std::cout << "nothing to remove\n";
  });
}

}  // namespace xproc::cli
