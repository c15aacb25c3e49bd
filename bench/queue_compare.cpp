// Side-by-side comparison of xproc's shared-memory queue with its peers, on the same
// machine in the same run: iceoryx2's publish-subscribe (bench/peers/iceoryx2, a Rust
// binary `./dev.sh bench` builds), Boost.Interprocess message_queue, an AF_UNIX
// socketpair, a single-producer ring with cached indices (the practical limit) and
// Python's multiprocessing.Queue. Every message is counted, per-producer order is checked through
// sequence numbers, and the last message of each producer is compared in full.
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench.capnp.h"
#include "support/harness.h"
#include "xproc/queue.h"
#include "xproc/queue_waiter.h"

namespace bip = boost::interprocess;
using namespace xproc::bench;

namespace {

constexpr uint64_t kStop = ~uint64_t{0};

// --- the contenders: each is made before fork and used by both sides -----------------

struct XprocBytes {
  xproc::ByteQueue q;
  explicit XprocBytes(size_t max_message)
      : q(xproc::QueueOptions{.capacity_bytes = std::max<size_t>(8u << 20, 4 * max_message + 64)}) {}
  void send(const std::byte* data, size_t n) { q.put_bytes({data, n}); }
  size_t recv(std::byte* out, size_t) {  // copy-out
    size_t n = 0;
    q.get_in_place([&](std::span<const std::byte> m) {
      std::memcpy(out, m.data(), m.size());
      n = m.size();
    });
    return n;
  }
};

// Reads in place: only the sequence header and (for the check) the full last message.
struct XprocZeroCopy : XprocBytes {
  using XprocBytes::XprocBytes;
  size_t recv(std::byte* out, size_t) {
    size_t n = 0;
    q.get_in_place([&](std::span<const std::byte> m) {
      std::memcpy(out, m.data(), 16);  // the header the harness inspects
      if (m.size() > 16 && static_cast<char>(m[16]) == 'L') std::memcpy(out, m.data(), m.size());
      n = m.size();
    });
    return n;
  }
};

// The consumer of an event loop (examples/cpp/epoll_loop.cpp): a get that does not block
// and, when the queue is empty, epoll_wait on a QueueWaiter's doorbell. The waiter is made
// in the consumer's process at its first empty queue.
struct XprocEpoll : XprocBytes {
  using XprocBytes::XprocBytes;
  std::optional<xproc::QueueWaiter> waiter;
  int epoll = -1;
  size_t recv(std::byte* out, size_t) {
    size_t n = 0;
    auto take = [&](std::span<const std::byte> m) {
      std::memcpy(out, m.data(), m.size());
      n = m.size();
    };
    for (;;) {
      if (q.get_in_place(take, false)) return n;
      if (!waiter) {
        waiter.emplace(q, xproc::QueueWaiter::For::kMessage);
        epoll = epoll_create1(EPOLL_CLOEXEC);
        epoll_event interest{.events = EPOLLIN, .data = {}};
        if (epoll < 0 || epoll_ctl(epoll, EPOLL_CTL_ADD, waiter->fileno(), &interest) != 0) {
          throw std::runtime_error("epoll");
        }
        continue;
      }
      if (!waiter->arm()) continue;
      epoll_event event;
      epoll_wait(epoll, &event, 1, static_cast<int>(xproc::QueueWaiter::kRecheck.count()));
      waiter->clear();
    }
  }
};

struct BoostQueue {
  std::string name;
  std::unique_ptr<bip::message_queue> mq;
  BoostQueue(size_t depth, size_t size) : name("xproc-bench-boost-" + std::to_string(getpid())) {
    bip::message_queue::remove(name.c_str());
    mq = std::make_unique<bip::message_queue>(bip::create_only, name.c_str(), depth, size);
  }
  ~BoostQueue() { bip::message_queue::remove(name.c_str()); }
  void send(const std::byte* data, size_t n) { mq->send(data, n, 0); }
  size_t recv(std::byte* out, size_t cap) {
    bip::message_queue::size_type n = 0;
    unsigned priority = 0;
    mq->receive(out, cap, n, priority);
    return n;
  }
};

// One write() per message, buffered reads (as BASELINES measured): fixed-size frames.
struct SocketPair {
  int fds[2];
  size_t size;
  std::vector<std::byte> buffer;
  size_t begin = 0, end = 0;
  explicit SocketPair(size_t message_size) : size(message_size), buffer(1 << 16) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) throw std::runtime_error("socketpair");
  }
  ~SocketPair() {
    close(fds[0]);
    close(fds[1]);
  }
  void send(const std::byte* data, size_t n) {
    for (size_t done = 0; done < n;) {
      const ssize_t w = write(fds[0], data + done, n - done);
      if (w <= 0) throw std::runtime_error("write");
      done += static_cast<size_t>(w);
    }
  }
  size_t recv(std::byte* out, size_t) {
    for (size_t got = 0; got < size;) {
      if (begin == end) {
        const ssize_t r = read(fds[1], buffer.data(), buffer.size());
        if (r <= 0) throw std::runtime_error("read");
        begin = 0;
        end = static_cast<size_t>(r);
      }
      const size_t take = std::min(size - got, end - begin);
      std::memcpy(out + got, buffer.data() + begin, take);
      begin += take;
      got += take;
    }
    return size;
  }
};

// The practical limit: one producer, one consumer, fixed 64-byte slots, both sides spin,
// each keeping a cached copy of the other's index so that it reads the other's cache line
// only when the cached one says full or empty (rigtorp::SPSCQueue's design).
struct SpinRing {
  static constexpr size_t kSlots = 4096, kSlotSize = 64;
  struct alignas(64) Shared {
    std::atomic<uint64_t> head{0};
    alignas(64) std::atomic<uint64_t> tail{0};
    alignas(64) std::byte slots[kSlots][kSlotSize];
  };
  Shared* shared = shared_object<Shared>();
  uint64_t cached_head = 0, cached_tail = 0;
  ~SpinRing() { release_shared(shared); }
  void send(const std::byte* data, size_t n) {
    const uint64_t t = shared->tail.load(std::memory_order_relaxed);
    while (t - cached_head >= kSlots) cached_head = shared->head.load(std::memory_order_acquire);
    std::memcpy(shared->slots[t % kSlots], data, n);
    shared->tail.store(t + 1, std::memory_order_release);
  }
  size_t recv(std::byte* out, size_t) {
    const uint64_t h = shared->head.load(std::memory_order_relaxed);
    while (h == cached_tail) cached_tail = shared->tail.load(std::memory_order_acquire);
    std::memcpy(out, shared->slots[h % kSlots], kSlotSize);
    shared->head.store(h + 1, std::memory_order_release);
    return kSlotSize;
  }
};

// --- workloads ----------------------------------------------------------------------

struct Stamps {
  std::atomic<int64_t> start{INT64_MAX};
  std::atomic<int64_t> end{0};
  std::atomic<int> failures{0};
};

// A message: a 16-byte header (producer id and sequence number), then 'x' bytes, or 'L'
// bytes in a producer's last message. Only the header changes between messages, so the
// body is written only when its byte changes (`body` says what `m` holds): rewriting 64 KiB
// per message would make the harness, not the channel, the bottleneck.
void fill_message(std::byte* m, size_t size, uint64_t producer, uint64_t seq, bool last, char& body) {
  const char fill = last ? 'L' : 'x';
  if (body != fill) {
    std::memset(m, fill, size);
    body = fill;
  }
  const uint64_t header[2] = {(producer << 48) | seq, 0};
  std::memcpy(m, header, std::min<size_t>(size, 16));
}

void wait_all(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("a benchmark child failed");
  }
}

// msgs/s for `producers` x `per_producer` messages of `size` bytes into `consumers`.
template <typename Channel>
double throughput(Channel& ch, size_t size, int producers, int consumers, size_t per_producer) {
  auto* stamps = shared_object<Stamps>();
  std::vector<pid_t> children;
  std::fflush(nullptr);
  for (int p = 0; p < producers; ++p) {
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<std::byte> m(size);
      char body = 0;
      int64_t expected = INT64_MAX, now = now_ns();
      while (now < expected && !stamps->start.compare_exchange_weak(expected, now)) {
      }
      for (size_t i = 0; i < per_producer; ++i) {
        fill_message(m.data(), size, p, i, i + 1 == per_producer, body);
        ch.send(m.data(), size);
      }
      _exit(0);
    }
    children.push_back(pid);
  }
  auto consume = [&] {
    std::vector<std::byte> m(size), expected(size);
    std::vector<int64_t> last(producers, -1);  // the last sequence number seen of each producer
    for (;;) {
      ch.recv(m.data(), size);
      uint64_t header;
      std::memcpy(&header, m.data(), 8);
      if (header == kStop) break;
      const uint64_t producer = header >> 48, seq = header & 0xffffffffffffULL;
      if (producer >= last.size()) {
        stamps->failures++;
        continue;
      }
      if (static_cast<int64_t>(seq) <= last[producer]) stamps->failures++;
      last[producer] = static_cast<int64_t>(seq);
      if (seq + 1 == per_producer) {
        char body = 0;
        fill_message(expected.data(), size, producer, seq, true, body);
        if (std::memcmp(expected.data(), m.data(), size) != 0) stamps->failures++;
        stamps->end.store(std::max(stamps->end.load(), now_ns()));
      }
    }
  };
  std::vector<pid_t> consumer_pids;
  for (int c = 0; c < consumers; ++c) {
    const pid_t pid = fork();
    if (pid == 0) {
      consume();
      _exit(0);
    }
    consumer_pids.push_back(pid);
  }
  wait_all(children);
  std::vector<std::byte> stop(size);
  std::memcpy(stop.data(), &kStop, 8);
  for (int c = 0; c < consumers; ++c) ch.send(stop.data(), size);
  wait_all(consumer_pids);
  const double seconds = static_cast<double>(stamps->end.load() - stamps->start.load()) / 1e9;
  const int failures = stamps->failures.load();
  release_shared(stamps);
  if (failures) throw std::runtime_error("order or content check failed");
  return static_cast<double>(producers * per_producer) / seconds;
}

// Round-trip samples (µs) of a parent and an echoing child over two channels.
template <typename Channel>
std::pair<double, double> pingpong(Channel& there, Channel& back, size_t size, size_t rounds) {
  const size_t warmup = 1000;
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<std::byte> m(size);
    for (size_t i = 0; i < rounds + warmup; ++i) {
      there.recv(m.data(), size);
      back.send(m.data(), size);
    }
    _exit(0);
  }
  std::vector<std::byte> m(size), reply(size);
  std::vector<double> samples;
  char body = 0;
  for (size_t i = 0; i < rounds + warmup; ++i) {
    fill_message(m.data(), size, 0, i, false, body);
    const int64_t t0 = now_ns();
    there.send(m.data(), size);
    back.recv(reply.data(), size);
    const int64_t t1 = now_ns();
    if (std::memcmp(m.data(), reply.data(), size) != 0) throw std::runtime_error("echo mismatch");
    if (i >= warmup) samples.push_back(static_cast<double>(t1 - t0) / 1000.0);
  }
  wait_all({pid});
  return {percentile(samples, 0.5), percentile(samples, 0.99)};
}

// How the typed producer puts: the builder it filled (serialization is copying its
// segments, as capnp::writeMessage does), or a reader (a deep copy through Cap'n Proto).
enum class TypedPut { kBuilder, kReader };

// Typed 64-byte Cap'n Proto messages, serialization and validation included.
double typed_throughput(size_t count, TypedPut how) {
  xproc::Queue<Sample> q;
  auto* stamps = shared_object<Stamps>();
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    capnp::MallocMessageBuilder builder;
    auto sample = builder.initRoot<Sample>();
    auto payload = sample.initPayload(16);
    std::memset(payload.begin(), 'x', payload.size());
    stamps->start.store(now_ns());
    for (size_t i = 0; i < count; ++i) {
      sample.setSeq(i);
      if (how == TypedPut::kBuilder) {
        q.put(builder);
      } else {
        q.put(sample.asReader());
      }
    }
    _exit(0);
  }
  for (size_t i = 0; i < count; ++i) {
    auto m = q.get();
    if (m->getSeq() != i || m->getPayload().size() != 16) stamps->failures++;
  }
  stamps->end.store(now_ns());
  wait_all({pid});
  const double seconds = static_cast<double>(stamps->end.load() - stamps->start.load()) / 1e9;
  const bool ok = stamps->failures.load() == 0;
  release_shared(stamps);
  if (!ok) throw std::runtime_error("typed order check failed");
  return static_cast<double>(count) / seconds;
}

size_t typed_message_size() {
  capnp::MallocMessageBuilder builder;
  builder.initRoot<Sample>().initPayload(16);
  return xproc::flat_size(capnp::AnyStruct::Reader(capnp::toAny(builder.getRoot<Sample>().asReader())));
}

// Messages written and read in place: the producer reserves `size` bytes in the ring and
// writes all of them there (a sequence number, then its low byte repeated); the consumer
// checks the number and the last byte where the message lies. What iceoryx2's
// loan-write-send and receive-in-place do, with the same writes and reads (in-place mode of
// bench/peers/iceoryx2).
double in_place_throughput(size_t size, size_t count) {
  xproc::ByteQueue q(xproc::QueueOptions{.capacity_bytes = 4 * size + 64});
  auto* stamps = shared_object<Stamps>();
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    stamps->start.store(now_ns());
    for (uint64_t i = 0; i < count; ++i) {
      q.put_in_place(size, [&](std::byte* m) {
        std::memcpy(m, &i, 8);
        std::memset(m + 8, static_cast<int>(i & 0xff), size - 8);
      });
    }
    _exit(0);
  }
  for (uint64_t i = 0; i < count; ++i) {
    q.get_in_place([&](std::span<const std::byte> m) {
      uint64_t seq;
      std::memcpy(&seq, m.data(), 8);
      if (seq != i || m.size() != size || m.back() != static_cast<std::byte>(i & 0xff)) stamps->failures++;
    });
  }
  stamps->end.store(now_ns());
  wait_all({pid});
  const double seconds = static_cast<double>(stamps->end.load() - stamps->start.load()) / 1e9;
  const bool ok = stamps->failures.load() == 0;
  release_shared(stamps);
  if (!ok) throw std::runtime_error("in-place order or content check failed");
  return static_cast<double>(count) / seconds;
}

// The iceoryx2 peer (bench/peers/iceoryx2): XPROC_BENCH_ICEORYX2, else where `./dev.sh
// bench` builds it beside the sources. Absent (a build without cargo, the smoke test of a
// fresh tree): its rows are left out, and said so.
std::optional<std::string> iceoryx2_peer() {
  const char* chosen = std::getenv("XPROC_BENCH_ICEORYX2");
  const char* bench_dir = std::getenv("XPROC_BENCH_DIR");
  const std::string path = chosen ? chosen
                                  : std::string(bench_dir ? bench_dir : "bench") +
                                        "/../build/bench-peers/iceoryx2/release/xproc-bench-iceoryx2";
  if (access(path.c_str(), X_OK) == 0) return path;
  std::fprintf(stderr, "iceoryx2 rows left out: no peer binary at %s (./dev.sh bench queue builds it)\n", path.c_str());
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  const Settings s = Settings::parse(argc, argv);
  std::vector<Row> rows;
  // One repetition of a channel's run; the rows below take turns with their peers.
  using Rep = std::function<double()>;
  auto rep = [](auto make, size_t size, int p, int c, size_t n) -> Rep {
    return [=] {
      auto ch = make();
      return throughput(*ch, size, p, c, n);
    };
  };
  auto xproc_bytes = [](size_t size) { return [size] { return std::make_unique<XprocBytes>(size); }; };
  auto xproc_zero = [](size_t size) { return [size] { return std::make_unique<XprocZeroCopy>(size); }; };
  auto boost = [](size_t depth, size_t size) { return [=] { return std::make_unique<BoostQueue>(depth, size); }; };

  // iceoryx2's runs: one process of the peer binary per repetition, taking turns with ours.
  const std::optional<std::string> iceoryx2 = iceoryx2_peer();
  auto iceoryx2_rep = [&](const std::string& mode, size_t size, size_t count, const std::string& key) -> Rep {
    const std::string command =
        *iceoryx2 + " " + mode + " --size " + std::to_string(size) + " --count " + std::to_string(count);
    return [command, key] { return json_number(run_peer(command), key); };
  };

  // 64 B, one producer, one consumer; the typed struct, serialization and validation
  // included (put(builder) as the guide writes it; put(reader), a deep copy, beside it).
  const size_t n64 = s.count(2'000'000);
  std::vector<Rep> contenders64{rep(xproc_bytes(64), 64, 1, 1, n64),
                                rep(boost(1024, 64), 64, 1, 1, n64),
                                rep([] { return std::make_unique<SpinRing>(); }, 64, 1, 1, n64),
                                rep([] { return std::make_unique<SocketPair>(64); }, 64, 1, 1, n64),
                                [&] { return typed_throughput(n64, TypedPut::kBuilder); },
                                [&] { return typed_throughput(n64, TypedPut::kReader); },
                                rep([] { return std::make_unique<XprocEpoll>(64); }, 64, 1, 1, n64)};
  if (iceoryx2) contenders64.push_back(iceoryx2_rep("throughput", 64, n64, "msgs_per_s"));
  const auto m64 = medians_taking_turns(s, contenders64);
  const double x64 = m64[0], b64 = m64[1], spin64 = m64[2], sock64 = m64[3], typed = m64[4], typed_reader = m64[5],
               epoll64 = m64[6];
  if (iceoryx2) rows.push_back({"1P->1C 64 B bytes", "msgs/s", x64, "iceoryx2 publish-subscribe", m64[7], ">= 5.0"});
  rows.push_back({"1P->1C 64 B bytes", "msgs/s", x64, "cached-index SPSC ring", spin64, ">= 0.7"});
  rows.push_back({"1P->1C 64 B bytes", "msgs/s", x64, "Boost message_queue", b64, ">= 2.0"});
  rows.push_back(
      {"1P->1C 64 B bytes, epoll-driven consumer", "msgs/s", epoll64, "xproc blocking get, same run", x64, ">= 0.8"});
  rows.push_back({"1P->1C 64 B bytes", "msgs/s", x64, "socketpair", sock64, ""});
  rows.push_back({"1P->1C 64 B typed struct (" + std::to_string(typed_message_size()) + " B)", "msgs/s", typed,
                  "Boost message_queue 64 B bytes", b64, ">= 1.0"});
  const double py_dict =
      json_number(python_peer(s, "queue_peer.py", "--workload small_dict --count " + std::to_string(s.count(200'000))),
                  "msgs_per_s");
  rows.push_back({"1P->1C 64 B typed struct", "msgs/s", typed, "multiprocessing.Queue small dict", py_dict, ">= 40"});
  rows.push_back({"1P->1C 64 B typed struct, put(reader)", "msgs/s", typed_reader, "multiprocessing.Queue small dict",
                  py_dict, ""});

  // Several producers or consumers.
  for (auto [p, c] : {std::pair{2, 1}, std::pair{1, 2}}) {
    const std::string w = std::to_string(p) + "P->" + std::to_string(c) + "C 64 B bytes";
    const auto m =
        medians_taking_turns(s, {rep(xproc_bytes(64), 64, p, c, n64 / p), rep(boost(1024, 64), 64, p, c, n64 / p)});
    rows.push_back({w, "msgs/s", m[0], "Boost message_queue", m[1], ">= 1.5"});
  }

  // 4 KiB and 64 KiB.
  const size_t n4k = s.count(400'000);
  const auto m4k =
      medians_taking_turns(s, {rep(xproc_bytes(4096), 4096, 1, 1, n4k), rep(boost(256, 4096), 4096, 1, 1, n4k)});
  rows.push_back({"1P->1C 4 KiB bytes", "msgs/s", m4k[0], "Boost message_queue", m4k[1], ""});
  const size_t n64k = s.count(60'000);
  const auto m64k =
      medians_taking_turns(s, {rep(xproc_bytes(65536), 65536, 1, 1, n64k), rep(xproc_zero(65536), 65536, 1, 1, n64k),
                               rep(boost(64, 65536), 65536, 1, 1, n64k)});
  rows.push_back({"1P->1C 64 KiB copy-out", "msgs/s", m64k[0], "Boost message_queue", m64k[2], ">= 1.2"});
  rows.push_back({"1P->1C 64 KiB zero-copy read", "msgs/s", m64k[1], "Boost message_queue", m64k[2], ">= 2.0"});

  // 1 MiB.
  const size_t n1m = s.count(3'000);
  const auto m1m = medians_taking_turns(
      s, {rep(xproc_bytes(1 << 20), 1 << 20, 1, 1, n1m), rep(boost(16, 1 << 20), 1 << 20, 1, 1, n1m)});
  const double x1m = m1m[0];
  const double py1m = json_number(
      python_peer(s, "queue_peer.py", "--workload bytes --size 1048576 --count " + std::to_string(s.count(1000))),
      "msgs_per_s");
  rows.push_back({"1P->1C 1 MiB bytes", "msgs/s", x1m, "multiprocessing.Queue 1 MiB bytes", py1m, ">= 30"});
  rows.push_back({"1P->1C 1 MiB bytes", "msgs/s", x1m, "Boost message_queue", m1m[1], ""});

  // 1 MiB and 8 MiB written and read in place: iceoryx2's home ground (loan, write, send;
  // receive and read where the sample lies).
  if (iceoryx2) {
    for (const size_t mib : {size_t{1}, size_t{8}}) {
      const size_t size = mib << 20;
      const size_t n = s.count(mib == 1 ? 3'000 : 400);
      const auto m = medians_taking_turns(
          s, {[=] { return in_place_throughput(size, n); }, iceoryx2_rep("in-place", size, n, "msgs_per_s")});
      rows.push_back({"1P->1C " + std::to_string(mib) + " MiB written and read in place", "msgs/s", m[0],
                      "iceoryx2 loan-write-send, receive in place", m[1], ">= 1.0"});
    }
  }

  // Large messages, through the queue against one memcpy of the same size in this process
  // (the floor of any copy-semantics transport: a put copies in, a get copies out).
  for (const size_t mib : {size_t{16}, size_t{100}}) {
    const size_t size = mib << 20;
    const size_t n = std::max<size_t>(4, s.count(mib == 16 ? 200 : 30));
    auto copies = [size, n] {
      std::vector<std::byte> from(size, std::byte{1}), to(size);
      const auto start = std::chrono::steady_clock::now();
      for (size_t i = 0; i < n; ++i) {
        from[i % size] = static_cast<std::byte>(i);
        std::memcpy(to.data(), from.data(), size);
        asm volatile("" : : "r"(to.data()) : "memory");
      }
      return static_cast<double>(n) / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    const auto m = medians_taking_turns(s, {rep(xproc_bytes(size), size, 1, 1, n), copies});
    rows.push_back(
        {"1P->1C " + std::to_string(mib) + " MiB bytes", "msgs/s", m[0], "memcpy of the same size", m[1], ""});
  }

  // What an idle queue holds: shared memory reserved right after creation.
  const xproc::ByteQueue idle;
  rows.push_back({"idle Queue, default options", "KiB of shared memory", idle.info().bytes_reserved / 1024.0, "target",
                  256.0, "<= 1.0"});

  // Ping-pong round trips.
  const size_t rounds = s.count(20'000);
  std::vector<double> xp50, xp99, sp50, sp99, ip50, ip99;
  for (int r = 0; r < s.reps; ++r) {
    XprocBytes a(64), b(64);
    auto [p50, p99] = pingpong(a, b, 64, rounds);
    xp50.push_back(p50);
    xp99.push_back(p99);
    SocketPair c(64), d(64);
    // The socketpair's two directions: write on fds[0], read on fds[1] of each pair.
    auto [q50, q99] = pingpong(c, d, 64, rounds);
    sp50.push_back(q50);
    sp99.push_back(q99);
    if (iceoryx2) {
      const std::string figures =
          run_peer(*iceoryx2 + " pingpong --size 64 --count " + std::to_string(std::max<size_t>(rounds, 100)));
      ip50.push_back(json_number(figures, "p50_us"));
      ip99.push_back(json_number(figures, "p99_us"));
    }
  }
  // xproc's get spins up to 100 us (kQueueSpin, adapted to how waits end) before it sleeps;
  // iceoryx2's receiver polls without end.
  if (iceoryx2) {
    rows.push_back(
        {"ping-pong 64 B", "RTT p50 (us)", median(xp50), "iceoryx2 publish-subscribe", median(ip50), "<= 0.6"});
    rows.push_back({"ping-pong 64 B", "RTT p99 (us)", median(xp99), "iceoryx2 publish-subscribe", median(ip99), ""});
  }
  rows.push_back({"ping-pong 64 B", "RTT p50 (us)", median(xp50), "socketpair", median(sp50), "<= 0.1"});
  rows.push_back({"ping-pong 64 B", "RTT p99 (us)", median(xp99), "socketpair", median(sp99), "<= 0.333"});
  const std::string py_pp = python_peer(s, "queue_peer.py", "--pingpong --count " + std::to_string(s.count(5'000)));
  rows.push_back({"ping-pong small message", "RTT p50 (us)", median(xp50), "multiprocessing.Queue small dict",
                  json_number(py_pp, "p50_us"), ""});

  report(rows, s.out);
  return 0;
}
