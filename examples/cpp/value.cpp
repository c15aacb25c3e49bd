// Values printed the way Python prints them: the "any object" that untyped queues carry
// and Manager containers hold.
#include <iostream>

#include "xproc/value.h"

int main() {
  xproc::ValueMap dic;
  dic.set(0.25, nullptr);
  dic.set("Process_1", "1");
  dic.set("2", 2);
  const xproc::Value values[] = {
      xproc::Value(std::move(dic)),
      xproc::Value::list({0, 1, 2, 3, 4}),
      xproc::Value::bytes(std::string("\0a", 2)),
      1e16,
      "it's",
  };
  for (const xproc::Value& v : values) {
    // Round trip through the Cap'n Proto bytes any language can read.
    auto bytes = v.encode();
    xproc::Value back =
        xproc::Value::decode({reinterpret_cast<const std::byte*>(bytes.begin()), bytes.size() * sizeof(capnp::word)});
    std::cout << back.repr() << "  (" << bytes.size() * 8 << " bytes on the wire)\n";
  }
}
