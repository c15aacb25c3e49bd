// The C++ side of the cross-language demos and tests: each subcommand does one thing a
// Python program (examples/cross/*.py, tests/python) meets from the other side.
//
//   peer produce NAME COUNT            create the named Queue<Point> NAME, put COUNT points
//   peer consume NAME COUNT            open the named Queue<Point> NAME, get and print COUNT
//   peer manager ADDRESS KEY           connect to a Manager (Python's or anyone's), use its
//                                      objects named "counts" (dict) and "log" (list)
//   peer registered ADDRESS KEY        connect to a Python BaseManager that registered
//                                      "Maths" (add, mul, fail): call them from C++
//   peer serve-manager ADDRESS KEY     start a Manager server on ADDRESS; print "ready"
//                                      and serve until stdin closes
//   peer client ADDRESS KEY            connect to a Listener, receive one Value, send it
//                                      back inside {'echo': value, 'from': 'C++'}
//   peer relay-arrays IN OUT COUNT     get COUNT arrays from the named Value queue IN, read
//                                      each as a typed span and put a new array of the same
//                                      elements and shape on the named Value queue OUT
#include <complex>
#include <iostream>
#include <optional>
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

// A type registered from Python (BaseManager.register) called from C++ through the
// Dynamic interface: methods by name, Values in and out, Python's errors as xproc's.
int use_registered(const std::string& address, const std::string& key) {
  auto manager = xproc::Manager::connect(address, key);
  auto maths = manager.create_dynamic("Maths", {10});  // MathsClass(10) in the server
  std::cout << "C++ add(4, 3) = " << maths.call("add", {4, 3}).repr() << std::endl;
  std::cout << "C++ mul(y=8, x=7) = " << maths.call("mul", {}, xproc::ValueMap{{"x", 7}, {"y", 8}}).repr() << std::endl;
  std::cout << "C++ exposed:";
  for (const auto& method : maths.exposed()) std::cout << " " << method;
  std::cout << std::endl;
  try {
    maths.call("fail", {"boom"});
  } catch (const xproc::ValueError& e) {
    std::cout << "C++ caught ValueError: " << e.what() << std::endl;
  }
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

// A new array of the elements `view` holds, read as the C++ type of its dtype.
template <typename T>
xproc::Array retyped(const xproc::ArrayView& view) {
  return xproc::Array::of<T>(view.as<T>(), view.shape());
}

xproc::Array copy_through_span(const xproc::ArrayView& view) {
  using xproc::DType;
  switch (view.dtype()) {
    case DType::kBool: return retyped<bool>(view);
    case DType::kInt8: return retyped<int8_t>(view);
    case DType::kInt16: return retyped<int16_t>(view);
    case DType::kInt32: return retyped<int32_t>(view);
    case DType::kInt64: return retyped<int64_t>(view);
    case DType::kUInt8: return retyped<uint8_t>(view);
    case DType::kUInt16: return retyped<uint16_t>(view);
    case DType::kUInt32: return retyped<uint32_t>(view);
    case DType::kUInt64: return retyped<uint64_t>(view);
    case DType::kFloat16: return retyped<xproc::Float16>(view);
    case DType::kFloat32: return retyped<float>(view);
    case DType::kFloat64: return retyped<double>(view);
    case DType::kComplex64: return retyped<std::complex<float>>(view);
    case DType::kComplex128: return retyped<std::complex<double>>(view);
  }
  throw xproc::TypeError("unknown dtype");
}

int relay_arrays(const std::string& in_name, const std::string& out_name, int count) {
  auto in = xproc::Queue<xproc::Value>::open(in_name);
  auto out = xproc::Queue<xproc::Value>::open(out_name);
  for (int i = 0; i < count; ++i) {
    std::optional<xproc::Array> copy;
    if (!in.get_view(
            [&](xproc::schema::Value::Reader value) { copy = copy_through_span(xproc::ArrayView::read(value)); }, true,
            std::chrono::seconds(20))) {
      std::cerr << "C++ relay: no array " << i << " within 20 s" << std::endl;
      return 1;
    }
    out.put(xproc::Value(std::move(*copy)));
  }
  std::cout << "C++ relayed " << count << " arrays" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view command = argc > 1 ? argv[1] : "";
  try {
    if (command == "produce" && argc == 4) return produce(argv[2], std::stoi(argv[3]));
    if (command == "consume" && argc == 4) return consume(argv[2], std::stoi(argv[3]));
    if (command == "manager" && argc == 4) return use_manager(argv[2], argv[3]);
    if (command == "registered" && argc == 4) return use_registered(argv[2], argv[3]);
    if (command == "serve-manager" && argc == 4) return serve_manager(argv[2], argv[3]);
    if (command == "client" && argc == 4) return client(argv[2], argv[3]);
    if (command == "relay-arrays" && argc == 5) return relay_arrays(argv[2], argv[3], std::stoi(argv[4]));
  } catch (const std::exception& e) {
    std::cerr << "peer " << command << ": " << e.what() << std::endl;
    return 1;
  }
  std::cerr << "usage: peer produce|consume NAME COUNT | manager|serve-manager|client ADDRESS KEY"
               " | relay-arrays IN OUT COUNT"
            << std::endl;
  return 2;
}
