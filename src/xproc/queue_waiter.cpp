#include "xproc/queue_waiter.h"

#include "xproc/shm/doorbells.h"

namespace xproc {

namespace {
shm::WaitFor change_of(QueueWaiter::For what) { return static_cast<shm::WaitFor>(what); }
static_assert(static_cast<uint32_t>(QueueWaiter::For::kMessage) == static_cast<uint32_t>(shm::WaitFor::kMessage) &&
              static_cast<uint32_t>(QueueWaiter::For::kRoom) == static_cast<uint32_t>(shm::WaitFor::kRoom) &&
              static_cast<uint32_t>(QueueWaiter::For::kJoin) == static_cast<uint32_t>(shm::WaitFor::kJoin));
}  // namespace

QueueWaiter::QueueWaiter(const ByteQueue& queue, For what)
    : queue_(queue),
      bell_(std::make_unique<shm::Doorbell>(queue_.doorbell_table(), queue_.holder(), change_of(what),
                                            queue_.doorbell_access())),
      what_(what),
      seen_(queue_.watched_count(change_of(what))) {}

QueueWaiter::~QueueWaiter() = default;
QueueWaiter::QueueWaiter(QueueWaiter&&) noexcept = default;
QueueWaiter& QueueWaiter::operator=(QueueWaiter&&) noexcept = default;

int QueueWaiter::fileno() const noexcept { return bell_->fileno(); }

bool QueueWaiter::arm() noexcept {
  // Armed and announced before the look: a change published after the look sees the flag
  // and rings (the order publish_and_wake relies on for futex sleepers).
  bell_->arm();
  queue_.announce_waiter(change_of(what_));
  const uint32_t now = queue_.watched_count(change_of(what_));
  if (now == seen_) return true;
  bell_->disarm();
  seen_ = now;
  return false;
}

void QueueWaiter::clear() noexcept {
  bell_->clear();
  seen_ = queue_.watched_count(change_of(what_));
}

}  // namespace xproc
