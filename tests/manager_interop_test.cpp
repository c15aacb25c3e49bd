// A Manager reached from Python with pycapnp and manager.capnp alone: the Python process
// has no xproc code, only the schema.
#include <gtest/gtest.h>

#include <cstdio>

#include "support/test_support.h"
#include "xproc/manager.h"
#include "xproc/process.h"

namespace xproc {
namespace {

std::string hex(const std::string& bytes) {
  std::string out;
  char digits[3];
  for (unsigned char c : bytes) {
    std::snprintf(digits, sizeof(digits), "%02x", c);
    out += digits;
  }
  return out;
}

TEST(ManagerInterop, PycapnpClientReadsAndWritesWhatACppChildWrote) {
  Manager manager;
  auto shared = manager.dict({}, "interop");
  Process writer([shared] {
    shared.set("written by", "c++ child");
    shared.set(0.25, nullptr);
    shared.set("count", 1);
    shared.set("nested", Value::list({1, Value::bytes("b"), Value::map({{"k", true}})}));
  });
  writer.start();
  writer.join();
  ASSERT_EQ(writer.exitcode(), 0);

  std::string path = manager.address();
  if (path.starts_with("unix:")) path = path.substr(5);
  auto [status, output] = xproc::testing::run_command(
      xproc::testing::venv_python() + " " + xproc::testing::interop_script("pycapnp_manager_client.py") + " " +
      XPROC_SOURCE_DIR "/schema " + path + " " + hex(*manager.authkey()) + " interop 2>&1");
  ASSERT_EQ(status, 0) << output;
  // What Python printed of the C++ child's writes, then the repr after its own.
  EXPECT_NE(output.find("{'written by': 'c++ child', 0.25: None, 'count': 1, 'nested': [1, b'b', {'k': True}]}"),
            std::string::npos)
      << output;
  EXPECT_EQ(shared["from"], Value("python"));
  EXPECT_EQ(shared["count"], Value(6));
  EXPECT_NE(output.find(shared.repr()), std::string::npos) << output;
}

}  // namespace
}  // namespace xproc
