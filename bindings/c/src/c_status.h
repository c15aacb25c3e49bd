// The C ABI's error model: every entry point runs its body through guarded(), which turns
// xproc's exceptions into status codes and keeps the message for
// xproc_last_error_message(). Nothing is thrown across the boundary.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <string>

#include "xproc.h"
#include "xproc/errors.h"

namespace xproc::c_api {

int fail(int code, const char* message) noexcept;
// The XPROC_* code of a row of XPROC_ERRORS (errors.h); XPROC_UNKNOWN_ERROR for kError.
int status_of(ErrorKind kind) noexcept;
int translate_current_exception() noexcept;
void clear_error() noexcept;
const char* last_error() noexcept;

template <typename Body>
int guarded(Body&& body) noexcept {
  try {
    body();
    clear_error();
    return XPROC_OK;
  } catch (...) {
    return translate_current_exception();
  }
}

// A malloc'ed copy of `bytes` for the caller to xproc_free (throws std::bad_alloc).
void* copy_out(std::span<const std::byte> bytes);
char* copy_text(const std::string& text);

}  // namespace xproc::c_api

// Rejects a NULL argument with XPROC_INVALID_ARGUMENT naming it.
#define XPROC_REQUIRE_ARG(pointer) \
  if ((pointer) == nullptr) return ::xproc::c_api::fail(XPROC_INVALID_ARGUMENT, #pointer " is NULL")
