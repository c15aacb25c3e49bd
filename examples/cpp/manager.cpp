// The seed's Manager program: ten processes write into a shared dict and append to a
// shared list made from range(5); the parent prints both in Python's notation.
//
//   Python:  with Manager() as manager:
//                dic = manager.dict(); lst = manager.list(range(5))
//                ... Process(target=f, args=(dic, lst, i)) ...
//                print(dic); print(lst)
#include <iostream>
#include <string>
#include <vector>

#include "xproc/manager.h"
#include "xproc/process.h"

int main() {
  xproc::Manager manager;  // forks the server; shut down when it leaves scope
  auto dic = manager.dict();
  auto lst = manager.list({0, 1, 2, 3, 4});

  std::vector<xproc::Process> workers;
  for (int i = 0; i < 10; ++i) {
    workers.emplace_back([dic, lst, i] {  // the child connects on first use
      dic.set("Process_" + std::to_string(i), "1");
      dic.set("2", 2);
      dic.set(0.25, nullptr);
      lst.append(i);
    });
    workers.back().start();
  }
  for (auto& w : workers) w.join();

  std::cout << dic << "\n";  // the remote dict's repr, as print(dic) shows it
  std::cout << lst << "\n";
}
