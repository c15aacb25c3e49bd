// The C++ side of the cross-language demos and tests: each subcommand does one thing a
// Python program (examples/cross/*.py, tests/python) meets from the other side.
//
//   peer produce NAME COUNT            create the named Queue<Point> NAME, put COUNT points
//   peer consume NAME COUNT            open the named Queue<Point> NAME, get and print COUNT
//   peer manager ADDRESS KEY           connect to a Manager (Python's or anyone's), use its
//                                      objects named "counts" (dict) and "log" (list)
//   peer serve-manager ADDRESS KEY     start a Manager server on ADDRESS; print "ready"
//                                      and serve until stdin closes
//   peer client ADDRESS KEY            connect to a Listener, receive one Value, send it
//                                      back inside {'echo': value, 'from': 'C++'}
#include <iostream>
#include <string>
#include <string_view>

#include "point.capnp.h"
#include "xproc/connection.h"
#include "xproc/listener.h"
#include "xproc/manager.h"
#include "xproc/queue.h"

namespace {

int produce(const std::string& name, int count) {
  auto queue = xproc::Queue<Point>::create(name);
  for (int i = 0; i < count; ++i) {
    capnp::MallocMessageBuilder builder;
    auto point = builder.initRoot<Point>();
    point.setX(i);
    point.setY(i * i);
    point.setName("C++ point " + std::to_string(i));
    queue.put(builder);
  }
  std::cout << "C++ put " << count << " points on '" << name << "'" << std::endl;
  return 0;
}

int consume(const std::string& name, int count) {
  auto queue = xproc::Queue<Point>::open(name);
  for (int i = 0; i < count; ++i) {
    auto point = queue.get(true, std::chrono::seconds(20));
    std::cout << "C++ got x=" << point->getX() << " y=" << point->getY() << " name=" << point->getName().cStr()
              << std::endl;
  }
  return 0;
}

int use_manager(const std::string& address, const std::string& key) {
  auto manager = xproc::Manager::connect(address, key);
  auto counts = manager.dict({}, "counts");
  auto log = manager.list({}, "log");
  counts.increment("C++");
  log.append("hello from C++");
  std::cout << "C++ sees counts=" << counts << " log=" << log << std::endl;
  return 0;
}

int serve_manager(const std::string& address, const std::string& key) {
  xproc::Manager manager(xproc::ManagerOptions{.address = address, .authkey = key});
  std::cout << "ready " << manager.address() << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  auto counts = manager.dict({}, "counts");
  std::cout << "C++ server ends with counts=" << counts << std::endl;
  return 0;
}

int client(const std::string& address, const std::string& key) {
  xproc::Connection<xproc::Value> connection(xproc::Client(address, key));
  xproc::Value received = connection.recv();
  connection.send(xproc::Value::map({{"echo", received}, {"from", "C++"}}));
  std::cout << "C++ client got " << received.repr() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view command = argc > 1 ? argv[1] : "";
  try {
    if (command == "produce" && argc == 4) return produce(argv[2], std::stoi(argv[3]));
    if (command == "consume" && argc == 4) return consume(argv[2], std::stoi(argv[3]));
    if (command == "manager" && argc == 4) return use_manager(argv[2], argv[3]);
    if (command == "serve-manager" && argc == 4) return serve_manager(argv[2], argv[3]);
    if (command == "client" && argc == 4) return client(argv[2], argv[3]);
  } catch (const std::exception& e) {
    std::cerr << "peer " << command << ": " << e.what() << std::endl;
    return 1;
  }
  std::cerr << "usage: peer produce|consume NAME COUNT | manager|serve-manager|client ADDRESS KEY" << std::endl;
  return 2;
}
