// MessageView: what Queue.get_view returns. The oldest message of a queue, taken and held
// where it lies in the ring (HeldRecord), decoded as get() decodes it except that its arrays
// are read-only memoryviews over the ring's bytes: no copy. A context manager: `with
// q.get_view() as a:` gives the object, and the block's end releases every memoryview
// (using one afterwards raises ValueError) and then the record, unless numpy arrays made
// from the views inside the block still use it: the last of them to go releases it.
//
// While the record is held, the queue's other gets wait (held_record.h). A message without
// an array held in the ring (no array, or only small ones, which were decoded from a copy)
// is let go at once: only the views are released at the block's end.
#pragma once
#include <memory>
#include <optional>
#include <span>

#include "bindings.h"
#include "python_arrays.h"

namespace xproc::python {

class HeldRecord;

class MessageView {
 public:
  // Decodes the held message (DecodeError lets the record go and is raised: the message is
  // consumed, as by a get that raises it).
  explicit MessageView(std::shared_ptr<HeldRecord> record);
  MessageView(const MessageView&) = delete;
  MessageView& operator=(const MessageView&) = delete;
  MessageView(MessageView&&) = default;
  ~MessageView() { release(); }

  // The decoded object (`with ... as a`). ValueError after release().
  nb::object value() const;
  // The block's end; idempotent. With the GIL held.
  void release();

 private:
  std::unique_ptr<RecordViews> views_;
  nb::object value_;
  bool released_ = false;
};

}  // namespace xproc::python
