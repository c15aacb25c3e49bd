// The harness lives in the source tree (bench/run.sh) and the comparison programs in the
// build tree this command was built in; an installed `xproc` has neither and says so.
#include "bench_command.h"

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "xproc/errors.h"

namespace xproc::cli {

void add_bench_command(CLI::App& app) {
  auto topic = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>(std::string(XPROC_BINARY_DIR) + "/../bench");
  auto* bench = app.add_subcommand("bench", "run the side-by-side benchmarks (queue, pipe, manager, python)");
  bench->add_option("TOPIC", *topic, "one topic; all when omitted");
  bench->add_option("--out", *out, "where TOPIC.json goes")->capture_default_str();
  bench->callback([topic, out] {
    namespace fs = std::filesystem;
    const fs::path script = fs::path(XPROC_SOURCE_DIR) / "bench" / "run.sh";
    if (!fs::exists(script)) {
      throw ValueError("xproc bench runs from a source checkout's build (this xproc has no " + script.string() +
                       "); there, run ./dev.sh bench [TOPIC]");
    }
    if (!fs::exists(fs::path(XPROC_BINARY_DIR) / "bench")) {
      throw ValueError(std::string("this build (") + XPROC_BINARY_DIR +
                       ") has no benchmarks: the sanitizer presets leave them out; run ./dev.sh bench [TOPIC]");
    }
    fs::create_directories(*out);
    const std::string venv = std::string(XPROC_SOURCE_DIR) + "/.venv";
    std::vector<std::string> args = {script.string(), XPROC_BINARY_DIR, venv, *out};
    if (!topic->empty()) args.push_back(*topic);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    throw OSError("cannot run " + script.string(), errno);
  });
}

}  // namespace xproc::cli
