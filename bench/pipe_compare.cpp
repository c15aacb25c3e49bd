// Side-by-side comparison of xproc's Pipe with a raw AF_UNIX socketpair doing the same
// reads and writes (4-byte length prefix and payload in one write per message, buffered
// reads) and with Python's multiprocessing.Pipe. Every message is counted and checked.
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "support/harness.h"
#include "xproc/connection.h"

using namespace xproc::bench;

namespace {

// The raw peer: what a careful hand-written framing over a socketpair does.
struct RawEnd {
  int fd;
  std::vector<std::byte> buffer = std::vector<std::byte>(64 * 1024);
  size_t begin = 0, end = 0;
  void send(const std::byte* data, size_t n) {
    uint32_t header = htonl(static_cast<uint32_t>(n));
    iovec iov[2] = {{&header, 4}, {const_cast<std::byte*>(data), n}};
    iovec* next = iov;
    int count = 2;
    while (count > 0) {
      ssize_t w = writev(fd, next, count);
      if (w <= 0) throw std::runtime_error("writev");
      while (count > 0 && static_cast<size_t>(w) >= next->iov_len) {
        w -= static_cast<ssize_t>(next->iov_len);
        ++next;
        --count;
      }
      if (count > 0) {
        next->iov_base = static_cast<char*>(next->iov_base) + w;
        next->iov_len -= static_cast<size_t>(w);
      }
    }
  }
  void read_exact(std::byte* out, size_t n) {
    for (size_t got = 0; got < n;) {
      if (begin == end) {
        const ssize_t r = read(fd, buffer.data(), buffer.size());
        if (r <= 0) throw std::runtime_error("read");
        begin = 0;
        end = static_cast<size_t>(r);
      }
      const size_t take = std::min(n - got, end - begin);
      std::memcpy(out + got, buffer.data() + begin, take);
      begin += take;
      got += take;
    }
  }
  size_t recv(std::vector<std::byte>& out) {
    uint32_t header;
    read_exact(reinterpret_cast<std::byte*>(&header), 4);
    out.resize(ntohl(header));
    read_exact(out.data(), out.size());
    return out.size();
  }
};

struct XprocEnd {
  xproc::ByteConnection c;
  void send(const std::byte* data, size_t n) { c.send_bytes({data, n}); }
  size_t recv(std::vector<std::byte>& out) {
    out = c.recv_bytes();
    return out.size();
  }
};

struct Stamps {
  std::atomic<int64_t> start{0};
};

template <typename End>
double throughput(End& sender, End& receiver, size_t size, size_t count) {
  auto* stamps = shared_object<Stamps>();
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<std::byte> m(size, std::byte{'x'});
    stamps->start.store(now_ns());
    for (size_t i = 0; i < count; ++i) {
      std::memcpy(m.data(), &i, std::min<size_t>(8, size));
      sender.send(m.data(), size);
    }
    _exit(0);
  }
  std::vector<std::byte> m;
  for (size_t i = 0; i < count; ++i) {
    receiver.recv(m);
    size_t seq = 0;
    std::memcpy(&seq, m.data(), std::min<size_t>(8, size));
    if (m.size() != size || (size >= 8 && seq != i)) throw std::runtime_error("pipe order check failed");
  }
  const int64_t end = now_ns();
  int status;
  waitpid(pid, &status, 0);
  const double seconds = static_cast<double>(end - stamps->start.load()) / 1e9;
  release_shared(stamps);
  return static_cast<double>(count) / seconds;
}

template <typename End>
std::pair<double, double> pingpong(End& here, End& there, size_t size, size_t rounds) {
  const size_t warmup = 1000;
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<std::byte> m;
    for (size_t i = 0; i < rounds + warmup; ++i) {
      there.recv(m);
      there.send(m.data(), m.size());
    }
    _exit(0);
  }
  std::vector<std::byte> m(size, std::byte{'p'}), reply;
  std::vector<double> samples;
  for (size_t i = 0; i < rounds + warmup; ++i) {
    const int64_t t0 = now_ns();
    here.send(m.data(), size);
    here.recv(reply);
    const int64_t t1 = now_ns();
    if (reply != m) throw std::runtime_error("echo mismatch");
    if (i >= warmup) samples.push_back(static_cast<double>(t1 - t0) / 1000.0);
  }
  int status;
  waitpid(pid, &status, 0);
  return {percentile(samples, 0.5), percentile(samples, 0.99)};
}

std::pair<RawEnd, RawEnd> raw_pair() {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw std::runtime_error("socketpair");
  return {RawEnd{fds[0]}, RawEnd{fds[1]}};
}

std::pair<XprocEnd, XprocEnd> xproc_pair() {
  auto [a, b] = xproc::byte_pipe();
  return {XprocEnd{std::move(a)}, XprocEnd{std::move(b)}};
}

// Small Python-like values over Connection<Value>, encoded and decoded per message.
double value_throughput(size_t count) {
  auto [a, b] = xproc::Pipe<xproc::Value>();
  auto* stamps = shared_object<Stamps>();
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    stamps->start.store(now_ns());
    for (size_t i = 0; i < count; ++i) {
      a.send(xproc::Value::map({{"id", static_cast<long long>(i)}, {"name", "Process-1"}, {"x", 0.25}}));
    }
    _exit(0);
  }
  for (size_t i = 0; i < count; ++i) {
    xproc::Value v = b.recv();
    if (v.as_map().at("id").as_int() != static_cast<int64_t>(i)) throw std::runtime_error("value order");
  }
  const int64_t end = now_ns();
  int status;
  waitpid(pid, &status, 0);
  const double seconds = static_cast<double>(end - stamps->start.load()) / 1e9;
  release_shared(stamps);
  return static_cast<double>(count) / seconds;
}

// Descriptors this process has open now.
size_t open_descriptors() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// Microseconds to make and close one pipe, over `count` of them.
template <typename Make>
double creation_us(int count, Make&& make) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < count; ++i) make();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / count;
}

void socket_pair_and_close() {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw std::runtime_error("socketpair");
  close(fds[0]);
  close(fds[1]);
}

// The system calls any pipe over shared memory that takes memory by use makes and undoes:
// a socket pair for hang-ups, a sealed sparse memfd mapped once, the control page and the
// first pages of two rings reserved and touched. Nothing else: the floor under Pipe().
void shared_memory_floor() {
  constexpr size_t kRing = size_t{1} << 20, kBytes = 4096 + 2 * kRing;
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) throw std::runtime_error("socketpair");
  const int memory = memfd_create("floor", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (memory < 0 || ftruncate(memory, kBytes) != 0 ||
      fcntl(memory, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    throw std::runtime_error("memfd");
  }
  auto* at = static_cast<volatile char*>(mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, memory, 0));
  if (at == MAP_FAILED || fallocate(memory, 0, 0, 4096 + 8192) != 0 || fallocate(memory, 0, 4096 + kRing, 8192) != 0) {
    throw std::runtime_error("mmap or fallocate");
  }
  for (size_t page : {size_t{0}, size_t{4096}, 4096 + kRing}) at[page] = 1;
  munmap(const_cast<char*>(at), kBytes);
  close(memory);
  close(fds[0]);
  close(fds[1]);
}

}  // namespace

int main(int argc, char** argv) {
  const Settings s = Settings::parse(argc, argv);
  std::vector<Row> rows;
  // 1 MiB: over what the shared-memory ring carries, so it crosses the socket in chunks.
  for (size_t size : {size_t{64}, size_t{65536}, size_t{1} << 20}) {
    const size_t n = s.count(size == 64 ? 1'000'000 : size == 65536 ? 60'000 : 3'000);
    const auto m = medians_taking_turns(s, {[&] {
                                              auto [a, b] = xproc_pair();
                                              return throughput(a, b, size, n);
                                            },
                                            [&] {
                                              auto [a, b] = raw_pair();
                                              const double v = throughput(a, b, size, n);
                                              close(a.fd);
                                              close(b.fd);
                                              return v;
                                            }});
    const double x = m[0], r = m[1];
    const std::string label = size == 64 ? "64 B" : size == 65536 ? "64 KiB" : "1 MiB";
    rows.push_back(
        {"1P->1C " + label + " send_bytes", "msgs/s", x, "raw socketpair", r, size <= 65536 ? ">= 0.8" : ""});
  }
  std::vector<double> x50, r50, x99, r99;
  for (int i = 0; i < s.reps; ++i) {
    auto [a, b] = xproc_pair();
    auto [p50, p99] = pingpong(a, b, 64, s.count(20'000));
    x50.push_back(p50);
    x99.push_back(p99);
    auto [c, d] = raw_pair();
    auto [q50, q99] = pingpong(c, d, 64, s.count(20'000));
    r50.push_back(q50);
    r99.push_back(q99);
    close(c.fd);
    close(d.fd);
  }
  rows.push_back({"ping-pong 64 B", "RTT p50 (us)", median(x50), "raw socketpair", median(r50), "<= 1.15"});
  rows.push_back({"ping-pong 64 B", "RTT p99 (us)", median(x99), "raw socketpair", median(r99), ""});

  const double py_bytes = json_number(
      python_peer(s, "pipe_peer.py", "--workload bytes --size 64 --count " + std::to_string(s.count(200'000))),
      "msgs_per_s");
  const double x64 = rows[0].xproc;
  rows.push_back({"1P->1C 64 B send_bytes", "msgs/s", x64, "multiprocessing.Pipe send_bytes", py_bytes, ">= 4"});
  const double values = median_of(s, [&] { return value_throughput(s.count(300'000)); });
  const double py_dict =
      json_number(python_peer(s, "pipe_peer.py", "--workload small_dict --count " + std::to_string(s.count(200'000))),
                  "msgs_per_s");
  rows.push_back(
      {"1P->1C small dict as Value (send/recv)", "msgs/s", values, "multiprocessing.Pipe small dict", py_dict, ">= 4"});
  const std::string py_pp = python_peer(s, "pipe_peer.py", "--pingpong --count " + std::to_string(s.count(5'000)));
  rows.push_back(
      {"ping-pong 64 B", "RTT p50 (us)", median(x50), "multiprocessing.Pipe", json_number(py_pp, "p50_us"), ""});

  // What an idle Pipe holds right after creation: shared memory, and descriptors (both ends
  // in this process; multiprocessing's Pipe holds 2).
  {
    const size_t before = open_descriptors();
    auto [a, b] = xproc::byte_pipe();
    const size_t held = open_descriptors() - before;
    struct stat st {};
    if (::fstat(a.shared_memory_handles().memory, &st) != 0) throw std::runtime_error("fstat of a pipe's memory");
    rows.push_back({"idle Pipe, default options", "KiB of shared memory",
                    static_cast<double>(st.st_blocks) * 512 / 1024, "target", 128.0, "<= 1.0"});
    rows.push_back(
        {"Pipe(), both ends in one process", "descriptors held", static_cast<double>(held), "target", 3.0, "<= 1.0"});
  }
  // What making a Pipe costs, against a socket pair and against the floor of its system
  // calls (multiprocessing's Pipe() is a socket pair and two Python objects).
  {
    const int count = s.count(20'000);
    std::vector<double> x, r, f;
    for (int i = 0; i < s.reps; ++i) {
      x.push_back(creation_us(count, [] { auto ends = xproc::byte_pipe(); }));
      r.push_back(creation_us(count, socket_pair_and_close));
      f.push_back(creation_us(count, shared_memory_floor));
    }
    rows.push_back({"Pipe() made and closed", "us each", median(x), "socketpair() and close", median(r), ""});
    rows.push_back({"floor: the system calls of a shared-memory pipe", "us each", median(f), "socketpair() and close",
                    median(r), ""});
  }
  report(rows, s.out);
  return 0;
}
