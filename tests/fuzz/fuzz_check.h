// What the fuzz targets share: a check that aborts with its message (libFuzzer then saves
// the input as a crash), whatever NDEBUG says, and the input read as a byte stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>

// Aborts, printing the failed condition and where, when `cond` is false.
#define FUZZ_CHECK(cond, ...)                                                                          \
  do {                                                                                                 \
    if (!(cond)) {                                                                                     \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed. " __VA_OPT__("%s") "\n", __FILE__, __LINE__, \
                   #cond __VA_OPT__(, __VA_ARGS__));                                                   \
      std::abort();                                                                                    \
    }                                                                                                  \
  } while (false)

namespace xproc::fuzz {

// The fuzz input taken from the front: fixed-size fields, then what is left.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : bytes_(reinterpret_cast<const std::byte*>(data), size) {}

  // The next sizeof(T) bytes as a T (zeros past the end of the input).
  template <typename T>
  T take() {
    T value{};
    const size_t n = std::min(sizeof(T), bytes_.size());
    std::memcpy(&value, bytes_.data(), n);
    bytes_ = bytes_.subspan(n);
    return value;
  }
  // The next `n` bytes, or fewer at the end of the input.
  std::span<const std::byte> take_bytes(size_t n) {
    const auto part = bytes_.first(std::min(n, bytes_.size()));
    bytes_ = bytes_.subspan(part.size());
    return part;
  }
  std::span<const std::byte> rest() const { return bytes_; }
  bool empty() const { return bytes_.empty(); }

 private:
  std::span<const std::byte> bytes_;
};

}  // namespace xproc::fuzz
