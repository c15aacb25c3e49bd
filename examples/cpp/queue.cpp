// The seed's Queue program: three processes each put one message on a bounded queue in
// shared memory; the parent gets and prints three, then joins them.
//
//   Python:  q = Queue(3); Process(target=f, args=(q, i)).start(); print(q.get())
#include <iostream>
#include <string>
#include <vector>

#include "point.capnp.h"
#include "xproc/process.h"
#include "xproc/queue.h"

int main() {
  xproc::Queue<Point> q(/*maxsize=*/3);  // bounded, in shared memory
  std::vector<xproc::Process> workers;
  for (int i = 0; i < 3; ++i) {
    workers
        .emplace_back([&q, i] {  // fork: the child gets q
          capnp::MallocMessageBuilder builder;
          auto p = builder.initRoot<Point>();
          p.setX(i);
          p.setName("My Process_name is " + xproc::current_process_name() + " and put the data to the id " +
                    std::to_string(i) + " queue");
          q.put(builder);  // serialized once, copied into shared memory
        })
        .start();
  }
  for (int i = 0; i < 3; ++i) {
    xproc::Message<Point> m = q.get();  // an owned copy
    std::cout << m->getName().cStr() << "\n";
  }
  for (auto& w : workers) w.join();
}
