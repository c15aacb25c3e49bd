// One epoll loop serving a queue and a pipe without a thread for either: the queue through
// a QueueWaiter's descriptor, the pipe's receiving end through its fileno(). A child
// process sends jobs on the queue and notes on the pipe; the loop prints what comes until
// each has sent "done".
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <string>
#include <system_error>

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
      usleep(20'000);  // so that the loop sleeps between them
    }
    jobs.put("done");
    note_sender.send("done");
  });
  producer.start();

  xproc::QueueWaiter waiter(jobs.bytes(), xproc::QueueWaiter::For::kMessage);
  const int epoll = epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  enum : uint32_t { kJobs, kNotes };
  epoll_event jobs_event{.events = EPOLLIN, .data = {.u32 = kJobs}};
  epoll_event notes_event{.events = EPOLLIN, .data = {.u32 = kNotes}};
  epoll_ctl(epoll, EPOLL_CTL_ADD, waiter.fileno(), &jobs_event);
  epoll_ctl(epoll, EPOLL_CTL_ADD, notes.fileno(), &notes_event);

  bool jobs_open = true, notes_open = true;
  while (jobs_open || notes_open) {
    // Take whatever is there without blocking; arm the queue's doorbell only once it is
    // empty (arm() says when something came meanwhile).
    while (jobs_open) {
      std::optional<xproc::Value> job = jobs.try_get();
      if (!job) {
        if (waiter.arm()) break;
        continue;
      }
      std::cout << "queue: " << job->as_text() << std::endl;
      jobs_open = job->as_text() != "done";
    }
    while (notes_open && notes.poll()) {
      const xproc::Value note = notes.recv();
      std::cout << "pipe: " << note.as_text() << std::endl;
      notes_open = note.as_text() != "done";
    }
    if (!jobs_open && !notes_open) break;
    epoll_event ready[2];
    const int n = epoll_wait(epoll, ready, 2, static_cast<int>(xproc::QueueWaiter::kRecheck.count()));
    for (int i = 0; i < n; ++i) {
      if (ready[i].data.u32 == kJobs) waiter.clear();
    }
  }
  close(epoll);
  producer.join();
}
