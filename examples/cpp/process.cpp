// Processes started and joined as with multiprocessing.Process: names, pids, exit codes.
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include "xproc/process.h"

int main() {
  std::vector<xproc::Process> workers;
  for (int i = 0; i < 3; ++i) {
    workers
        .emplace_back(
            [] { std::cout << "hello from " << xproc::current_process_name() << " (pid " << getpid() << ")\n"; })
        .start();
  }
  xproc::Process sleeper([] { std::this_thread::sleep_for(std::chrono::hours(1)); });
  sleeper.start();
  for (auto& w : workers) w.join();
  sleeper.terminate();
  sleeper.join();
  for (auto& w : workers) std::cout << w.name() << " exitcode " << *w.exitcode() << "\n";
  std::cout << sleeper.name() << " exitcode " << *sleeper.exitcode() << " (terminated)\n";
}
