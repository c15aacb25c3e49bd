// XPROC_ERRORS (errors.h) is the one list of xproc's errors: every row throws as its own
// class, travels through a Manager's reply and comes back as itself, and kj's exceptions
// become xproc errors in one place (detail::rethrow_kj). The Python translator and the C
// codes walk the same rows (tests/python/test_errors.py, bindings/c/tests/status_test.cpp).
#include <gtest/gtest.h>

#include <exception>
#include <string>

#include "xproc/errors.h"
#include "xproc/kj_errors_internal.h"
#include "xproc/rpc/lane.h"
#include "xproc/rpc/remote_error.h"

namespace xproc {
namespace {

// What throw_error(kind, message) throws, caught.
std::exception_ptr thrown(ErrorKind kind, const std::string& message) {
  try {
    throw_error(kind, message);
  } catch (...) {
    return std::current_exception();
  }
}

// The error `error` becomes after a trip through a Manager's reply: the server's
// to_remote, kj's prefix on the client, the client's rethrow_local.
std::exception_ptr through_the_wire(const std::exception_ptr& error) {
  kj::Exception remote = rpc::to_remote(error);
  kj::Exception received(remote.getType(), __FILE__, __LINE__, kj::str("remote exception: ", remote.getDescription()));
  try {
    rpc::rethrow_local(received);
  } catch (...) {
    return std::current_exception();
  }
}

template <typename Class>
void expect_row(ErrorKind kind, const char* name) {
  SCOPED_TRACE(name);
  EXPECT_EQ(error_name(kind), name);
  EXPECT_EQ(error_kind_named(name), kind);
  for (const std::exception_ptr& error : {thrown(kind, "the message"), through_the_wire(thrown(kind, "the message"))}) {
    try {
      std::rethrow_exception(error);
    } catch (const Class& e) {
      EXPECT_EQ(e.kind(), kind);
      if (kind != ErrorKind::kBufferTooShort) {
        EXPECT_STREQ(e.what(), "the message");
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "caught " << e.what() << " as something else";
    }
  }
}

TEST(ErrorsTest, EveryRowThrowsAsItsClassAndComesBackFromTheWireAsItself) {
#define XPROC_CHECK_ROW(Class, module, status) expect_row<Class>(ErrorKind::k##Class, #Class);
  XPROC_ERRORS(XPROC_CHECK_ROW)
#undef XPROC_CHECK_ROW
}

TEST(ErrorsTest, AnOSErrorKeepsItsErrnoOverTheWire) {
  try {
    std::rethrow_exception(through_the_wire(std::make_exception_ptr(OSError("open: gone", ENOENT))));
  } catch (const OSError& e) {
    EXPECT_EQ(e.error_number(), ENOENT);
    EXPECT_STREQ(e.what(), "open: gone");
  }
  try {
    std::rethrow_exception(through_the_wire(std::make_exception_ptr(PermissionError("not yours", EPERM))));
  } catch (const PermissionError& e) {
    EXPECT_EQ(e.error_number(), EPERM);
  }
}

TEST(ErrorsTest, EmptyAndFullWithoutAMessageKeepTheirOwn) {
  EXPECT_THROW(
      {
        try {
          throw_error(ErrorKind::kEmpty, "");
        } catch (const Empty& e) {
          EXPECT_STREQ(e.what(), "queue is empty");
          throw;
        }
      },
      Empty);
}

TEST(ErrorsTest, KjExceptionsBecomeXprocErrorsInOnePlace) {
  auto kj_error = [](kj::Exception::Type type, const char* text) {
    return kj::Exception(type, __FILE__, __LINE__, kj::heapString(text));
  };
  // A dropped connection is a ConnectionError, whatever else was asked for.
  EXPECT_THROW(detail::rethrow_kj(kj_error(kj::Exception::Type::DISCONNECTED, "peer gone"), ErrorKind::kDecodeError),
               ConnectionError);
  EXPECT_THROW(detail::rethrow_kj(kj_error(kj::Exception::Type::OVERLOADED, "busy"), ErrorKind::kError),
               ConnectionError);
  // A description that names a row is that row.
  EXPECT_THROW(detail::rethrow_kj(kj_error(kj::Exception::Type::FAILED, "IndexError: out of range"), ErrorKind::kError),
               IndexError);
  // Anything else is what the caller said, with its context.
  try {
    detail::rethrow_kj(kj_error(kj::Exception::Type::FAILED, "Message ends prematurely."), ErrorKind::kDecodeError,
                       "invalid Value: ");
    ADD_FAILURE();
  } catch (const DecodeError& e) {
    EXPECT_STREQ(e.what(), "invalid Value: Message ends prematurely.");
  }
  EXPECT_EQ(detail::translating_kj(ErrorKind::kDecodeError, "", [] { return 7; }), 7);
}

TEST(ErrorsTest, ABrokenLaneIsAConnectionError) {
  try {
    throw rpc::LaneError("the peer's write count on the lane is impossible");
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kConnectionError);
  }
}

TEST(ErrorsTest, AnUnnamedErrorTravelsAsRuntimeError) {
  try {
    std::rethrow_exception(through_the_wire(std::make_exception_ptr(Error("plain"))));
  } catch (const RuntimeError& e) {
    EXPECT_STREQ(e.what(), "plain");
  }
}

}  // namespace
}  // namespace xproc
