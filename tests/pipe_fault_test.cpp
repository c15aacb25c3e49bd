// The kill test of the shared-memory Pipe: a sender SIGKILLed at a random instant (half-way
// through a ring record, holding a lock, between a large message's marker and its payload)
// never hands the receiver a torn or reordered message, and the receiver then gets
// EOFError; a receiver killed at a random instant gives the sender BrokenPipeError, never
// a hang. XPROC_SOAK=1 runs ten times as many cycles.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>

#include "support/test_support.h"
#include "xproc/connection.h"

namespace {

using namespace std::chrono_literals;

int cycles(int normal) { return std::getenv("XPROC_SOAK") ? normal * 10 : normal; }

uint32_t fnv1a(const std::byte* data, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<uint8_t>(data[i])) * 16777619u;
  return h;
}

// Message `seq`: [seq][length][checksum] then deterministic bytes; every 50th is larger
// than the ring carries, so it travels on the socket.
std::vector<std::byte> make_message(uint32_t seq) {
  const uint32_t length = seq % 50 == 49 ? 70000 + seq % 1000 : 8 + (seq * 104729u) % 700;
  std::vector<std::byte> m(12 + length);
  for (uint32_t i = 0; i < length; ++i) m[12 + i] = static_cast<std::byte>((seq * 17 + i * 7) & 0xff);
  const uint32_t header[3] = {seq, length, fnv1a(m.data() + 12, length)};
  std::memcpy(m.data(), header, sizeof(header));
  return m;
}

bool well_formed(const std::vector<std::byte>& m, uint32_t expected_seq) {
  if (m.size() < 12) return false;
  uint32_t header[3];
  std::memcpy(header, m.data(), sizeof(header));
  return header[0] == expected_seq && header[1] == m.size() - 12 && header[2] == fnv1a(m.data() + 12, header[1]) &&
         m == make_message(expected_seq);
}

TEST(PipeFaultTest, SenderKilledAtRandomNeverTearsOrReordersAndEndsInEOFError) {
  std::mt19937 random(20261201);
  for (int cycle = 0; cycle < cycles(60); ++cycle) {
    auto [receiver, sender] = xproc::byte_pipe();
    ASSERT_TRUE(receiver.shared_memory());
    std::fflush(nullptr);
    const pid_t child = fork();
    if (child == 0) {
      receiver.close();
      for (uint32_t seq = 0;; ++seq) sender.send_bytes(make_message(seq));
    }
    sender.close();  // only the child holds the sending end now
    // The kill lands mid-stream: after the first message, however slowly the child starts.
    ASSERT_TRUE(well_formed(receiver.recv_bytes(), 0)) << "cycle " << cycle;
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 3000));
    kill(child, SIGKILL);
    uint32_t seq = 1;
    bool ended = false;
    while (!ended) {
      try {
        const auto m = receiver.recv_bytes();
        ASSERT_TRUE(well_formed(m, seq)) << "cycle " << cycle << ": message " << seq << " torn or out of order";
        ++seq;
      } catch (const xproc::EOFError&) {
        ended = true;
      }
    }
    EXPECT_EQ(xproc::testing::wait_exit_code(child), -SIGKILL);
  }
}

TEST(PipeFaultTest, ReceiverKilledAtRandomGivesTheSenderBrokenPipeError) {
  std::mt19937 random(7);
  for (int cycle = 0; cycle < cycles(40); ++cycle) {
    auto [sender, receiver] = xproc::byte_pipe();
    std::fflush(nullptr);
    const pid_t child = fork();
    if (child == 0) {
      sender.close();
      for (;;) receiver.recv_bytes();
    }
    receiver.close();
    std::thread killer([child, delay = random() % 3000] {
      std::this_thread::sleep_for(std::chrono::microseconds(delay));
      kill(child, SIGKILL);
    });
    const auto start = std::chrono::steady_clock::now();
    uint32_t seq = 0;
    EXPECT_THROW(
        {
          for (;; ++seq) sender.send_bytes(make_message(seq));
        },
        xproc::BrokenPipeError);
    // Noticed at the first send after the kill, not once a ring's worth has piled up.
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << "cycle " << cycle;
    killer.join();
    EXPECT_EQ(xproc::testing::wait_exit_code(child), -SIGKILL);
  }
}

// Message `seq` of sender `who`, always larger than the ring carries (on the socket).
std::vector<std::byte> make_large(uint32_t who, uint32_t seq) {
  auto m = make_message(seq);
  m.resize(300000 + (seq * 7919u) % 100000, static_cast<std::byte>(who));
  const uint32_t tag[2] = {who, fnv1a(m.data(), m.size() - 8)};
  std::memcpy(m.data() + m.size() - 8, tag, 8);
  return m;
}

bool large_well_formed(const std::vector<std::byte>& m, uint32_t* who, uint32_t* seq) {
  if (m.size() < 300000) return false;
  uint32_t tag[2];
  std::memcpy(tag, m.data() + m.size() - 8, 8);
  std::memcpy(seq, m.data(), 4);
  *who = tag[0];
  return tag[1] == fnv1a(m.data(), m.size() - 8) && m == make_large(*who, *seq);
}

TEST(PipeFaultTest, SenderKilledMidLargeMessageOnASharedEndTearsNothingForTheOthers) {
  std::mt19937 random(99);
  for (int cycle = 0; cycle < cycles(15); ++cycle) {
    auto [receiver, sender] = xproc::byte_pipe();
    std::fflush(nullptr);
    pid_t senders[2];
    for (uint32_t who = 0; who < 2; ++who) {
      senders[who] = fork();
      if (senders[who] == 0) {
        receiver.close();
        // Sender 0 is the one killed. Every other cycle the survivor starts only after the
        // kill: then the reader waiting for the dead sender's chunks must find out from
        // the senders' lock, since nothing else arrives.
        if (who == 1 && cycle % 2 == 0) std::this_thread::sleep_for(250ms);
        const uint32_t count = who == 0 ? 1000000 : 40;
        for (uint32_t seq = 0; seq < count; ++seq) sender.send_bytes(make_large(who, seq));
        _exit(0);
      }
    }
    sender.close();
    std::thread killer([victim = senders[0], delay = random() % 20000] {
      std::this_thread::sleep_for(std::chrono::microseconds(delay));
      kill(victim, SIGKILL);
    });
    uint32_t next[2] = {0, 0};
    for (;;) {
      std::vector<std::byte> m;
      try {
        m = receiver.recv_bytes();
      } catch (const xproc::EOFError&) {
        break;
      }
      uint32_t who = 0, seq = 0;
      ASSERT_TRUE(large_well_formed(m, &who, &seq)) << "cycle " << cycle << ": a torn large message";
      ASSERT_LT(who, 2u);
      ASSERT_EQ(seq, next[who]) << "cycle " << cycle << ": sender " << who << " out of order";
      ++next[who];
    }
    killer.join();
    EXPECT_EQ(next[1], 40u) << "cycle " << cycle << ": the survivor lost messages";
    EXPECT_EQ(xproc::testing::wait_exit_code(senders[0]), -SIGKILL);
    EXPECT_EQ(xproc::testing::wait_exit_code(senders[1]), 0);
  }
}

TEST(PipeFaultTest, ReceiverKilledMidLargeMessageOnASharedEndTearsNothingForTheOthers) {
  std::mt19937 random(5);
  for (int cycle = 0; cycle < cycles(40); ++cycle) {
    auto [sender, receiver] = xproc::byte_pipe();
    // Two readers of one end: the first is killed while it reads; the survivor reports
    // through a pipe of its own how many whole messages it got, or 0xffffffff for a torn
    // one, once it sees the last one.
    auto [report_in, report_out] = xproc::byte_pipe();
    std::fflush(nullptr);
    pid_t readers[2];
    for (int k = 0; k < 2; ++k) {
      readers[k] = fork();
      if (readers[k] == 0) {
        sender.close();
        report_in.close();
        uint32_t whole = 0, who = 0, seq = 0;
        for (;;) {
          const auto m = receiver.recv_bytes();
          if (m.size() == 3) break;  // "end"
          whole = large_well_formed(m, &who, &seq) ? whole + 1 : 0xffffffffu;
          if (whole == 0xffffffffu) break;
        }
        report_out.send_bytes(std::span(reinterpret_cast<const std::byte*>(&whole), 4));
        _exit(0);
      }
    }
    receiver.close();
    report_out.close();
    std::thread killer([victim = readers[0], delay = random() % 20000] {
      std::this_thread::sleep_for(std::chrono::microseconds(delay));
      kill(victim, SIGKILL);
    });
    for (uint32_t seq = 0; seq < 60; ++seq) sender.send_bytes(make_large(0, seq));
    killer.join();
    EXPECT_EQ(xproc::testing::wait_exit_code(readers[0]), -SIGKILL);
    for (int i = 0; i < 2; ++i) sender.send_bytes(std::vector<std::byte>(3));  // ends the survivor (and a spare)
    const auto report = report_in.recv_bytes();
    ASSERT_EQ(report.size(), 4u);
    uint32_t whole;
    std::memcpy(&whole, report.data(), 4);
    EXPECT_NE(whole, 0xffffffffu) << "cycle " << cycle << ": the survivor got a torn message";
    EXPECT_EQ(xproc::testing::wait_exit_code(readers[1]), 0);
  }
}

TEST(PipeFaultTest, ReceiverBlockedForASecondUsesAlmostNoCpu) {
  auto [a, b] = xproc::byte_pipe();
  std::fflush(nullptr);
  const pid_t child = fork();
  if (child == 0) {
    a.close();
    rusage before{}, after{};
    getrusage(RUSAGE_SELF, &before);
    const auto m = b.recv_bytes();  // the parent sends after a second
    getrusage(RUSAGE_SELF, &after);
    auto us = [](const rusage& r) {
      return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000000L + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
    };
    const long used = us(after) - us(before);
    _exit(m.size() == 4 && used < 20000 ? 0 : 1);  // under 2% of the second
  }
  std::this_thread::sleep_for(1s);
  a.send_bytes(std::vector<std::byte>(4));
  EXPECT_EQ(xproc::testing::wait_exit_code(child), 0);
}

}  // namespace
