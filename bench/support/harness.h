// The comparison harness's common parts: timing on CLOCK_MONOTONIC, repetitions and
// medians, the result table and its JSON file (a list of {workload, metric, xproc, peer,
// peer_value, ratio, target, met}).
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace xproc::bench {

// Monotonic nanoseconds: comparable between processes on one machine.
int64_t now_ns();

// Run-wide settings from the command line: --reps N, --scale F (message counts), --quick,
// --out FILE, --python PATH.
struct Settings {
  int reps = 5;
  double scale = 1.0;
  std::string out;                 // JSON path
  std::string python = "python3";  // for the multiprocessing peers
  static Settings parse(int argc, char** argv);
  size_t count(size_t base) const;  // base * scale, at least 10
};

// Memory shared with forked children, for start/end stamps and verdicts.
template <typename T>
T* shared_object() {
  void* p = mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return new (p) T{};
}
template <typename T>
void release_shared(T* p) {
  p->~T();
  munmap(p, sizeof(T));
}

double median(std::vector<double> values);
double percentile(std::vector<double> values, double p);

// One line of the comparison: xproc's figure against a peer's, with the target ratio.
struct Row {
  std::string workload, metric;
  double xproc = 0;
  std::string peer;
  double peer_value = 0;
  std::string target;  // e.g. ">= 2.0" (ratio = xproc / peer)
  bool met() const;
  double ratio() const { return peer_value != 0 ? xproc / peer_value : 0; }
};

// Prints the table and writes the JSON list.
void report(const std::vector<Row>& rows, const std::string& json_path);

// Runs a shell command and returns what it prints on stdout; throws when it fails.
std::string run_peer(const std::string& command);
// Runs bench/python/<script> with the settings' interpreter and repetitions plus `args`;
// returns what it prints (one JSON object).
std::string python_peer(const Settings& settings, const std::string& script, const std::string& args);
// The number stored under "key" in a flat JSON object.
double json_number(const std::string& json, const std::string& key);

// Runs `rep` settings.reps times and returns the median of what it returns.
double median_of(const Settings& settings, const std::function<double()>& rep);

// Runs each of `contenders` settings.reps times, taking turns (one repetition of each, then
// the next round), and returns the median of each. The machine drifts between faster and
// slower spells lasting seconds; taking turns puts xproc and its peers in the same spells,
// where measuring all of one before the other can compare a slow spell with a fast one.
std::vector<double> medians_taking_turns(const Settings& settings,
                                         const std::vector<std::function<double()>>& contenders);

}  // namespace xproc::bench
