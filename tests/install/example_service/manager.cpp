// Starts a Manager from an installed xproc and counts in one of its dicts from a child.
#include <iostream>

#include <xproc/manager.h>
#include <xproc/process.h>

int main() {
  xproc::Manager manager;
  auto counts = manager.dict();
  xproc::Process child([counts] { counts.increment("jobs", 3); });
  child.start();
  child.join();
  std::cout << "jobs: " << counts["jobs"].repr() << std::endl;
  return child.exitcode() == 0 ? 0 : 1;
}
