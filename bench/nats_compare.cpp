// Side-by-side: xproc past one machine against libnats used directly, on a JetStream
// cluster of three nats-server processes on loopback (tests/nats/nats_cluster.py, started
// and stopped here), streams and buckets with three replicas.
//
//  - bridged throughput: local queue -> BridgeOut -> stream -> BridgeIn -> local queue,
//    against libnats publishing the same bytes (js_Publish, each one acknowledged, as the
//    bridge waits for each) and pulling them (batches of 64, each acknowledged);
//  - end-to-end latency of one message at a time on the same two paths;
//  - xproc::nats::Dict set / get / increment against kvStore_Put / kvStore_Get and the
//    get-then-update loop a direct client writes for an increment.
//
// Within each repetition xproc and libnats take turns (medians_taking_turns).
#include <nats/nats.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/harness.h"
#include "xproc/byte_queue.h"
#include "xproc/nats/bridge.h"
#include "xproc/nats/connection.h"
#include "xproc/nats/dict.h"

using namespace xproc::bench;
namespace nats = xproc::nats;

namespace {

constexpr int kReplicas = 3;

// The cluster: tests/nats/nats_cluster.py run as a child, which prints the servers' URLs
// once JetStream is ready and stops them on SIGINT.
class Cluster {
 public:
  explicit Cluster(const Settings& settings) {
    const char* bench_dir = std::getenv("XPROC_BENCH_DIR");
    if (bench_dir == nullptr) throw std::runtime_error("XPROC_BENCH_DIR is not set (bench/run.sh sets it)");
    const std::string script = std::string(bench_dir) + "/../tests/nats/nats_cluster.py";
    // mkdtemp replaces the template's trailing six X's; the directory is under $TMPDIR.
    std::string pattern = (std::filesystem::temp_directory_path() / "xproc-bench-nats-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      execlp(settings.python.c_str(), settings.python.c_str(), script.c_str(), (dir_ + "/cluster").c_str(), "3",
             static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    FILE* lines = fdopen(out[0], "r");
    char line[4096] = {};
    if (fgets(line, sizeof line, lines) == nullptr) {
      fclose(lines);
      throw std::runtime_error("the NATS cluster did not start (" + script + ")");
    }
    fclose(lines);
    std::string urls(line);
    if (!urls.empty() && urls.back() == '\n') urls.pop_back();
    for (size_t start = 0; start < urls.size();) {
      const size_t comma = std::min(urls.find(',', start), urls.size());
      servers_.push_back(urls.substr(start, comma - start));
      start = comma + 1;
    }
  }
  ~Cluster() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  const std::vector<std::string>& servers() const { return servers_; }

 private:
  pid_t pid_ = -1;
  std::string dir_;
  std::vector<std::string> servers_;
};

void check(natsStatus status, const char* what) {
  if (status != NATS_OK) throw std::runtime_error(std::string(what) + ": " + natsStatus_GetText(status));
}

// A name no earlier repetition used: every repetition gets fresh, empty streams.
std::string fresh(const std::string& stem) {
  static int counter = 0;
  return stem + "-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
}

void delete_stream(const nats::Connection& connection, const std::string& stream) {
  jsErrCode error = jsErrCode(0);
  js_DeleteStream(connection.jetstream(), stream.c_str(), nullptr, &error);
}

// --- bridged --------------------------------------------------------------------------------

// Two local queues joined by a BridgeOut and a BridgeIn running on threads of this process.
class Bridged {
 public:
  Bridged(const std::shared_ptr<nats::Connection>& connection, size_t message_bytes)
      : connection_(connection),
        from_name_(fresh("bench-nats-from")),
        to_name_(fresh("bench-nats-to")),
        subject_(fresh("bench.bridged")),
        from_(xproc::ByteQueue::create(from_name_)),
        to_(xproc::ByteQueue::create(to_name_)),
        message_(message_bytes, std::byte{7}) {
    out_.emplace(connection, nats::BridgeOutOptions{.queue = from_name_, .subject = subject_, .replicas = kReplicas});
    in_.emplace(connection, nats::BridgeInOptions{.stream = out_->stream(), .consumer = "bench", .queue = to_name_});
    out_thread_ = std::thread([this] { out_->run(stop_); });
    in_thread_ = std::thread([this] { in_->run(stop_); });
  }
  ~Bridged() {
    stop_ = true;
    out_thread_.join();
    in_thread_.join();
    const std::string stream = out_->stream();
    in_.reset();
    out_.reset();
    delete_stream(*connection_, stream);
    xproc::ByteQueue::remove(from_name_);
    xproc::ByteQueue::remove(to_name_);
  }

  // Messages per second from the first put to the last get of `count`.
  double throughput(size_t count) {
    const int64_t start = now_ns();
    std::thread producer([&] {
      for (size_t i = 0; i < count; ++i) from_.put_bytes(message_);
    });
    for (size_t i = 0; i < count; ++i) {
      if (to_.get_bytes(true, std::chrono::seconds(60)).size() != message_.size()) {
        throw std::runtime_error("bridged: a message changed on the way");
      }
    }
    producer.join();
    return double(count) / (double(now_ns() - start) / 1e9);
  }
  // One message at a time: microseconds from its put to its get.
  std::vector<double> latencies(size_t count) {
    std::vector<double> us;
    for (size_t i = 0; i < count; ++i) {
      const int64_t start = now_ns();
      from_.put_bytes(message_);
      to_.get_bytes(true, std::chrono::seconds(60));
      us.push_back(double(now_ns() - start) / 1e3);
    }
    return us;
  }

 private:
  std::shared_ptr<nats::Connection> connection_;
  std::string from_name_, to_name_, subject_;
  xproc::ByteQueue from_, to_;
  std::vector<std::byte> message_;
  std::optional<nats::BridgeOut> out_;
  std::optional<nats::BridgeIn> in_;
  std::atomic<bool> stop_{false};
  std::thread out_thread_, in_thread_;
};

// The same bytes through libnats alone: a stream made as the bridge makes it, a publisher
// waiting for each acknowledgement, a durable pull consumer acknowledging each message.
class Direct {
 public:
  Direct(const std::shared_ptr<nats::Connection>& connection, size_t message_bytes)
      : connection_(connection), subject_(fresh("bench.direct")), message_(message_bytes, 7) {
    stream_ = subject_;
    for (char& c : stream_) c = c == '.' ? '_' : c;
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    const char* subjects[] = {subject_.c_str()};
    config.Name = stream_.c_str();
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    config.Replicas = kReplicas;
    jsErrCode error = jsErrCode(0);
    check(js_AddStream(nullptr, js(), &config, nullptr, &error), "direct: stream");
    jsSubOptions options;
    jsSubOptions_Init(&options);
    options.Stream = stream_.c_str();
    check(js_PullSubscribe(&subscription_, js(), subject_.c_str(), "bench", nullptr, &options, &error),
          "direct: pull subscription");
  }
  ~Direct() {
    natsSubscription_Destroy(subscription_);
    delete_stream(*connection_, stream_);
  }

  double throughput(size_t count) {
    const int64_t start = now_ns();
    std::thread publisher([&] {
      for (size_t i = 0; i < count; ++i) publish();
    });
    for (size_t got = 0; got < count;) got += fetch(count - got);
    publisher.join();
    return double(count) / (double(now_ns() - start) / 1e9);
  }
  std::vector<double> latencies(size_t count) {
    std::vector<double> us;
    for (size_t i = 0; i < count; ++i) {
      const int64_t start = now_ns();
      publish();
      while (fetch(1) == 0) {
      }
      us.push_back(double(now_ns() - start) / 1e3);
    }
    return us;
  }

 private:
  jsCtx* js() const { return connection_->jetstream(); }
  void publish() {
    jsPubAck* ack = nullptr;
    jsErrCode error = jsErrCode(0);
    check(js_Publish(&ack, js(), subject_.c_str(), message_.data(), int(message_.size()), nullptr, &error),
          "direct: publish");
    jsPubAck_Destroy(ack);
  }
  // Fetches up to `most` (at most 64) and acknowledges each; returns how many came.
  size_t fetch(size_t most) {
    natsMsgList list = {};
    jsErrCode error = jsErrCode(0);
    const natsStatus status =
        natsSubscription_Fetch(&list, subscription_, int(std::min<size_t>(most, 64)), 5000, &error);
    if (status == NATS_TIMEOUT) return 0;
    check(status, "direct: fetch");
    const size_t got = size_t(list.Count);
    for (int i = 0; i < list.Count; ++i) {
      if (size_t(natsMsg_GetDataLength(list.Msgs[i])) != message_.size()) {
        throw std::runtime_error("direct: a message changed on the way");
      }
      natsMsg_Ack(list.Msgs[i], nullptr);
    }
    natsMsgList_Destroy(&list);
    return got;
  }

  std::shared_ptr<nats::Connection> connection_;
  std::string subject_, stream_;
  std::vector<char> message_;
  natsSubscription* subscription_ = nullptr;
};

void bridged_rows(const Settings& s, const std::shared_ptr<nats::Connection>& connection, std::vector<Row>& rows) {
  for (const size_t size : {size_t{64}, size_t{4096}}) {
    const size_t count = s.count(size == 64 ? 4000 : 2000);
    const auto rates = medians_taking_turns(s, {[&] { return Bridged(connection, size).throughput(count); },
                                                [&] { return Direct(connection, size).throughput(count); }});
    const std::string label = size == 64 ? "64 B" : "4 KiB";
    rows.push_back({"bridged " + label + ", local queue -> NATS -> local queue", "msgs/s", rates[0],
                    "libnats publish+pull", rates[1], ">= 0.8"});
  }
  const size_t count = s.count(1000);
  std::vector<double> ours, theirs;
  for (int r = 0; r < s.reps; ++r) {
    auto a = Bridged(connection, 64).latencies(count);
    ours.insert(ours.end(), a.begin(), a.end());
    auto b = Direct(connection, 64).latencies(count);
    theirs.insert(theirs.end(), b.begin(), b.end());
  }
  rows.push_back({"bridged 64 B, one at a time", "end-to-end p50 (us)", percentile(ours, 0.50), "libnats publish+pull",
                  percentile(theirs, 0.50), ""});
  rows.push_back({"bridged 64 B, one at a time", "end-to-end p99 (us)", percentile(ours, 0.99), "libnats publish+pull",
                  percentile(theirs, 0.99), ""});
}

// --- Dict -------------------------------------------------------------------------------------

struct KvBucket {
  kvStore* kv = nullptr;
  std::string name;
  KvBucket(const nats::Connection& connection, std::string bucket) : name(std::move(bucket)) {
    kvConfig config;
    kvConfig_Init(&config);
    config.Bucket = name.c_str();
    config.Replicas = kReplicas;
    config.History = 1;
    check(js_CreateKeyValue(&kv, connection.jetstream(), &config), "direct: bucket");
  }
  ~KvBucket() { kvStore_Destroy(kv); }
};

void dict_rows(const Settings& s, const std::shared_ptr<nats::Connection>& connection, std::vector<Row>& rows) {
  const size_t count = s.count(2000);
  const std::string ours_name = fresh("bench-dict"), theirs_name = fresh("bench-kv");
  nats::Dict dict(connection, ours_name, {.replicas = kReplicas});
  KvBucket kv(*connection, theirs_name);
  // The same bytes on both sides: a Value int as Cap'n Proto.
  const auto words = xproc::Value(int64_t{12345}).encode();
  const auto* bytes = reinterpret_cast<const char*>(words.begin());
  const int size = int(words.size() * sizeof(capnp::word));
  const auto rate = [&](auto&& op) {
    const int64_t start = now_ns();
    for (size_t i = 0; i < count; ++i) op(i);
    return double(count) / (double(now_ns() - start) / 1e9);
  };
  const auto key = [](size_t i) { return "k" + std::to_string(i % 100); };

  const auto sets = medians_taking_turns(
      s, {[&] { return rate([&](size_t i) { dict.set(key(i), xproc::Value(int64_t{12345})); }); },
          [&] {
            return rate([&](size_t i) { check(kvStore_Put(nullptr, kv.kv, key(i).c_str(), bytes, size), "put"); });
          }});
  rows.push_back({"Dict set", "ops/s", sets[0], "libnats kvStore_Put", sets[1], ">= 0.8"});

  const auto gets = medians_taking_turns(s, {[&] { return rate([&](size_t i) { (void)dict.at(key(i)); }); },
                                             [&] {
                                               return rate([&](size_t i) {
                                                 kvEntry* entry = nullptr;
                                                 check(kvStore_Get(&entry, kv.kv, key(i).c_str()), "get");
                                                 kvEntry_Destroy(entry);
                                               });
                                             }});
  rows.push_back({"Dict get", "ops/s", gets[0], "libnats kvStore_Get", gets[1], ">= 0.8"});

  // A direct client's increment: read the entry and its revision, update at that revision,
  // again on a conflict (none here: one writer).
  const auto increments = medians_taking_turns(
      s, {[&] { return rate([&](size_t) { dict.increment("counter"); }); },
          [&] {
            return rate([&](size_t) {
              for (;;) {
                kvEntry* entry = nullptr;
                uint64_t revision = 0;
                if (kvStore_Get(&entry, kv.kv, "counter") == NATS_OK) {
                  revision = kvEntry_Revision(entry);
                  kvEntry_Destroy(entry);
                }
                const natsStatus status = revision == 0
                                              ? kvStore_Create(nullptr, kv.kv, "counter", bytes, size)
                                              : kvStore_Update(nullptr, kv.kv, "counter", bytes, size, revision);
                if (status == NATS_OK) return;
              }
            });
          }});
  rows.push_back(
      {"Dict increment", "ops/s", increments[0], "libnats get + update at revision", increments[1], ">= 0.8"});
  js_DeleteKeyValue(connection->jetstream(), ours_name.c_str());
  js_DeleteKeyValue(connection->jetstream(), theirs_name.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Settings s = Settings::parse(argc, argv);
    Cluster cluster(s);
    auto connection = nats::connect({.servers = cluster.servers()});
    std::vector<Row> rows;
    bridged_rows(s, connection, rows);
    dict_rows(s, connection, rows);
    report(rows, s.out);
  } catch (const std::exception& e) {
    std::cerr << "xproc_nats_compare: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
