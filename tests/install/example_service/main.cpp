// Puts a typed Job on a Queue<Job> in a forked child and reads it back in the parent.
#include <iostream>

#include <xproc/xproc.h>

#include "job.capnp.h"

int main() {
  xproc::Queue<Job> jobs(1);
  xproc::Process producer([&jobs] {
    capnp::MallocMessageBuilder builder;
    auto job = builder.initRoot<Job>();
    job.setId(7);
    xproc::Value::map({{"task", "resize"}, {"sizes", xproc::Value::list({64, 128})}}).to_capnp(job.initPayload());
    jobs.put(builder);
  });
  producer.start();
  auto job = jobs.get();
  producer.join();
  std::cout << "job " << job->getId() << ": " << xproc::Value::from_capnp(job->getPayload()).repr() << std::endl;
  return producer.exitcode() == 0 ? 0 : 1;
}
