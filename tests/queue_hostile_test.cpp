// Queues and pipes against a process that shares their memory and misbehaves: it writes
// anything anywhere in the header and the records, stops while it holds a mutex, or dies
// holding one while a child of its own lives on. The others must never crash, must keep
// their deadlines, and must carry on once it stops.
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.h"
#include "xproc/byte_queue.h"
#include "xproc/connection.h"
#include "xproc/errors.h"
#include "xproc/queue_layout_internal.h"
#include "xproc/ring_pipe_internal.h"
#include "xproc/shm/segment.h"

namespace {

using namespace std::chrono_literals;
using xproc::ByteQueue;
using xproc::QueueOptions;
using xproc::detail::QueueHeader;
using Clock = std::chrono::steady_clock;

std::vector<std::byte> message_of(uint32_t n, size_t size) {
  std::vector<std::byte> m(size);
  for (size_t i = 0; i < size; ++i) m[i] = static_cast<std::byte>((n + i) & 0xff);
  return m;
}

// Memory shared with the children: how they fared.
struct Tally {
  std::atomic<uint32_t> stop;
  std::atomic<uint64_t> operations;
  std::atomic<uint64_t> decode_errors;
};

Tally* shared_tally() {
  void* memory = mmap(nullptr, sizeof(Tally), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return new (memory) Tally{};
}

// Where a scribbler writes in a queue segment: every field of the header, with the width
// it has, or any 8 bytes of the records.
struct Field {
  size_t offset;
  size_t width;
};

std::vector<Field> header_fields() {
  return {{offsetof(QueueHeader, magic), 8},
          {offsetof(QueueHeader, layout_version), 4},
          {offsetof(QueueHeader, kind), 4},
          {offsetof(QueueHeader, schema_id), 8},
          {offsetof(QueueHeader, capacity), 8},
          {offsetof(QueueHeader, max_message), 8},
          {offsetof(QueueHeader, maxsize), 8},
          {offsetof(QueueHeader, created_unix_ns), 8},
          {offsetof(QueueHeader, creator_pid), 4},
          {offsetof(QueueHeader, recoveries), 8},
          {offsetof(QueueHeader, producer_lock), 4},
          {offsetof(QueueHeader, consumer_lock), 4},
          {offsetof(QueueHeader, producers_sleeping), 4},
          {offsetof(QueueHeader, consumers_sleeping), 4},
          {offsetof(QueueHeader, tail), 8},
          {offsetof(QueueHeader, tail), 4},
          {offsetof(QueueHeader, tail) + 4, 4},
          {offsetof(QueueHeader, head), 8},
          {offsetof(QueueHeader, head), 4},
          {offsetof(QueueHeader, head) + 4, 4},
          {offsetof(QueueHeader, done), 4},
          {offsetof(QueueHeader, joiners_sleeping), 4}};
}

// A value worth writing into a field: random, or one near the edges an unchecked reader
// would trip over (offsets at and past the end of the ring, misaligned, all ones).
uint64_t hostile_value(std::mt19937_64& random, uint64_t capacity) {
  switch (random() % 8) {
    case 0: return 0;
    case 1: return ~uint64_t{0};
    case 2: return capacity + (random() % 3) * 8 - 8;
    case 3: return (capacity + random() % 64) << 32 | (random() % 16);
    case 4: return (random() % capacity) << 32 | random() % 0x100000000;
    case 5: return random() % 64;
    default: return random();
  }
}

// Writes `trials` hostile values into the segment of queue `name`, as any process that may
// open it can; a short breath between writes lets the victims act on each.
void scribble(const std::string& name, int trials, uint64_t seed) {
  auto segment = xproc::shm::Segment::open(name, xproc::Sharing{});
  const uint64_t capacity = segment.size() - xproc::detail::kRingOffset;
  std::mt19937_64 random(seed);
  const auto fields = header_fields();
  for (int trial = 0; trial < trials; ++trial) {
    const uint64_t value = hostile_value(random, capacity);
    Field field;
    if (random() % 3 == 0) {
      field = {xproc::detail::kRingOffset + (random() % (capacity / 8)) * 8 + (random() % 2) * 4, 4};
    } else {
      field = fields[random() % fields.size()];
    }
    std::memcpy(segment.data() + field.offset, &value, field.width);
    const auto breath = Clock::now() + 20us;
    while (Clock::now() < breath) __builtin_ia32_pause();
    if (trial % 64 == 0) sched_yield();
  }
}

// A producer and a consumer run with short timeouts until told to stop; everything they
// may meet is a documented error. Exit 0, or 3 on anything else.
pid_t start_victim(ByteQueue& q, Tally* tally, bool producer) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  uint32_t n = 0;
  while (tally->stop.load() == 0) {
    try {
      if (producer) {
        (void)q.try_put_bytes(message_of(n, 8 + n % 200), 10ms);
      } else if (q.get_in_place(
                     [](std::span<const std::byte> bytes) {
                       unsigned sum = 0;  // reads every byte it is handed
                       for (std::byte b : bytes) sum += static_cast<unsigned>(b);
                       asm volatile("" : : "r"(sum));
                     },
                     true, 10ms)) {
        q.task_done();
      }
    } catch (const xproc::DecodeError&) {
      tally->decode_errors.fetch_add(1);
    } catch (const xproc::ValueError&) {
      // task_done() more often than puts: the scribbler rewrote the counters
    } catch (...) {
      _exit(3);
    }
    ++n;
    tally->operations.fetch_add(1);
  }
  _exit(0);
}

TEST(QueueHostileTest, ScribblerNeverCrashesProducersOrConsumersAndTheQueueCarriesOn) {
  const std::string name = xproc::testing::unique_name("scribbled");
  auto q = ByteQueue::create(name, QueueOptions{.maxsize = 64, .capacity_bytes = 16384}, 0,
                             xproc::detail::QueueKind::kJoinable);
  Tally* tally = shared_tally();
  const pid_t producer = start_victim(q, tally, true);
  const pid_t consumer = start_victim(q, tally, false);
  const char* fixed_seed = std::getenv("XPROC_SCRIBBLER_SEED");  // to replay a failure
  const uint64_t seed = fixed_seed != nullptr ? std::stoull(fixed_seed) : std::random_device{}();
  SCOPED_TRACE("scribbler seed " + std::to_string(seed));
  const pid_t scribbler = fork();
  if (scribbler == 0) {
    scribble(name, 10000, seed);
    _exit(0);
  }
  EXPECT_EQ(xproc::testing::wait_exit_code(scribbler), 0);
  tally->stop.store(1);
  EXPECT_EQ(xproc::testing::wait_exit_code(producer), 0) << "-11: SIGSEGV, -7: SIGBUS, 3: an undocumented error";
  EXPECT_EQ(xproc::testing::wait_exit_code(consumer), 0) << "-11: SIGSEGV, -7: SIGBUS, 3: an undocumented error";
  EXPECT_GT(tally->operations.load(), 0u);
  EXPECT_GT(tally->decode_errors.load(), 0u) << "the scribbler was never noticed";

  // Once it stops, the queue carries on. What the victims left in it is drained first (a
  // call may still meet what the scribbler last wrote), then every message goes through.
  for (int drained = 0;; ++drained) {
    ASSERT_LT(drained, 1000) << "the queue never drained";
    try {
      if (!q.try_get_bytes(0s)) break;
    } catch (const xproc::DecodeError& e) {
      if (drained > 990) ADD_FAILURE() << e.what();
    }
  }
  for (uint32_t i = 0; i < 100; ++i) {
    q.put_bytes(message_of(i, 100), true, 5s);
    EXPECT_EQ(q.get_bytes(true, 5s), message_of(i, 100));
  }
  EXPECT_TRUE(q.empty());
  munmap(tally, sizeof(Tally));
  ByteQueue::remove(name);
}

// One field at a time, each a value that an unchecked reader would follow out of the ring.
TEST(QueueHostileTest, PositionsOutsideTheRingGiveDecodeErrorAndAResetQueue) {
  const std::string name = xproc::testing::unique_name("positions");
  auto q = ByteQueue::create(name, QueueOptions{.capacity_bytes = 4096});
  auto peer = xproc::shm::Segment::open(name, xproc::Sharing{});
  auto* header = reinterpret_cast<QueueHeader*>(peer.data());
  const uint64_t far = uint64_t{1} << 20;
  const std::vector<std::pair<const char*, std::function<void()>>> attacks = {
      {"tail past the end", [&] { header->tail.store(far << 32 | 1); }},
      {"head past the end", [&] { header->head.store(far << 32); }},
      {"tail at the very end", [&] { header->tail.store(uint64_t{4096} << 32 | 1); }},
      {"misaligned tail", [&] { header->tail.store(uint64_t{12} << 32 | 1); }},
      {"more messages than fit", [&] { header->tail.store(uint64_t{0x7fffffff}); }},
      {"head ahead of tail", [&] { header->head.store(uint64_t{5}); }},
  };
  for (const auto& [what, attack] : attacks) {
    q.put_bytes(message_of(1, 16));
    attack();
    EXPECT_THROW(
        {
          q.put_bytes(message_of(2, 16));
          (void)q.get_bytes();
          (void)q.get_bytes();
        },
        xproc::DecodeError)
        << what;
    EXPECT_TRUE(q.empty()) << what;
    q.put_bytes(message_of(3, 16));
    EXPECT_EQ(q.get_bytes(), message_of(3, 16)) << what << ": the queue carries on";
  }
  // The shape is the opener's, whatever the header says afterwards.
  header->capacity = uint64_t{1} << 40;
  header->max_message = uint64_t{1} << 40;
  EXPECT_THROW(q.put_bytes(std::vector<std::byte>(4000)), xproc::MessageTooLarge);
  EXPECT_EQ(q.info().capacity_bytes, 4096u);
  EXPECT_THROW(ByteQueue::open(name), xproc::ValueError) << "a new opener sees an inconsistent header";
  ByteQueue::remove(name);
}

// A child takes the producer's (or the consumer's) mutex, then stops (SIGSTOP, a debugger, a
// frozen container). Other callers may wait for it, but only until their own deadline.
pid_t stop_holding(ByteQueue& q, bool producer) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (producer) {
      q.put_in_place(8, [](std::byte*) { raise(SIGSTOP); });
    } else {
      q.get_in_place([](std::span<const std::byte>) { raise(SIGSTOP); });
    }
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, WUNTRACED);
  EXPECT_TRUE(WIFSTOPPED(status));
  return pid;
}

TEST(QueueHostileTest, StoppedMutexHolderDelaysCallersOnlyUntilTheirDeadline) {
  for (const bool producer : {true, false}) {
    ByteQueue q(QueueOptions{.capacity_bytes = 4096});
    if (!producer) q.put_bytes(message_of(0, 8));
    const pid_t holder = stop_holding(q, producer);
    const auto start = Clock::now();
    const bool done = producer ? q.try_put_bytes(message_of(1, 8), 1s) : q.try_get_bytes(1s).has_value();
    const auto waited = Clock::now() - start;
    EXPECT_FALSE(done);
    EXPECT_GE(waited, 900ms) << "the deadline is the caller's";
    EXPECT_LT(waited, 10s) << "and it is kept while the holder is stopped";
    EXPECT_FALSE(producer ? q.try_put_bytes(message_of(1, 8), 0s) : q.try_get_bytes(0s).has_value());

    kill(holder, SIGKILL);  // dies holding it: the next caller takes it over
    waitpid(holder, nullptr, 0);
    if (producer) {
      EXPECT_TRUE(q.try_put_bytes(message_of(1, 8), 5s));
    } else {
      EXPECT_TRUE(q.try_get_bytes(5s).has_value());
    }
    EXPECT_EQ(q.info().recoveries, 1u);
  }
}

// A process dies holding the mutex while a child it forked (which never used the queue) lives
// on. The child has a token of its own, so the parent's death is seen and its mutex taken over.
TEST(QueueHostileTest, MutexOfADeadParentIsTakenOverWhileItsIdleChildLives) {
  const std::string name = xproc::testing::unique_name("dead-parent");
  int report[2];
  ASSERT_EQ(pipe(report), 0);
  const pid_t parent = fork();
  if (parent == 0) {
    auto q = ByteQueue::create(name, QueueOptions{.capacity_bytes = 4096});
    const pid_t idle = fork();
    if (idle == 0) {
      for (;;) pause();
    }
    (void)!write(report[1], &idle, sizeof(idle));
    q.put_in_place(8, [](std::byte*) { raise(SIGKILL); });
    _exit(1);
  }
  pid_t idle = 0;
  ASSERT_EQ(read(report[0], &idle, sizeof(idle)), static_cast<ssize_t>(sizeof(idle)));
  EXPECT_EQ(xproc::testing::wait_exit_code(parent), -SIGKILL);
  auto q = ByteQueue::open(name);
  EXPECT_TRUE(q.try_put_bytes(message_of(1, 8), 5s)) << "the dead parent's mutex was never taken over";
  EXPECT_EQ(q.info().recoveries, 1u);
  kill(idle, SIGKILL);
  close(report[0]);
  close(report[1]);
  ByteQueue::remove(name);
}

// The same hostility against a Pipe: its rings and control block written at random while a
// sender and a receiver run.
TEST(QueueHostileTest, PipeScribblerNeverCrashesSenderOrReceiver) {
  auto [a, b] = xproc::byte_pipe(true);
  const auto handles = a.shared_memory_handles();
  Tally* tally = shared_tally();
  const pid_t sender = fork();
  if (sender == 0) {
    b.close();  // or the receiving end would never hang up while the sender lives
    for (uint32_t n = 0; tally->stop.load() == 0; ++n) {
      try {
        const auto m = message_of(n, 8 + n % 300);
        a.send_bytes(m);
      } catch (const xproc::DecodeError&) {
        tally->decode_errors.fetch_add(1);
      } catch (const xproc::BrokenPipeError&) {
        _exit(0);  // the receiver is gone (the end of the test)
      } catch (...) {
        _exit(3);
      }
    }
    _exit(0);
  }
  const pid_t receiver = fork();
  if (receiver == 0) {
    a.close();
    while (tally->stop.load() == 0) {
      try {
        if (b.poll(10ms)) (void)b.recv_bytes();
        tally->operations.fetch_add(1);
      } catch (const xproc::DecodeError&) {
        tally->decode_errors.fetch_add(1);
      } catch (const xproc::OSError&) {
        // a scribbled length over the receiver's limit closes the end, as CPython does
        _exit(0);
      } catch (...) {
        _exit(3);
      }
    }
    _exit(0);
  }
  const pid_t scribbler = fork();
  if (scribbler == 0) {
    std::mt19937_64 random(7);
    struct stat st {};
    fstat(handles.memory, &st);
    void* m = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, handles.memory, 0);
    if (m == MAP_FAILED) _exit(4);
    // The control block and each ring's region (header first), as the pipe laid them out.
    auto* base = static_cast<std::byte*>(m);
    const auto* control = reinterpret_cast<const xproc::detail::PipeControl*>(base);
    std::vector<std::pair<std::byte*, size_t>> memories{{base, xproc::detail::kPipeControlBytes}};
    for (int d = 0; d < 2; ++d) memories.emplace_back(base + control->ring_offset[d], control->ring_length[d]);
    for (int trial = 0; trial < 3000; ++trial) {
      auto [memory, size] = memories[random() % memories.size()];
      const size_t at = random() % 2 ? (random() % 1024) / 4 * 4 : (random() % (size / 4)) * 4;
      const uint64_t value = hostile_value(random, size);
      std::memcpy(memory + at, &value, std::min<size_t>(4, size - at));
      for (int i = 0; i < 200; ++i) __builtin_ia32_pause();
    }
    _exit(0);
  }
  EXPECT_EQ(xproc::testing::wait_exit_code(scribbler), 0);
  tally->stop.store(1);
  // The sender may be blocked in a send whose receiver is gone: its end closing tells it.
  b.close();
  const auto until = Clock::now() + 20s;
  int sender_status = 0;
  while (waitpid(sender, &sender_status, WNOHANG) == 0 && Clock::now() < until) std::this_thread::sleep_for(10ms);
  if (Clock::now() >= until) kill(sender, SIGKILL), waitpid(sender, &sender_status, 0);
  EXPECT_TRUE(WIFEXITED(sender_status) && WEXITSTATUS(sender_status) == 0)
      << "the sender crashed or failed (status " << sender_status << ")";
  EXPECT_EQ(xproc::testing::wait_exit_code(receiver), 0) << "-11: SIGSEGV, -7: SIGBUS, 3: an undocumented error";
  munmap(tally, sizeof(Tally));
}

}  // namespace
