// This thread's kj event loop: the one xproc's promises run on — queues' get_async(),
// put_async() and join_async() (queue_promises.h), and the Manager's asynchronous calls
// (manager.h). kj allows one loop per thread, so a thread that awaits xproc's promises
// runs this loop, not one of its own: wait on it with xproc::wait(promise), or drive it as
// part of a larger program through event_loop().waitScope.
//
//   xproc::Queue<xproc::Value> q;
//   auto first = xproc::get_async(q);          // nothing taken yet
//   auto value = xproc::wait(kj::mv(first));   // runs the loop until a message is got
//
// The loop is made on first use in each thread, and made anew in a forked child (see
// rpc/thread_loop.h). Part of the xproc::manager library, which links kj-async.
#pragma once

#include <kj/async-io.h>

namespace xproc {

// This thread's loop and its I/O, made on first use; it belongs to the thread.
kj::AsyncIoContext& event_loop();

// [[noreturn]]: the xproc error a rejected promise stands for (DecodeError, Full,
// ConnectionError ...; see kj_errors_internal.h for the mapping).
[[noreturn]] void rethrow_promise_error(const kj::Exception& error);

// Runs this thread's loop until `promise` resolves, and returns its value; a rejection is
// thrown as the xproc error it stands for.
template <typename T>
T wait(kj::Promise<T>&& promise) {
  try {
    return promise.wait(event_loop().waitScope);
  } catch (const kj::Exception& error) {
    rethrow_promise_error(error);
  }
}

}  // namespace xproc
