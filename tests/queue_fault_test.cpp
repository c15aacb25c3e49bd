// The kill test: producers and consumers SIGKILLed at random instants (holding a lock,
// half-way through a copy, blocked in put/get) must never wedge the queue, never hand out
// a torn message, keep each producer's order, and lose at most the one message a killed
// process was getting. XPROC_SOAK=1 runs ten times as many cycles.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "support/test_support.h"
#include "xproc/byte_queue.h"

namespace {

using namespace std::chrono_literals;
using xproc::ByteQueue;
using xproc::QueueOptions;

constexpr uint32_t kProbeProducer = 0xffffffffu;

struct MessageHeader {
  uint32_t producer;
  uint32_t seq;
  uint32_t length;    // payload bytes after this header
  uint32_t checksum;  // FNV-1a of the payload
};

uint32_t fnv1a(const std::byte* data, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<uint8_t>(data[i])) * 16777619u;
  return h;
}

// Deterministic content: a torn or mixed message cannot match both its checksum and this.
std::vector<std::byte> make_message(uint32_t producer, uint32_t seq) {
  const uint32_t length = 8 + (producer * 7919u + seq * 104729u) % 700;
  std::vector<std::byte> m(sizeof(MessageHeader) + length);
  for (uint32_t i = 0; i < length; ++i) {
    m[sizeof(MessageHeader) + i] = static_cast<std::byte>((producer * 31 + seq * 17 + i * 7) & 0xff);
  }
  MessageHeader h{producer, seq, length, fnv1a(m.data() + sizeof(MessageHeader), length)};
  std::memcpy(m.data(), &h, sizeof(h));
  return m;
}

// Returns the header of a well-formed message, or nullopt if it is torn or corrupt.
std::optional<MessageHeader> check_message(std::span<const std::byte> bytes) {
  if (bytes.size() < sizeof(MessageHeader)) return std::nullopt;
  MessageHeader h;
  std::memcpy(&h, bytes.data(), sizeof(h));
  if (bytes.size() != sizeof(MessageHeader) + h.length) return std::nullopt;
  if (h.producer == kProbeProducer) return h;
  auto expected = make_message(h.producer, h.seq);
  if (expected.size() != bytes.size() || std::memcmp(expected.data(), bytes.data(), bytes.size()) != 0) {
    return std::nullopt;
  }
  return h;
}

// What victim consumers got, in memory shared with the test (they may die at any time).
struct VictimLog {
  std::atomic<uint64_t> count;
  std::atomic<uint64_t> torn;
  uint64_t entries[1];  // (producer << 32) | seq
};

TEST(QueueFaultTest, RandomKillsNeverWedgeTearOrReorder) {
  const bool soak = std::getenv("XPROC_SOAK") != nullptr;
  const int cycles = soak ? 10000 : 1000;
  ByteQueue q(QueueOptions{.maxsize = 48, .capacity_bytes = 16384});
  const size_t log_bytes = 512u << 20;  // touched lazily
  auto* log = static_cast<VictimLog*>(
      mmap(nullptr, log_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  ASSERT_NE(log, MAP_FAILED);
  const uint64_t log_capacity = (log_bytes - sizeof(VictimLog)) / sizeof(uint64_t);

  std::mt19937 rng(12345);
  std::map<uint32_t, std::set<uint32_t>> seen;  // producer -> seqs delivered to anyone
  std::map<uint32_t, int64_t> last_seen_by_test;
  int torn = 0, reordered = 0, duplicates = 0, killed_consumers = 0, wedged = 0;

  auto record = [&](uint32_t producer, uint32_t seq) {
    if (!seen[producer].insert(seq).second) ++duplicates;
  };
  auto consume_one = [&](xproc::Timeout timeout) -> std::optional<MessageHeader> {
    std::optional<MessageHeader> got;
    bool any = q.get_in_place(
        [&](std::span<const std::byte> bytes) {
          got = check_message(bytes);
          if (!got) ++torn;
        },
        true, timeout);
    if (!any || !got) return std::nullopt;
    if (got->producer != kProbeProducer) {
      auto [it, fresh] = last_seen_by_test.try_emplace(got->producer, -1);
      if (static_cast<int64_t>(got->seq) <= it->second) ++reordered;
      it->second = got->seq;
      record(got->producer, got->seq);
    }
    return got;
  };

  for (int cycle = 0; cycle < cycles; ++cycle) {
    const uint32_t producer_id = static_cast<uint32_t>(cycle);
    std::fflush(nullptr);
    const pid_t producer = fork();
    if (producer == 0) {
      for (uint32_t seq = 0;; ++seq) q.put_bytes(make_message(producer_id, seq));
    }
    pid_t consumer = -1;
    if (cycle % 3 == 0) {
      consumer = fork();
      if (consumer == 0) {
        for (;;) {
          std::optional<MessageHeader> got;
          q.get_in_place([&](std::span<const std::byte> bytes) { got = check_message(bytes); });
          if (!got) {
            log->torn.fetch_add(1);
            continue;
          }
          if (got->producer == kProbeProducer) continue;
          const uint64_t slot = log->count.load();
          if (slot < log_capacity) {
            log->entries[slot] = (uint64_t{got->producer} << 32) | got->seq;
            log->count.store(slot + 1);
          }
        }
      }
    }
    // Let them run a random while (the test drains at random moments too), then kill.
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(rng() % 3000);
    while (std::chrono::steady_clock::now() < until) {
      if (rng() % 4 == 0)
        consume_one(std::chrono::microseconds(100));
      else
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
    }
    kill(producer, SIGKILL);
    if (consumer > 0) kill(consumer, SIGKILL);
    EXPECT_EQ(xproc::testing::wait_exit_code(producer), -SIGKILL);
    if (consumer > 0) {
      EXPECT_EQ(xproc::testing::wait_exit_code(consumer), -SIGKILL);
      ++killed_consumers;
    }
    // The survivors (this process) must be able to put and get within 1 s.
    auto probe = std::vector<std::byte>(sizeof(MessageHeader));
    MessageHeader ph{kProbeProducer, static_cast<uint32_t>(cycle), 0, 0};
    std::memcpy(probe.data(), &ph, sizeof(ph));
    bool delivered = false;
    const auto deadline = std::chrono::steady_clock::now() + 1s;
    // Drain to make room, then put the probe, then drain until the probe comes back.
    while (!delivered && std::chrono::steady_clock::now() < deadline) {
      if (q.try_put_bytes(probe, 10ms)) {
        while (std::chrono::steady_clock::now() < deadline) {
          auto got = consume_one(10ms);
          if (got && got->producer == kProbeProducer && got->seq == ph.seq) {
            delivered = true;
            break;
          }
        }
      } else {
        consume_one(10ms);
      }
    }
    if (!delivered) {
      ++wedged;
      ADD_FAILURE() << "queue wedged after kill cycle " << cycle;
      break;
    }
  }
  while (consume_one(std::chrono::milliseconds(1))) {
  }
  const uint64_t victim_count = std::min<uint64_t>(log->count.load(), log_capacity);
  for (uint64_t i = 0; i < victim_count; ++i) {
    record(static_cast<uint32_t>(log->entries[i] >> 32), static_cast<uint32_t>(log->entries[i]));
  }
  // Holes: messages removed from the queue by a consumer that died before logging them.
  uint64_t holes = 0, delivered_total = 0;
  for (const auto& [producer, seqs] : seen) {
    holes += (*seqs.rbegin() + 1) - seqs.size();
    delivered_total += seqs.size();
  }
  EXPECT_EQ(torn, 0) << "torn or corrupt messages seen by the test";
  EXPECT_EQ(log->torn.load(), 0u) << "torn or corrupt messages seen by victim consumers";
  EXPECT_EQ(reordered, 0) << "per-producer order broken";
  EXPECT_EQ(duplicates, 0) << "messages delivered twice";
  EXPECT_LE(holes, static_cast<uint64_t>(killed_consumers)) << "more messages lost than consumers killed";
  EXPECT_EQ(wedged, 0);
  EXPECT_GT(delivered_total, static_cast<uint64_t>(cycles)) << "the test moved too few messages";
  std::printf(
      "%d kill cycles, %llu messages delivered, %llu lost by %d killed consumers, %llu lock "
      "recoveries\n",
      cycles, static_cast<unsigned long long>(delivered_total), static_cast<unsigned long long>(holes),
      killed_consumers, static_cast<unsigned long long>(q.info().recoveries));
  munmap(log, log_bytes);
}

}  // namespace
