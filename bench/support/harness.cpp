// Implementation of harness.h.
#include "support/harness.h"

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace xproc::bench {

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

Settings Settings::parse(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--reps")
      s.reps = std::stoi(value());
    else if (arg == "--scale")
      s.scale = std::stod(value());
    else if (arg == "--out")
      s.out = value();
    else if (arg == "--python") {
      s.python = value();
      if (s.python.empty()) s.python = "python3";
    } else if (arg == "--quick") {
      s.reps = 1;
      s.scale = 0.01;
    } else {
      throw std::invalid_argument("unknown argument " + arg +
                                  " (use --reps N --scale F --out FILE --python PATH --quick)");
    }
  }
  return s;
}

size_t Settings::count(size_t base) const {
  return std::max<size_t>(10, static_cast<size_t>(static_cast<double>(base) * scale));
}

double median(std::vector<double> values) { return percentile(std::move(values), 0.5); }

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * static_cast<double>(values.size())));
  return values[index];
}

bool Row::met() const {
  const double r = ratio();
  double bound = 0;
  if (target.rfind(">=", 0) == 0) {
    bound = std::stod(target.substr(2));
    return r >= bound;
  }
  if (target.rfind("<=", 0) == 0) {
    bound = std::stod(target.substr(2));
    return r <= bound;
  }
  return true;
}

namespace {
std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}
}  // namespace

void report(const std::vector<Row>& rows, const std::string& json_path) {
  std::printf("\n%-40s %-14s %14s %-28s %14s %8s %8s %s\n", "workload", "metric", "xproc", "peer", "peer", "ratio",
              "target", "met");
  for (const Row& r : rows) {
    std::printf("%-40s %-14s %14.4g %-28s %14.4g %8.3f %8s %s\n", r.workload.c_str(), r.metric.c_str(), r.xproc,
                r.peer.c_str(), r.peer_value, r.ratio(), r.target.c_str(), r.met() ? "yes" : "NO");
  }
  if (json_path.empty()) return;
  std::ofstream out(json_path);
  out << "[\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    out << "  {\"workload\": \"" << json_escape(r.workload) << "\", \"metric\": \"" << json_escape(r.metric)
        << "\", \"xproc\": " << r.xproc << ", \"peer\": \"" << json_escape(r.peer)
        << "\", \"peer_value\": " << r.peer_value << ", \"ratio\": " << r.ratio() << ", \"target\": \"" << r.target
        << "\", \"met\": " << (r.met() ? "true" : "false") << "}" << (i + 1 < rows.size() ? ",\n" : "\n");
  }
  out << "]\n";
  std::printf("\nwrote %s\n", json_path.c_str());
}

std::string run_peer(const std::string& command) {
  std::fflush(nullptr);  // a forked peer must not print this process's buffered output again
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + command);
  std::string out;
  char buffer[512];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) out.append(buffer, n);
  if (pclose(pipe) != 0) throw std::runtime_error("peer failed: " + command);
  return out;
}

std::string python_peer(const Settings& settings, const std::string& script, const std::string& args) {
  const char* dir = std::getenv("XPROC_BENCH_DIR");
  const std::string path = std::string(dir ? dir : "bench") + "/python/" + script;
  return run_peer(settings.python + " " + path + " --reps " + std::to_string(settings.reps) + " " + args);
}

double json_number(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\"");
  if (at == std::string::npos) throw std::runtime_error("no " + key + " in " + json);
  return std::stod(json.substr(json.find(':', at) + 1));
}

double median_of(const Settings& settings, const std::function<double()>& rep) {
  std::vector<double> values;
  for (int i = 0; i < settings.reps; ++i) values.push_back(rep());
  return median(values);
}

std::vector<double> medians_taking_turns(const Settings& settings,
                                         const std::vector<std::function<double()>>& contenders) {
  std::vector<std::vector<double>> values(contenders.size());
  for (int i = 0; i < settings.reps; ++i) {
    for (size_t c = 0; c < contenders.size(); ++c) values[c].push_back(contenders[c]());
  }
  std::vector<double> medians;
  for (auto& v : values) medians.push_back(median(v));
  return medians;
}

}  // namespace xproc::bench
