// Uses xproc::nats from an installed xproc: with nothing listening on the address given, a
// connect answers with xproc's ConnectionError within its timeout.
#include <chrono>
#include <iostream>

#include <xproc/nats/connection.h>
#include <xproc/nats/queue.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  try {
    auto nats = xproc::nats::connect({.servers = {argv[1]}, .connect_timeout = std::chrono::seconds(2)});
    xproc::nats::Queue<xproc::Value> jobs(nats, "jobs");
    std::cout << "connected" << std::endl;
  } catch (const xproc::ConnectionError&) {
    std::cout << "unreachable" << std::endl;
  }
  return 0;
}
