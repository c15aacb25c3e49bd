// Side-by-side comparison of xproc's Manager with Python's multiprocessing.Manager and
// with Redis (redis-server on a unix socket, driven by redis-benchmark). Every xproc call
// is checked: gets compare the value read, appends are counted at the end.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "support/harness.h"
#include "xproc/manager.h"
#include "xproc/manager_server.h"
#include "xproc/process.h"

using namespace xproc::bench;
using xproc::Value;

namespace {

constexpr int kKeys = 1000;

// Per child: start and end stamps, and latency percentiles.
struct Stamps {
  int64_t start[8];
  int64_t end[8];
  double p50;
  double p99;
  int failures;
};

xproc::DictProxy filled_dict(xproc::Manager& manager) {
  auto d = manager.dict();
  xproc::ValueMap items;
  for (int i = 0; i < kKeys; ++i) items.set("k" + std::to_string(i), i);
  d.set_many(items);
  return d;
}

std::string key(size_t i) { return "k" + std::to_string(i % kKeys); }

// One call of a workload: set, get (checked) or append.
void call(const std::string& workload, const xproc::DictProxy& d, const xproc::ListProxy& l, size_t i) {
  if (workload == "set") {
    d.set(key(i), static_cast<int64_t>(i));
  } else if (workload == "get") {
    if (d[key(i)] != Value(static_cast<int64_t>(i % kKeys))) throw std::runtime_error("wrong value read");
  } else {
    l.append(static_cast<int64_t>(i));
  }
}

// Where the client processes find their manager: one started here (no address), or a
// server elsewhere, reached with `options`.
struct Target {
  std::string address;
  std::string key;
  xproc::ConnectOptions options;
  xproc::Manager manager() const {
    return address.empty() ? xproc::Manager() : xproc::Manager::connect(address, key, options);
  }
};

// `clients` processes each make `count` calls; aggregate calls per second.
double throughput(const std::string& workload, size_t count, int clients, const Target& target = {}) {
  xproc::Manager manager = target.manager();
  auto d = filled_dict(manager);
  auto l = manager.list();
  auto* stamps = shared_object<Stamps>();
  std::vector<xproc::Process> procs;
  for (int k = 0; k < clients; ++k) {
    procs.emplace_back([&, k] {
      stamps->start[k] = now_ns();
      for (size_t i = 0; i < count; ++i) call(workload, d, l, i);
      stamps->end[k] = now_ns();
    });
    procs.back().start();
  }
  for (auto& p : procs) {
    p.join();
    if (p.exitcode() != 0) throw std::runtime_error("client failed");
  }
  if (workload == "append" && l.size() != count * static_cast<size_t>(clients))
    throw std::runtime_error("lost appends");
  int64_t first = stamps->start[0], last = stamps->end[0];
  for (int k = 1; k < clients; ++k) {
    first = std::min(first, stamps->start[k]);
    last = std::max(last, stamps->end[k]);
  }
  release_shared(stamps);
  return static_cast<double>(count) * clients / ((last - first) / 1e9);
}

// One client times each call after 500 warm-up calls: (p50, p99) in microseconds.
std::pair<double, double> latency(const std::string& workload, size_t count, const Target& target = {}) {
  xproc::Manager manager = target.manager();
  auto d = filled_dict(manager);
  auto l = manager.list();
  auto* stamps = shared_object<Stamps>();
  xproc::Process client([&] {
    for (size_t i = 0; i < 500; ++i) call(workload, d, l, i);
    std::vector<double> samples;
    samples.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      int64_t t0 = now_ns();
      call(workload, d, l, i);
      samples.push_back((now_ns() - t0) / 1000.0);
    }
    stamps->p50 = percentile(samples, 0.50);
    stamps->p99 = percentile(samples, 0.99);
  });
  client.start();
  client.join();
  if (client.exitcode() != 0) throw std::runtime_error("latency client failed");
  auto result = std::make_pair(stamps->p50, stamps->p99);
  release_shared(stamps);
  return result;
}

// One client keeps `depth` gets in flight through the asynchronous API (send `depth`,
// then wait for all, as redis-benchmark -P does); gets per second. Manager::wait polls
// for the client spin window before it sleeps, as the blocking calls do. With
// `raw_requests` the gets are Cap'n Proto requests on the object's capability (one RPC
// each); without, Proxy::call_async (the calls of a turn leave in one batch).
double pipelined_gets(size_t count, unsigned depth, bool raw_requests) {
  xproc::Manager manager;
  auto d = filled_dict(manager);
  auto* stamps = shared_object<Stamps>();
  xproc::Process client([&] {
    auto dict = d.client();
    stamps->start[0] = now_ns();
    for (size_t i = 0; i < count; i += depth) {
      kj::Vector<kj::Promise<void>> replies(depth);
      for (unsigned j = 0; j < depth; ++j) {
        const size_t n = i + j;
        auto check = [n, stamps](int64_t got) {
          if (got != static_cast<int64_t>(n % kKeys)) ++stamps->failures;
        };
        if (raw_requests) {
          auto request = dict.getItemRequest();
          Value(key(n)).to_capnp(request.initKey());
          replies.add(request.send().then(
              [check](capnp::Response<xproc::schema::Dict::GetItemResults>&& r) { check(r.getValue().getInt64()); }));
        } else {
          replies.add(d.call_async("getItem", {key(n)}).then([check](Value v) { check(v.as_int()); }));
        }
      }
      manager.wait(kj::joinPromises(replies.releaseAsArray()));
    }
    stamps->end[0] = now_ns();
  });
  client.start();
  client.join();
  if (client.exitcode() != 0 || stamps->failures != 0) throw std::runtime_error("pipelined client failed");
  double rate = static_cast<double>(count) / ((stamps->end[0] - stamps->start[0]) / 1e9);
  release_shared(stamps);
  return rate;
}

// One client reads `batch` keys per get_many call; keys per second.
double batched_gets(size_t count, size_t batch) {
  xproc::Manager manager;
  auto d = filled_dict(manager);
  auto* stamps = shared_object<Stamps>();
  xproc::Process client([&] {
    std::vector<Value> keys;
    for (size_t j = 0; j < batch; ++j) keys.emplace_back(key(j));
    stamps->start[0] = now_ns();
    for (size_t i = 0; i < count; i += batch) {
      auto values = d.get_many(keys);
      if (values.size() != batch || values.back() != Value(static_cast<int64_t>((batch - 1) % kKeys)))
        ++stamps->failures;
    }
    stamps->end[0] = now_ns();
  });
  client.start();
  client.join();
  if (client.exitcode() != 0 || stamps->failures != 0) throw std::runtime_error("batched client failed");
  double rate = static_cast<double>(count) / ((stamps->end[0] - stamps->start[0]) / 1e9);
  release_shared(stamps);
  return rate;
}

// A Manager server on `options.address`, serving in a child process for the life of this
// object.
class ServedManager {
 public:
  explicit ServedManager(xproc::ServerOptions options) {
    xproc::ManagerServer server(std::move(options));
    address_ = server.address();
    pid_ = fork();
    if (pid_ == 0) {
      server.serve_forever();
      _exit(0);
    }
    server.close_unserved();
  }
  ~ServedManager() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  const std::string& address() const { return address_; }
  std::string port() const { return address_.substr(address_.rfind(':') + 1); }

 private:
  pid_t pid_ = -1;
  std::string address_;
};

// The test certificates (tests/support/make_certificates.sh) in a private directory.
class Certificates {
 public:
  Certificates() {
    dir_ = std::filesystem::temp_directory_path() / ("xproc-bench-tls-" + std::to_string(getpid()));
    const char* bench = std::getenv("XPROC_BENCH_DIR");
    const std::string script = std::string(bench ? bench : "bench") + "/../tests/support/make_certificates.sh";
    if (std::system(("sh " + script + " " + dir_.string()).c_str()) != 0) {
      throw std::runtime_error("cannot make test certificates (is openssl installed?)");
    }
  }
  ~Certificates() { std::filesystem::remove_all(dir_); }
  std::string operator()(const std::string& file) const { return (dir_ / file).string(); }

 private:
  std::filesystem::path dir_;
};

// Across machines: TLS against plain TCP on loopback, one server of each, taking turns:
// sequential gets, and four client processes setting.
void tls_rows(const Settings& s, std::vector<Row>& rows, size_t latency_calls, size_t calls) {
  const Certificates certs;
  const std::string key = "bench key";
  const ServedManager tcp(xproc::ServerOptions{.address = "tcp:127.0.0.1:0", .authkey = key});
  const ServedManager tls(
      xproc::ServerOptions{.address = "tls:127.0.0.1:0",
                           .authkey = key,
                           .tls = xproc::TlsServerOptions{certs("server.pem"), certs("server.key"), ""}});
  const Target over_tcp{tcp.address(), key};
  const Target over_tls{"tls:localhost:" + tls.port(), key, {.tls = {.ca_file = certs("ca.pem")}}};
  const auto p50 = medians_taking_turns(s, {[&] { return latency("get", latency_calls, over_tls).first; },
                                            [&] { return latency("get", latency_calls, over_tcp).first; }});
  rows.push_back({"dict get, sequential, TLS", "per-op p50 (us)", p50[0], "the same over plain TCP", p50[1], ""});
  const auto four = medians_taking_turns(s, {[&] { return throughput("set", calls, 4, over_tls); },
                                             [&] { return throughput("set", calls, 4, over_tcp); }});
  rows.push_back(
      {"dict set, 4 client processes, TLS", "aggregate ops/s", four[0], "the same over plain TCP", four[1], ""});
}

// redis-server on a unix socket in a private directory, for the life of this object.
class Redis {
 public:
  Redis() {
    dir_ = std::filesystem::temp_directory_path() / ("xproc-bench-redis-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    socket_ = (dir_ / "redis.sock").string();
    pid_ = fork();
    if (pid_ == 0) {
      int null = ::open("/dev/null", O_WRONLY);
      dup2(null, 1);
      execlp("redis-server", "redis-server", "--unixsocket", socket_.c_str(), "--port", "0", "--save", "",
             "--appendonly", "no", "--dir", dir_.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 500 && !std::filesystem::exists(socket_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!std::filesystem::exists(socket_)) throw std::runtime_error("redis-server did not start");
  }
  ~Redis() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    std::filesystem::remove_all(dir_);
  }

  // redis-benchmark's CSV row: (rps, p50 ms, p99 ms), median over `reps` runs.
  std::vector<double> benchmark(const std::string& args, int reps) const {
    std::vector<double> rps, p50, p99;
    for (int r = 0; r < reps; ++r) {
      std::string command = "redis-benchmark -s " + socket_ + " --csv " + args;
      FILE* pipe = popen(command.c_str(), "r");
      if (!pipe) throw std::runtime_error("cannot run redis-benchmark");
      char line[512];
      std::string last;
      while (fgets(line, sizeof(line), pipe)) last = line;
      if (pclose(pipe) != 0) throw std::runtime_error("redis-benchmark failed");
      // "GET","299850.06","0.048","0.016","0.055","0.063","0.079","1.735"
      std::vector<double> fields;
      for (size_t pos = last.find(",\""); pos != std::string::npos; pos = last.find(",\"", pos + 1)) {
        fields.push_back(std::stod(last.substr(pos + 2)));
      }
      if (fields.size() < 6) throw std::runtime_error("unexpected redis-benchmark output: " + last);
      rps.push_back(fields[0]);
      p50.push_back(fields[3] * 1000);
      p99.push_back(fields[5] * 1000);
    }
    return {median(rps), median(p50), median(p99)};
  }

 private:
  std::filesystem::path dir_;
  std::string socket_;
  pid_t pid_ = -1;
};

}  // namespace

int main(int argc, char** argv) {
  const Settings s = Settings::parse(argc, argv);
  std::vector<Row> rows;
  const size_t latency_calls = s.count(20'000);
  const size_t calls = s.count(50'000);

  // Sequential round trips: one call at a time from one client process.
  std::vector<double> set50, set99, get50, get99;
  for (int r = 0; r < s.reps; ++r) {
    auto [a, b] = latency("set", latency_calls);
    set50.push_back(a), set99.push_back(b);
    auto [c, d] = latency("get", latency_calls);
    get50.push_back(c), get99.push_back(d);
  }
  const std::string count_arg = " --count " + std::to_string(s.count(10'000));
  const std::string py_set = python_peer(s, "manager_peer.py", "--workload set --latency" + count_arg);
  const std::string py_get = python_peer(s, "manager_peer.py", "--workload get --latency" + count_arg);
  rows.push_back({"dict set, sequential", "per-op p50 (us)", median(set50), "multiprocessing.Manager",
                  json_number(py_set, "p50_us"), "<= 1.0"});
  rows.push_back({"dict set, sequential", "per-op p99 (us)", median(set99), "multiprocessing.Manager",
                  json_number(py_set, "p99_us"), ""});
  rows.push_back({"dict get, sequential", "per-op p50 (us)", median(get50), "multiprocessing.Manager",
                  json_number(py_get, "p50_us"), "<= 1.0"});
  rows.push_back({"dict get, sequential", "per-op p99 (us)", median(get99), "multiprocessing.Manager",
                  json_number(py_get, "p99_us"), ""});

  // Throughput from one and from four client processes.
  for (const std::string workload : {"set", "get", "append"}) {
    double x = median_of(s, [&] { return throughput(workload, calls, 1); });
    double py = json_number(python_peer(s, "manager_peer.py", "--workload " + workload + count_arg), "ops_per_s");
    rows.push_back({(workload == "append" ? "list append" : "dict " + workload) + ", 1 client", "ops/s", x,
                    "multiprocessing.Manager", py, ""});
  }
  const double x4 = median_of(s, [&] { return throughput("set", calls / 2, 4); });
  const double py4 =
      json_number(python_peer(s, "manager_peer.py", "--workload set --clients 4" + count_arg), "ops_per_s");
  rows.push_back({"dict set, 4 client processes", "aggregate ops/s", x4, "multiprocessing.Manager", py4, ">= 3"});

  tls_rows(s, rows, latency_calls / 4, calls / 4);

  // Many calls in flight: pipelined gets and batched get_many, against Redis.
  const double pipelined = median_of(s, [&] { return pipelined_gets(s.count(400'000), 16, false); });
  const double pipelined_raw = median_of(s, [&] { return pipelined_gets(s.count(200'000), 16, true); });
  const double batched = median_of(s, [&] { return batched_gets(s.count(2'000'000), 100); });
  Redis redis;
  const auto redis_get = redis.benchmark("-t get -c 1 -n " + std::to_string(s.count(50'000)), s.reps);
  const auto redis_set4 = redis.benchmark("-t set -c 4 -n " + std::to_string(s.count(100'000)), s.reps);
  const auto redis_p16 = redis.benchmark("-t get -c 1 -P 16 -n " + std::to_string(s.count(1'000'000)), s.reps);
  rows.push_back(
      {"dict get, sequential", "per-op p50 (us)", median(get50), "Redis GET (redis-benchmark)", redis_get[1], ""});
  rows.push_back(
      {"dict set, 4 client processes", "aggregate ops/s", x4, "Redis SET, 4 connections", redis_set4[0], ""});
  rows.push_back(
      {"dict get, 16-deep pipeline (call_async)", "ops/s", pipelined, "Redis GET -P 16", redis_p16[0], ">= 1"});
  rows.push_back({"dict get, 16-deep pipeline (raw Cap'n Proto requests)", "ops/s", pipelined_raw, "Redis GET -P 16",
                  redis_p16[0], ""});
  rows.push_back({"dict get_many, 100 keys a call", "keys/s", batched, "Redis GET -P 16", redis_p16[0], ">= 0.5"});
  rows.push_back({"dict get_many, 100 keys a call", "keys/s", batched, "floor of 500k ops/s", 500'000, ">= 1"});
  report(rows, s.out);
  return 0;
}
