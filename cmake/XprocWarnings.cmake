# Warnings for xproc's own targets: on everywhere, fatal unless XPROC_WARNINGS_AS_ERRORS
# is off. Third-party headers come in as system includes and are not affected.
function(xproc_enable_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
    -Wnon-virtual-dtor -Wcast-align -Wunused -Woverloaded-virtual -Wno-missing-field-initializers)
  if(XPROC_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
