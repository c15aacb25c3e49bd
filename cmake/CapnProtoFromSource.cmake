# Cap'n Proto's libraries that xproc links (kj, kj-async, kj-tls, capnp, capnp-rpc), compiled
# from a source tree as static, position-independent archives whose symbols are hidden: the
# Python wheel's copy (XPROC_STATIC_DEPS, cmake/XprocStaticDeps.cmake). Debian's libkj.a
# cannot serve: it was compiled for executables (its thread-locals use the local-exec TLS
# model, which a shared object cannot hold).
# The tree is XPROC_CAPNP_SOURCE_DIR: by default deps/capnproto, where
# cmake/fetch_capnproto_source.sh puts Debian's source package of the installed capnproto
# and which the sdist carries; or the unpacked c++ directory of any release. Sets
# XPROC_CAPNP_VERSION, the release, from the header the generated code checks it against.
# Upstream's own CMakeLists.txt is not used: it installs headers, libraries and tools (into
# the wheel, here), builds the compiler and the tests unless told otherwise, and refuses
# xproc's CMAKE_CXX_EXTENSIONS OFF. The source lists are its own, from src/kj/CMakeLists.txt
# and src/capnp/CMakeLists.txt.
set(XPROC_CAPNP_SOURCE_DIR ${CMAKE_SOURCE_DIR}/deps/capnproto CACHE PATH
    "Cap'n Proto's sources (a release's c++ directory) for XPROC_STATIC_DEPS")
set(xproc_capnp_src ${XPROC_CAPNP_SOURCE_DIR}/src)
if(NOT EXISTS ${xproc_capnp_src}/capnp/common.h)
  message(FATAL_ERROR "XPROC_STATIC_DEPS: no Cap'n Proto sources in ${XPROC_CAPNP_SOURCE_DIR}: "
                      "run cmake/fetch_capnproto_source.sh (Debian's source package of the "
                      "installed capnproto), or set XPROC_CAPNP_SOURCE_DIR to a release's c++ directory")
endif()

file(STRINGS ${xproc_capnp_src}/capnp/common.h xproc_capnp_defines
     REGEX "^#define CAPNP_VERSION_(MAJOR|MINOR|MICRO) [0-9]+$")
set(XPROC_CAPNP_VERSION)
foreach(part MAJOR MINOR MICRO)
  string(REGEX REPLACE ".*#define CAPNP_VERSION_${part} ([0-9]+).*" "\\1" xproc_capnp_number
         "${xproc_capnp_defines}")
  list(APPEND XPROC_CAPNP_VERSION ${xproc_capnp_number})
endforeach()
list(JOIN XPROC_CAPNP_VERSION . XPROC_CAPNP_VERSION)

set(kj_sources
  array.c++ list.c++ common.c++ debug.c++ exception.c++ io.c++ memory.c++ mutex.c++
  string.c++ source-location.c++ hash.c++ table.c++ thread.c++ main.c++ arena.c++
  test-helpers.c++ units.c++ encoding.c++
  refcount.c++ string-tree.c++ time.c++ filesystem.c++ filesystem-disk-unix.c++ parse/char.c++)
set(kj-async_sources async.c++ async-unix.c++ async-io.c++ async-io-unix.c++ timer.c++)
set(kj-tls_sources compat/readiness-io.c++ compat/tls.c++)
set(capnp_sources
  c++.capnp.c++ blob.c++ arena.c++ layout.c++ list.c++ any.c++ message.c++ schema.capnp.c++
  stream.capnp.c++ serialize.c++ serialize-packed.c++
  schema.c++ schema-loader.c++ dynamic.c++ stringify.c++)
set(capnp-rpc_sources
  serialize-async.c++ capability.c++ membrane.c++ dynamic-capability.c++ rpc.c++ rpc.capnp.c++
  rpc-twoparty.c++ rpc-twoparty.capnp.c++ persistent.capnp.c++ ez-rpc.c++)

# xproc_capnp_library(NAME DIR DEPENDENCIES...): static lib NAME from ${NAME}_sources in
# src/DIR, known to the rest of the build as CapnProto::NAME, as find_package(CapnProto)
# names the system's.
function(xproc_capnp_library name dir)
  list(TRANSFORM ${name}_sources PREPEND ${xproc_capnp_src}/${dir}/)
  add_library(xproc_capnp_${name} STATIC ${${name}_sources})
  add_library(CapnProto::${name} ALIAS xproc_capnp_${name})
  set_target_properties(xproc_capnp_${name} PROPERTIES
    OUTPUT_NAME ${name}
    ARCHIVE_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/capnproto
    # Cap'n Proto needs the GNU dialect; the same standard as xproc's code, so that both see
    # the same inline code (coroutine support in kj's headers depends on it).
    CXX_STANDARD 20 CXX_EXTENSIONS ON
    POSITION_INDEPENDENT_CODE ON
    # Hidden, not merely kept out of the export table: no GNU unique symbols either.
    CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  # Upstream's warnings flags, quiet: this code is not ours to fix.
  target_compile_options(xproc_capnp_${name} PRIVATE -w)
  target_include_directories(xproc_capnp_${name} SYSTEM PUBLIC ${xproc_capnp_src})
  target_link_libraries(xproc_capnp_${name} PUBLIC ${ARGN})
endfunction()

xproc_capnp_library(kj kj Threads::Threads)
xproc_capnp_library(kj-async kj xproc_capnp_kj)
xproc_capnp_library(kj-tls kj xproc_capnp_kj-async OpenSSL::SSL OpenSSL::Crypto)
target_compile_definitions(xproc_capnp_kj-tls PRIVATE KJ_HAS_OPENSSL)
xproc_capnp_library(capnp capnp xproc_capnp_kj)
xproc_capnp_library(capnp-rpc capnp xproc_capnp_capnp xproc_capnp_kj-async)
