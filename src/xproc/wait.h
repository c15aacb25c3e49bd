// Waiting for whichever of several connections and queues is ready first: Python's
// multiprocessing.connection.wait(), which xproc's wait() also extends to queues.
//
//   auto ready = xproc::wait({&requests_conn}, {&jobs}, std::chrono::seconds(1));
//   for (xproc::QueueBase* q : ready.queues) ...   // holds a message now
//
// A queue is waited on through a doorbell (queue_waiter.h) registered for the call; a
// loop that waits again and again does better to keep QueueWaiters of its own.
#pragma once

#include <vector>

#include "xproc/timeout.h"

namespace xproc {

class ByteConnection;
class QueueBase;

// What wait() found ready: the caller's own objects, in the order they were given.
struct ReadyObjects {
  std::vector<ByteConnection*> connections;  // a message to read, or EOF
  std::vector<QueueBase*> queues;            // a message to get
};

// Waits until at least one connection can be read or one queue holds a message, up to
// `timeout`, and returns the ready ones (none on timeout). Another consumer may take a
// queue's message before the caller gets it: get without blocking, and wait again.
// RuntimeError when a queue's 32 waiter slots are all held.
ReadyObjects wait(const std::vector<ByteConnection*>& connections, const std::vector<QueueBase*>& queues,
                  Timeout timeout = {});

// Connections only (listener.h's wait): the ready ones, empty on timeout.
std::vector<ByteConnection*> wait(const std::vector<ByteConnection*>& connections, Timeout timeout = {});

}  // namespace xproc
