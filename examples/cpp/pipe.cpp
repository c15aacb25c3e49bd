// The seed's Pipe program: two children share one end of a duplex Pipe; each sends a
// greeting with its pid and prints what the parent answers.
//
//   Python:  parent, child = Pipe(); Process(target=f, args=(child,)).start()
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "xproc/connection.h"
#include "xproc/process.h"

int main() {
  auto [parent_end, child_end] = xproc::Pipe<xproc::Value>();
  std::vector<xproc::Process> children;
  for (int i = 0; i < 2; ++i) {
    // Both children use the same end; each waits for the parent's answer before leaving.
    children.emplace_back([&child_end] {
      child_end.send("Hi I'm your subprocess. My ID is " + std::to_string(getpid()));
      std::cout << getpid() << " got: " << child_end.recv().as_text() << std::endl;
    });
  }
  for (auto& child : children) {
    child.start();
    std::cout << "parent got: " << parent_end.recv().as_text() << std::endl;
    parent_end.send("Remember I'm your Master");
    child.join();
  }
}
