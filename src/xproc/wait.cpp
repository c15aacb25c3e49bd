// Implementation of wait.h.
#include "xproc/wait.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>

#include "xproc/byte_connection.h"
#include "xproc/errors.h"
#include "xproc/poll_internal.h"
#include "xproc/queue.h"
#include "xproc/queue_waiter.h"
#include "xproc/syscall_internal.h"

namespace xproc {

ReadyObjects wait(const std::vector<ByteConnection*>& connections, const std::vector<QueueBase*>& queues,
                  Timeout timeout) {
  const auto deadline = ByteQueue::deadline(true, timeout);
  // Registered before the first look: a message put after it rings, or arm() sees it.
  std::vector<QueueWaiter> waiters;
  waiters.reserve(queues.size());
  for (QueueBase* queue : queues) waiters.emplace_back(queue->bytes(), QueueWaiter::For::kMessage);
  for (;;) {
    // Ready already (a buffered frame, a message in a shared-memory ring or queue)?
    // Otherwise the descriptors that wake each one: a connection's socket and, for a ring,
    // its eventfd; a queue's doorbell.
    ReadyObjects ready;
    std::vector<pollfd> fds;
    std::vector<size_t> owner;  // fds[i] belongs to connections[owner[i]] (queues after them)
    for (size_t i = 0; i < connections.size(); ++i) {
      std::vector<int> wake;
      if (connections[i]->ready_or_wait_fds(wake)) ready.connections.push_back(connections[i]);
      for (int fd : wake) {
        fds.push_back({fd, POLLIN, 0});
        owner.push_back(i);
      }
    }
    bool changed = false;
    for (size_t i = 0; i < queues.size(); ++i) {
      if (!queues[i]->empty()) {
        ready.queues.push_back(queues[i]);
      } else if (ready.connections.empty() && ready.queues.empty()) {
        changed = changed || !waiters[i].arm();
        fds.push_back({waiters[i].fileno(), POLLIN, 0});
        owner.push_back(connections.size() + i);
      }
    }
    if (!ready.connections.empty() || !ready.queues.empty()) return ready;
    if (changed) continue;  // a queue changed since its waiter last looked: look again
    // A wait with a deadline: after EINTR the loop comes round and waits for what is left.
    // A queue's ring may be spoiled by a process that writes its memory at will: look
    // again at least every kRecheck.
    int ms = detail::poll_milliseconds(deadline);
    if (!queues.empty()) {
      const int recheck = static_cast<int>(QueueWaiter::kRecheck.count());
      ms = ms < 0 ? recheck : std::min(ms, recheck);
    }
    const int r = ::poll(fds.data(), fds.size(), ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw_os_error("poll", errno);
    std::vector<bool> woken(connections.size(), false);
    for (size_t i = 0; i < fds.size(); ++i) {
      if (owner[i] < connections.size()) {
        woken[owner[i]] = woken[owner[i]] || fds[i].revents != 0;
      } else if (fds[i].revents != 0) {
        waiters[owner[i] - connections.size()].clear();
      }
    }
    for (size_t i = 0; i < connections.size(); ++i) {
      // A ring's token may be left over from a message another reader took: look again.
      if (woken[i] && (!connections[i]->shared_memory() || connections[i]->poll(std::chrono::seconds(0)))) {
        ready.connections.push_back(connections[i]);
      }
    }
    for (QueueBase* queue : queues) {
      if (!queue->empty()) ready.queues.push_back(queue);
    }
    if (!ready.connections.empty() || !ready.queues.empty()) return ready;
    if (r == 0 && detail::poll_milliseconds(deadline) == 0) return ready;
  }
}

std::vector<ByteConnection*> wait(const std::vector<ByteConnection*>& connections, Timeout timeout) {
  return wait(connections, {}, timeout).connections;
}

}  // namespace xproc
