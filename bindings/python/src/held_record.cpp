// See held_record.h.
#include "held_record.h"

namespace xproc::python {

HeldRecord::HeldRecord(const ByteQueue& queue)
    : queue_(queue), process_(::getpid()), taker_(std::this_thread::get_id()) {
  thread_ = std::make_unique<std::thread>([this] { hold(); });
}

std::shared_ptr<HeldRecord> HeldRecord::take(const ByteQueue& queue, const SlicedWait& deadline) {
  std::shared_ptr<HeldRecord> record(new HeldRecord(queue));
  if (!wait_in_slices(deadline, [&](Timeout slice) { return record->attempt(slice); })) return nullptr;
  return record;
}

bool HeldRecord::attempt(Timeout slice) {
  std::unique_lock lock(mutex_);
  slice_ = slice;
  state_ = State::kAttempting;
  changed_.notify_all();
  changed_.wait(lock, [&] { return state_ != State::kAttempting; });
  if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
  return state_ == State::kHeld;
}

void HeldRecord::hold() {
  auto consume = [&](std::span<const std::byte> bytes) {
    std::unique_lock lock(mutex_);
    bytes_ = bytes;
    state_ = State::kHeld;
    changed_.notify_all();
    changed_.wait(lock, [&] { return state_ == State::kReleasing; });
  };
  for (;;) {
    Timeout slice;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return state_ == State::kAttempting || state_ == State::kDone; });
      if (state_ == State::kDone) return;
      slice = slice_;
    }
    bool held = false;
    std::exception_ptr failure;
    try {
      held = queue_.get_in_place(consume, true, slice);
    } catch (...) {
      failure = std::current_exception();
    }
    if (held) return;  // and released: the get is finished
    std::unique_lock lock(mutex_);
    failure_ = failure;
    state_ = State::kIdle;
    changed_.notify_all();
  }
}

HeldRecord::~HeldRecord() {
  if (::getpid() != process_) {
    // A forked child's copy: the holding thread (and the lock it holds) are the parent's,
    // and so is the release. Its mutex may have been held at the fork: touch nothing.
    static_cast<void>(thread_.release());
    return;
  }
  {
    std::unique_lock lock(mutex_);
    state_ = state_ == State::kHeld ? State::kReleasing : State::kDone;
    changed_.notify_all();
  }
  // The holding thread finishes the get (publishes the consumed position, wakes producers)
  // without Python; other Python threads may run meanwhile.
  if (PyGILState_Check() != 0) {
    nb::gil_scoped_release unlocked;
    thread_->join();
  } else {
    thread_->join();
  }
}

}  // namespace xproc::python
