// ReferredMemory: the Python memory a message being built points at instead of holding a
// copy (a large bytes object, a large array's buffer), kept alive and unchanged until the
// message has been copied out. Its bytes are then copied once, from the object to where
// the message goes (a queue's ring, a socket), rather than into the builder first.
#pragma once
#include <Python.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "xproc/array.h"

namespace xproc::python {

class ReferredMemory {
 public:
  // Below this a blob is copied into the builder: a segment of its own costs more.
  static constexpr size_t kMinBytes = kReferredFromBytes;  // xproc/array.h: C++ refers by the same rule

  // Whether `size` bytes at `data` may be referred to: large enough, and whole aligned
  // words. (Cap'n Proto writes a referred blob out in whole words, so the rest of a
  // partial last word would be read from past the object's memory.)
  static bool fits(const void* data, size_t size) noexcept {
    return size >= kMinBytes && size % 8 == 0 && reinterpret_cast<uintptr_t>(data) % 8 == 0;
  }

  ReferredMemory() = default;
  ReferredMemory(const ReferredMemory&) = delete;
  ReferredMemory& operator=(const ReferredMemory&) = delete;
  // Releases everything held. With the GIL held.
  ~ReferredMemory() {
    for (Py_buffer& view : views_) PyBuffer_Release(&view);
    for (PyObject* object : objects_) Py_DECREF(object);
  }

  // Keeps an immutable object (bytes) alive: a new reference.
  void keep(PyObject* object) {
    Py_INCREF(object);
    objects_.push_back(object);
  }
  // Takes over the export `view` (its exporter cannot resize or free the memory meanwhile);
  // `view` is left empty.
  void keep(Py_buffer& view) {
    views_.push_back(view);
    view = Py_buffer{};
  }
  // Memory of `size` bytes that lives as long as the message (a contiguous copy made for it).
  std::byte* allocate(size_t size) {
    blocks_.push_back(std::make_unique_for_overwrite<std::byte[]>(size));
    return blocks_.back().get();
  }

 private:
  std::vector<PyObject*> objects_;
  std::vector<Py_buffer> views_;
  std::vector<std::unique_ptr<std::byte[]>> blocks_;
};

}  // namespace xproc::python
