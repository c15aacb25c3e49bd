// Every row of XPROC_ERRORS (errors.h) reaches C callers as its own XPROC_* code, named by
// xproc_strerror, with its message kept.
#include <gtest/gtest.h>
#include <kj/exception.h>
#include <kj/string.h>

#include <set>
#include <string>

#include "c_status.h"
#include "xproc/errors.h"

namespace xproc::c_api {
namespace {

int status_of_thrown(ErrorKind kind, const std::string& message) {
  try {
    throw_error(kind, message);
  } catch (...) {
    return translate_current_exception();
  }
}

void expect_row(ErrorKind kind, const char* name, int expected, const char* status_name, std::set<int>& codes) {
  SCOPED_TRACE(name);
  const int code = status_of_thrown(kind, "the message");
  EXPECT_EQ(code, expected);
  EXPECT_EQ(std::string(xproc_strerror(code)).rfind(std::string(status_name) + ":", 0), 0u) << xproc_strerror(code);
  if (kind != ErrorKind::kBufferTooShort) {
    EXPECT_STREQ(last_error(), "the message");
  }
  codes.insert(code);
}

TEST(CStatusTest, EveryErrorHasItsOwnCode) {
  std::set<int> codes;
  size_t rows = 0;
#define XPROC_CHECK_ROW(Class, module, status) \
  ++rows;                                      \
  expect_row(ErrorKind::k##Class, #Class, XPROC_##status, "XPROC_" #status, codes);
  XPROC_ERRORS(XPROC_CHECK_ROW)
#undef XPROC_CHECK_ROW
  EXPECT_EQ(codes.size(), rows);
  EXPECT_EQ(codes.count(XPROC_UNKNOWN_ERROR), 0u);
}

TEST(CStatusTest, AKjExceptionThatNamesAnErrorGetsItsCode) {
  int code = XPROC_OK;
  try {
    throw kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::str("remote exception: KeyError: 'a'"));
  } catch (...) {
    code = translate_current_exception();
  }
  EXPECT_EQ(code, XPROC_KEY_ERROR);
  EXPECT_STREQ(last_error(), "'a'");
}

}  // namespace
}  // namespace xproc::c_api
