# Message types of the benchmarks.
@0xe3461185572f2855;

struct Sample {
  seq @0 :UInt64;
  # Producer id in the top 16 bits, sequence number below.

  stamp @1 :Int64;
  # Free for latency stamps.

  payload @2 :Data;
  # Padding that brings the serialized message to 64 bytes.
}
