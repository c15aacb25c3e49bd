// A C++ xproc Listener that a Python program using only the standard library talks to
// (examples/cross/client.py). Prints its address, answers each message, stops at b'bye'.
#include <iostream>
#include <string>

#include "xproc/connection.h"
#include "xproc/listener.h"

int main(int argc, char** argv) {
  const std::string address = argc > 1 ? argv[1] : "127.0.0.1:0";
  xproc::Listener listener(address, 1, "xproc demo key");
  std::cout << listener.address() << std::endl;
  xproc::ByteConnection connection = listener.accept();
  for (;;) {
    auto message = connection.recv_bytes();
    const std::string text(reinterpret_cast<const char*>(message.data()), message.size());
    if (text == "bye") break;
    std::cout << "C++ listener got: " << text << std::endl;
    const std::string reply = "C++ heard " + std::to_string(text.size()) + " bytes: " + text;
    connection.send_bytes(std::as_bytes(std::span(reply.data(), reply.size())));
  }
}
