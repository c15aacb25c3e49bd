// The harness lives in the source tree (bench/run.sh) and the comparison programs in the
// build tree this command sits in; an installed `xproc` has neither and says so.
#include "bench_command.h"

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "xproc/errors.h"

namespace xproc::cli {
namespace {

namespace fs = std::filesystem;

// Where the harness is, found from this executable: a build tree's <build>/src/cli/xproc
// names its source tree in <build>/CMakeCache.txt. An installed xproc has no build tree.
struct Harness {
  fs::path source;
  fs::path build;
};

std::optional<Harness> harness_of_this_build() {
  std::error_code error;
  const fs::path exe = fs::read_symlink("/proc/self/exe", error);
  if (error) return std::nullopt;
  const fs::path build = exe.parent_path().parent_path().parent_path();
  std::ifstream cache(build / "CMakeCache.txt");
  const std::string_view key = "CMAKE_HOME_DIRECTORY:INTERNAL=";
  for (std::string line; std::getline(cache, line);) {
    if (line.starts_with(key)) return Harness{fs::path(line.substr(key.size())), build};
  }
  return std::nullopt;
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto topic = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto* bench = app.add_subcommand("bench", "run the side-by-side benchmarks (queue, pipe, manager, python)");
  bench->footer("Examples:\n  xproc bench queue\n  xproc bench manager --out /tmp/figures\n");
  bench->add_option("TOPIC", *topic, "one topic; all when omitted");
  bench->add_option("--out", *out, "where TOPIC.json goes (default: the build's ../bench)");
  bench->callback([topic, out] {
    const std::optional<Harness> harness = harness_of_this_build();
    const fs::path script = harness ? harness->source / "bench" / "run.sh" : fs::path();
    if (!harness || !fs::exists(script)) {
      throw ValueError(
          "xproc bench runs from a source checkout's build (this xproc is not in one); there, run "
          "./dev.sh bench [TOPIC]");
    }
    if (!fs::exists(harness->build / "bench")) {
      throw ValueError("this build (" + harness->build.string() +
                       ") has no benchmarks: the sanitizer presets leave them out; run ./dev.sh bench [TOPIC]");
    }
    const fs::path out_dir = out->empty() ? harness->build.parent_path() / "bench" : fs::path(*out);
    fs::create_directories(out_dir);
    const std::string venv = (harness->source / ".venv").string();
    std::vector<std::string> args = {script.string(), harness->build.string(), venv, out_dir.string()};
    if (!topic->empty()) args.push_back(*topic);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    throw OSError("cannot run " + script.string(), errno);
  });
}

}  // namespace xproc::cli
