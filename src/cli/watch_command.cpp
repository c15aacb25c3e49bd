// See watch_command.h. The rates come from the queue header's put and got counters
// (modulo 2^32, so a difference modulo 2^32 is exact for fewer than 4 G messages an
// interval), read as `xproc stat` reads them: with pread, holding nothing.
#include "watch_command.h"

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "printable.h"
#include "xproc/errors.h"
#include "xproc/segments.h"

namespace xproc::cli {
namespace {

struct WatchOptions {
  std::string name;
  double interval = 1.0;
  long count = 0;  // samples to print; 0: until interrupted
  bool json = false;
};

struct Sample {
  std::chrono::steady_clock::time_point at;
  QueueInfo queue;
  std::optional<size_t> holders;
};

Sample sample(const std::string& name) {
  SegmentStatus status = segment_status(name);
  if (!status.queue) throw ValueError("'" + name + "' is not a readable queue: " + status.error);
  return {std::chrono::steady_clock::now(), *status.queue, status.holders};
}

void watch(const WatchOptions& options) {
  if (!(options.interval >= 0.01 && options.interval <= 3600)) {
    throw ValueError("--interval takes 0.01 to 3600 seconds");
  }
  const bool in_place = !options.json && isatty(STDOUT_FILENO) == 1;
  Sample last = sample(options.name);
  for (long printed = 0; options.count == 0 || printed < options.count; ++printed) {
    std::this_thread::sleep_for(std::chrono::duration<double>(options.interval));
    Sample now = sample(options.name);
    const double seconds = std::chrono::duration<double>(now.at - last.at).count();
    const uint32_t puts = now.queue.put_count - last.queue.put_count;  // modulo 2^32
    const uint32_t gets = now.queue.got_count - last.queue.got_count;
    const double put_rate = puts / seconds;
    const double get_rate = gets / seconds;
    if (options.json) {
      nlohmann::ordered_json line{{"name", options.name},
                                  {"puts_per_s", put_rate},
                                  {"gets_per_s", get_rate},
                                  {"messages", now.queue.messages},
                                  {"maxsize", now.queue.maxsize},
                                  {"bytes_used", now.queue.bytes_used},
                                  {"holders", now.holders ? nlohmann::ordered_json(*now.holders) : nullptr}};
      std::cout << line.dump(-1, ' ', true, nlohmann::ordered_json::error_handler_t::replace) << std::endl;
    } else {
      char line[256];
      std::snprintf(line, sizeof(line), "%s  puts/s %12.0f  gets/s %12.0f  messages %8zu  holders %s",
                    printable(options.name).c_str(), put_rate, get_rate, now.queue.messages,
                    now.holders ? std::to_string(*now.holders).c_str() : "?");
      // On a terminal the line is redrawn in place; to a pipe, one line a sample.
      std::cout << (in_place ? "\r\x1b[K" : "") << line << (in_place ? "" : "\n") << std::flush;
    }
    last = std::move(now);
  }
  if (in_place) std::cout << "\n";
}

}  // namespace

void add_watch_command(CLI::App& app) {
  auto options = std::make_shared<WatchOptions>();
  auto* watch_command = app.add_subcommand("watch", "puts and gets per second, depth and holders of a named queue");
  watch_command->footer(
      "Refreshed in place on a terminal, one line a sample otherwise; --json prints one JSON object a line.\n\n"
      "Examples:\n"
      "  xproc watch jobs\n"
      "  xproc watch jobs --interval 0.5 --count 10 --json\n");
  watch_command->add_option("NAME", options->name, "the queue's name (without the xproc. prefix)")->required();
  watch_command->add_option("--interval", options->interval, "seconds between samples (default 1)");
  watch_command->add_option("--count", options->count, "samples to print, then stop (default: until Ctrl-C)");
  watch_command->add_flag("--json", options->json, "one JSON object a line, for scripts");
  watch_command->callback([options] { watch(*options); });
}

}  // namespace xproc::cli
