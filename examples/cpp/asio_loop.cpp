// The epoll example's loop written with asio (standalone, libasio-dev): a queue through a
// QueueWaiter's descriptor and a pipe's receiving end through its fileno(), each awaited
// with async_wait on the io_context, no thread for either. A child process sends jobs on
// the queue and notes on the pipe; each handler takes what is there and waits again.
#include <unistd.h>

#include <asio.hpp>
#include <functional>
#include <iostream>
#include <string>

#include "xproc/connection.h"
#include "xproc/process.h"
#include "xproc/queue.h"
#include "xproc/queue_waiter.h"

int main() {
  xproc::Queue<xproc::Value> jobs;
  auto [notes, note_sender] = xproc::Pipe<xproc::Value>(/*duplex=*/false);
  xproc::Process producer([&jobs, &note_sender] {
    for (int i = 0; i < 3; ++i) {
      jobs.put("job " + std::to_string(i));
      note_sender.send("note " + std::to_string(i));
      usleep(20'000);
    }
    jobs.put("done");
    note_sender.send("done");
  });
  producer.start();

  asio::io_context io;
  xproc::QueueWaiter waiter(jobs.bytes(), xproc::QueueWaiter::For::kMessage);
  // asio owns what it wraps: it gets duplicates, and the waiter and the pipe keep theirs.
  asio::posix::stream_descriptor jobs_ready(io, dup(waiter.fileno()));
  asio::posix::stream_descriptor notes_ready(io, dup(notes.fileno()));
  asio::steady_timer recheck(io);

  std::function<void()> take_jobs = [&] {
    for (;;) {
      std::optional<xproc::Value> job = jobs.try_get();
      if (job) {
        std::cout << "queue: " << job->as_text() << std::endl;
        if (job->as_text() == "done") {
          recheck.cancel();
          return;
        }
        continue;
      }
      if (waiter.arm()) break;  // empty: sleep until the doorbell rings
    }
    jobs_ready.async_wait(asio::posix::stream_descriptor::wait_read, [&](std::error_code error) {
      if (!error) waiter.clear();
      take_jobs();
    });
    // A ring a process sharing the queue spoiled still ends the wait within kRecheck.
    recheck.expires_after(xproc::QueueWaiter::kRecheck);
    recheck.async_wait([&](std::error_code error) {
      if (!error) jobs_ready.cancel();
    });
  };
  std::function<void()> take_notes = [&] {
    while (notes.poll()) {
      const xproc::Value note = notes.recv();
      std::cout << "pipe: " << note.as_text() << std::endl;
      if (note.as_text() == "done") return;
    }
    notes_ready.async_wait(asio::posix::stream_descriptor::wait_read, [&](std::error_code) { take_notes(); });
  };
  take_jobs();
  take_notes();
  io.run();
  producer.join();
}
