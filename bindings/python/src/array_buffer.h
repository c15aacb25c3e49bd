// ArrayBuffer: a received array's elements as a buffer-protocol exporter, for what numpy
// is not there to hold (a memoryview of any dtype, 'Zd' and 'e' included, which
// memoryview.cast refuses) and for get_view's views over a queue's ring.
//
// Its memory is either its own (allocated with it, writable unless asked otherwise) or a
// held queue record's (read-only). A record is pinned while the buffer is exported: once
// its view block has ended, the last release of an export drops the record, and the buffer
// exports nothing more (BufferError), so no memoryview or numpy array made from it can
// outlive the memory it reads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "array_dtypes.h"
#include "bindings.h"

namespace xproc::python {

class HeldRecord;

// A new ArrayBuffer of `shape` (C order; each dimension and their product in bytes fit a
// Py_ssize_t) owning uninitialised memory for its elements, and where that memory is (for
// the caller to fill).
struct OwnedArrayBuffer {
  nb::object buffer;
  std::byte* data;
};
OwnedArrayBuffer make_owned_array_buffer(DType dtype, std::span<const uint64_t> shape, bool readonly);

// A read-only ArrayBuffer of `shape` over `data`, which lies in `record`: the buffer holds
// the record until its view block has ended and its last export is released.
nb::object make_record_array_buffer(DType dtype, std::span<const uint64_t> shape, const std::byte* data,
                                    std::shared_ptr<HeldRecord> record);

// The end of `buffer`'s view block (get_view's `with`): from now on the buffer lets its
// record go at its last export's release, at once when it has none.
void end_view_block(nb::handle buffer);

}  // namespace xproc::python
