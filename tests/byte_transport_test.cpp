// Tests of the two transports under ByteConnection: what is particular to each, beside
// the behaviour connection_test.cpp checks through the public calls over both.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "xproc/connection.h"

namespace {

// A ring that try_send_in_place has filled keeps the next payload for finish_send(), an
// empty one too (it has nothing but its length to keep).
TEST(RingTransportTest, TrySendInPlaceKeepsAnEmptyPayloadAFullRingCannotTake) {
  xproc::ConnectionOptions options;
  options.pipe_ring_bytes = 4096;
  auto [a, b] = xproc::byte_pipe(true, options);
  ASSERT_TRUE(a.shared_memory());
  size_t taken = 0;
  while (a.try_send_in_place(0, [](std::byte*) {})) ++taken;
  ASSERT_GT(taken, 0u);
  size_t empty = 0;
  std::thread receiver([&b = b, &empty] {
    while (b.recv_bytes().empty()) ++empty;  // up to the last message, which is not
  });
  a.finish_send();  // blocks until the receiver makes room
  const std::byte last[5]{};
  a.send_bytes(last);
  receiver.join();
  EXPECT_EQ(empty, taken + 1);
}

}  // namespace
