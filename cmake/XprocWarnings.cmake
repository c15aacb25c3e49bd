# Warnings for xproc's own targets: on everywhere, fatal unless XPROC_WARNINGS_AS_ERRORS
# is off. Third-party headers come in as system includes and are not affected.
function(xproc_enable_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
    -Wnon-virtual-dtor -Wcast-align -Wunused -Woverloaded-virtual -Wno-missing-field-initializers)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    # GCC 12 at -O3 reports impossible overlaps in std::string concatenation (GCC bug
    # 105329); the warning is noise there.
    target_compile_options(${target} PRIVATE -Wno-restrict)
  endif()
  if(XPROC_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
