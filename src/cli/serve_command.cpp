// `xproc serve --address ADDRESS [--authkey-file FILE] [--spin-us N]`: runs a Manager
// server in the foreground until a client calls shutdown (or the process is stopped).
// Prints "serving on <address>" once it listens, so scripts can wait for that line.
#include "serve_command.h"

#include <sys/stat.h>

#include <fstream>
#include <ctime>
#include <iostream>
#include <sstream>

#include "xproc/errors.h"
#include "xproc/manager_server.h"

namespace xproc::cli {
namespace {

// The key is the file's bytes, less one trailing newline. Like ssh with its keys, a file
// that others may read is refused.
// Local time as 2026-11-25T03:04:05, for the connection log.
std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &local);
  return text;
}

std::string read_authkey(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) throw_os_error("stat " + path, errno);
  if (info.st_mode & (S_IRWXG | S_IRWXO)) {
    throw ValueError("authkey file " + path + " is readable by others; chmod 600 it");
  }
  std::ifstream file(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << file.rdbuf();
  std::string key = bytes.str();
  if (!key.empty() && key.back() == '\n') key.pop_back();
  if (key.empty()) throw ValueError("authkey file " + path + " is empty");
  return key;
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto* serve = app.add_subcommand("serve", "Run a Manager server in the foreground");
  auto address = std::make_shared<std::string>();
  auto authkey_file = std::make_shared<std::string>();
  auto spin_us = std::make_shared<int64_t>(50);
  serve->add_option("--address", *address, "unix:/path, /path or tcp:host:port (port 0 picks one)")->required();
  serve->add_option("--authkey-file", *authkey_file, "file holding the authkey (required for TCP)")
      ->check(CLI::ExistingFile);
  serve->add_option("--spin-us", *spin_us, "microseconds to poll after a call before sleeping")
      ->check(CLI::NonNegativeNumber);
  serve->callback([address, authkey_file, spin_us] {
    ServerOptions options;
    options.address = *address;
    if (!authkey_file->empty()) options.authkey = read_authkey(*authkey_file);
    options.spin = std::chrono::microseconds(*spin_us);
    options.log = [](const std::string& event) { std::cout << timestamp() << " " << event << std::endl; };
    ManagerServer server(std::move(options));
    std::cout << "serving on " << server.address() << std::endl;
    server.serve_forever();
  });
}

}  // namespace xproc::cli
