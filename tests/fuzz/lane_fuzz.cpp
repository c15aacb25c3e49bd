// A Manager lane (rpc/lane.h) whose peer scribbles: after a genuine exchange, the input is
// written over the whole segment (header, both rings' counters and flags, both rings'
// bytes) through a mapping of the memfd, and each side then reads, writes and looks. A
// model that keeps each side's own counts checks every answer: a peer count behind this
// side's or more than a ring ahead is LaneError, with nothing moved; otherwise read() and
// write() move exactly the bytes the counts allow, at the ring positions they name, and
// has_input()/has_room() say what the counts say. Nothing is read or written outside the
// rings.
//
// Input: u16 bytes the server sends first, u16 bytes the client sends first (each up to
// a few rings: the counts wrap), then the segment image (shorter leaves the rest as the
// exchange left it).
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "fuzz_check.h"
#include "xproc/rpc/lane.h"

namespace {

using xproc::rpc::Lane;
using xproc::rpc::LaneError;

constexpr size_t kRing = 4096;
// The segment (lane.cpp): a 64-byte header, the client-to-server ring's control block,
// the server-to-client one (each four 64-byte lines: written, taken, reader_sleeps,
// writer_sleeps), then the client-to-server bytes and the server-to-client bytes.
constexpr size_t kHeader = 64;
constexpr size_t kControl = 4 * 64;
constexpr size_t kToServerControl = kHeader;
constexpr size_t kToClientControl = kHeader + kControl;
constexpr size_t kToServerBytes = kHeader + 2 * kControl;
constexpr size_t kToClientBytes = kToServerBytes + kRing;
constexpr size_t kSegment = kToClientBytes + kRing;
constexpr size_t kWritten = 0;
constexpr size_t kTaken = 64;

uint64_t load64(const std::byte* at) { return reinterpret_cast<const std::atomic<uint64_t>*>(at)->load(); }

// Moves `total` bytes from `from` to `to` through the lane, a ring at a time.
void exchange(Lane& from, Lane& to, size_t total) {
  std::vector<unsigned char> buffer(kRing);
  while (total > 0) {
    const size_t n = std::min(total, kRing);
    for (size_t i = 0; i < n; ++i) buffer[i] = static_cast<unsigned char>(total + i);
    FUZZ_CHECK(from.write(buffer.data(), n) == n);
    FUZZ_CHECK(to.read(buffer.data(), n) == n);
    total -= n;
  }
}

// One side under the model: its own counts, and where its rings are in the segment.
struct Side {
  Lane& lane;
  uint64_t written;  // bytes this side has put in its out ring
  uint64_t taken;    // bytes this side has taken from its in ring
  size_t in_control, out_control, in_bytes, out_bytes;
};

void run(Side& side, std::byte* segment, int seed) {
  std::vector<unsigned char> data(5000), out(5000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(seed * 131 + i);
  const size_t sizes[] = {1, 100, 4095, 4096, 5000, 7};
  for (int step = 0; step < 12; ++step) {
    const uint64_t peer_written = load64(segment + side.in_control + kWritten);
    const uint64_t peer_taken = load64(segment + side.out_control + kTaken);
    const bool input_valid = peer_written - side.taken <= kRing;
    const bool room_valid = side.written - peer_taken <= kRing;
    const bool valid = step % 4 < 2 ? input_valid : room_valid;  // what the step's call checks
    const size_t want = sizes[(step + seed) % 6];
    try {
      switch (step % 4) {
        case 0: FUZZ_CHECK(side.lane.has_input() == (peer_written != side.taken) && valid); break;
        case 1: {
          const size_t n = side.lane.read(out.data(), want);
          FUZZ_CHECK(input_valid, "read() accepted an impossible write count");
          FUZZ_CHECK(n == std::min<uint64_t>(want, peer_written - side.taken), "read() moved the wrong amount");
          for (size_t i = 0; i < n; ++i) {
            const auto expected = segment[side.in_bytes + (side.taken + i) % kRing];
            FUZZ_CHECK(out[i] == static_cast<unsigned char>(expected), "read() returned bytes from elsewhere");
          }
          side.taken += n;
          FUZZ_CHECK(load64(segment + side.in_control + kTaken) == side.taken || n == 0);
          break;
        }
        case 2: FUZZ_CHECK(side.lane.has_room() == (side.written - peer_taken < kRing) && valid); break;
        case 3: {
          const size_t n = side.lane.write(data.data(), want);
          FUZZ_CHECK(room_valid, "write() accepted an impossible read count");
          FUZZ_CHECK(n == std::min<uint64_t>(want, kRing - (side.written - peer_taken)),
                     "write() moved the wrong amount");
          for (size_t i = 0; i < n; ++i) {
            const auto written = segment[side.out_bytes + (side.written + i) % kRing];
            FUZZ_CHECK(static_cast<unsigned char>(written) == data[i], "write() put bytes elsewhere");
          }
          side.written += n;
          FUZZ_CHECK(load64(segment + side.out_control + kWritten) == side.written || n == 0);
          break;
        }
      }
    } catch (const LaneError&) {
      FUZZ_CHECK(!valid, "LaneError for possible counts");
    }
    // The flags: whatever the peer wrote into them, these only answer and clear (the
    // look again after raising one checks the counts as has_input/has_room do).
    try {
      if (step == 5) {
        side.lane.sleep_for_input();
        side.lane.take_input_doorbell();
      }
      if (step == 7) {
        side.lane.sleep_for_room();
        side.lane.take_room_doorbell();
        side.lane.awake();
      }
    } catch (const LaneError&) {
      FUZZ_CHECK(!(step == 5 ? input_valid : room_valid), "LaneError for possible counts");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  xproc::fuzz::Input input(data, size);
  const size_t server_first = input.take<uint16_t>() % (3 * kRing);
  const size_t client_first = input.take<uint16_t>() % (3 * kRing);

  Lane server = Lane::create(kRing);
  Lane client = Lane::attach(::dup(server.memfd()), kRing);
  exchange(server, client, server_first);
  exchange(client, server, client_first);

  void* memory = ::mmap(nullptr, kSegment, PROT_READ | PROT_WRITE, MAP_SHARED, server.memfd(), 0);
  FUZZ_CHECK(memory != MAP_FAILED);
  auto* segment = static_cast<std::byte*>(memory);
  const auto image = input.take_bytes(kSegment);
  if (!image.empty()) std::memcpy(segment, image.data(), image.size());

  Side client_side{client,           client_first,   server_first,  kToClientControl,
                   kToServerControl, kToClientBytes, kToServerBytes};
  run(client_side, segment, 1);
  Side server_side{server,           server_first,   client_first,  kToServerControl,
                   kToClientControl, kToServerBytes, kToClientBytes};
  run(server_side, segment, 2);
  ::munmap(memory, kSegment);
  return 0;
}
