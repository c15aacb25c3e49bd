// Micro-benchmarks of one queue operation at a time, in one process: what a put, a get and
// the serialization around them cost without a second process, its wake-ups or the
// scheduler in the figure. The side-by-side figures against the peers are in
// queue_compare.cpp; these tell where the time of one message goes.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "bench.capnp.h"
#include "xproc/message.h"
#include "xproc/queue.h"
#include "xproc/value.h"

namespace {

// A 64-byte Sample, as queue_compare's typed rows send.
struct SampleMessage {
  capnp::MallocMessageBuilder builder;
  Sample::Builder root = builder.initRoot<Sample>();
  SampleMessage() {
    auto payload = root.initPayload(16);
    std::memset(payload.begin(), 'x', payload.size());
  }
};

xproc::Value small_dict() {
  xproc::ValueMap map;
  map.set("id", 7);
  map.set("name", "Process-1");
  map.set("x", 0.25);
  return xproc::Value(std::move(map));
}

// --- the engine: raw bytes through the ring ----------------------------------------------

void BM_ByteQueuePutGet64(benchmark::State& state) {
  xproc::ByteQueue q(xproc::QueueOptions{});
  std::byte message[64] = {};
  std::byte out[64];
  for (auto _ : state) {
    q.put_bytes(message);
    q.get_in_place([&](std::span<const std::byte> m) { std::memcpy(out, m.data(), m.size()); });
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ByteQueuePutGet64);

void BM_ByteQueuePutGetBytes(benchmark::State& state) {
  xproc::ByteQueue q(xproc::QueueOptions{.capacity_bytes = 8u << 20});
  std::vector<std::byte> message(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    q.put_bytes(message);
    benchmark::DoNotOptimize(q.get_bytes());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_ByteQueuePutGetBytes)->Arg(64)->Arg(4096)->Arg(65536);

// --- typed messages ----------------------------------------------------------------------

// A typed put, from the builder (a copy of its segments) or from a reader (a deep copy
// through Cap'n Proto), then a validated get.
enum class TypedPut { kBuilder, kReader };
void BM_TypedPutGet(benchmark::State& state, TypedPut how) {
  xproc::Queue<Sample> q;
  SampleMessage m;
  uint64_t seq = 0;
  for (auto _ : state) {
    m.root.setSeq(seq++);
    if (how == TypedPut::kBuilder) {
      q.put(m.builder);
    } else {
      q.put(m.root.asReader());
    }
    auto got = q.get();
    benchmark::DoNotOptimize(got->getSeq());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_TypedPutGet, builder, TypedPut::kBuilder);
BENCHMARK_CAPTURE(BM_TypedPutGet, reader, TypedPut::kReader);

void BM_TypedPutBuilderGetView(benchmark::State& state) {
  xproc::Queue<Sample> q;
  SampleMessage m;
  uint64_t seq = 0, sum = 0;
  for (auto _ : state) {
    m.root.setSeq(seq++);
    q.put(m.builder);
    q.get_view([&](Sample::Reader r) { sum += r.getSeq(); });
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TypedPutBuilderGetView);

void BM_ValueQueuePutGetSmallDict(benchmark::State& state) {
  xproc::Queue<xproc::Value> q;
  const xproc::Value dict = small_dict();
  for (auto _ : state) {
    q.put(dict);
    benchmark::DoNotOptimize(q.get());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ValueQueuePutGetSmallDict);

// --- serialization alone -------------------------------------------------------------------

void BM_SerializeSample(benchmark::State& state) {
  SampleMessage m;
  auto root = capnp::AnyStruct::Reader(capnp::toAny(m.root.asReader()));
  std::vector<capnp::word> out(xproc::flat_size(root) / sizeof(capnp::word));
  for (auto _ : state) {
    const size_t size = xproc::flat_size(root);
    xproc::write_flat(root, {reinterpret_cast<std::byte*>(out.data()), size});
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SerializeSample);

void BM_DecodeSampleMessage(benchmark::State& state) {
  SampleMessage m;
  const auto words = xproc::serialize(m.root.asReader());
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(words.begin()),
                                         words.size() * sizeof(capnp::word));
  for (auto _ : state) {
    auto message = xproc::Message<Sample>::decode(bytes);
    benchmark::DoNotOptimize(message->getSeq());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeSampleMessage);

void BM_ValueEncodeSmallDict(benchmark::State& state) {
  const xproc::Value dict = small_dict();
  for (auto _ : state) benchmark::DoNotOptimize(dict.encode());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ValueEncodeSmallDict);

void BM_ValueDecodeSmallDict(benchmark::State& state) {
  const auto words = small_dict().encode();
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(words.begin()),
                                         words.size() * sizeof(capnp::word));
  for (auto _ : state) benchmark::DoNotOptimize(xproc::Value::decode(bytes));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ValueDecodeSmallDict);

}  // namespace

BENCHMARK_MAIN();
