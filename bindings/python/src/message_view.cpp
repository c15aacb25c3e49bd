// See message_view.h.
#include "message_view.h"

#include "held_record.h"
#include "python_values.h"
#include "xproc/errors.h"

namespace xproc::python {

MessageView::MessageView(std::shared_ptr<HeldRecord> record) {
  const std::span<const std::byte> bytes = record->bytes();
  views_ = std::make_unique<RecordViews>(std::move(record));
  try {
    value_ = decode_value(bytes, views_.get());
  } catch (...) {
    views_->end();
    throw;
  }
  views_->let_record_go_unless_viewed();
}

nb::object MessageView::value() const {
  if (released_) throw ValueError("this message view was released (its get_view block has ended)");
  return value_;
}

void MessageView::release() {
  if (released_ || !views_) return;  // moved from, or done
  released_ = true;
  views_->end();
  value_ = nb::object();
}

void register_message_views(nb::module_& m) {
  nb::class_<MessageView>(m, "MessageView",
                          "The message Queue.get_view took, held in the queue: `with` gives the object, its "
                          "arrays read-only memoryviews over the queue's memory, valid inside the block.")
      .def("__enter__", &MessageView::value)
      .def(
          "__exit__",
          [](MessageView& self, nb::handle, nb::handle, nb::handle) {
            self.release();
            return false;
          },
          nb::arg("exc_type").none(), nb::arg("exc_value").none(), nb::arg("traceback").none())
      .def("release", &MessageView::release,
           "Ends the view as the end of its `with` block does (the queue's other gets wait until then).");
}

}  // namespace xproc::python
