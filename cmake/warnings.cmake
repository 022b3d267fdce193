# Warnings for normgrad's own targets, never imposed on consumers: the library takes them as
# PRIVATE compile options, tests/examples/bench link the normgrad_warnings interface target.
set(NORMGRAD_WARNING_FLAGS
  -Wall -Wextra -Wpedantic   # the baseline the project promises
  -Wshadow                   # a local hiding another is a classic autograd-capture bug
  -Wnon-virtual-dtor         # Module has virtual members; deleting through a base must be safe
  -Wold-style-cast           # casts should say what they do
  -Woverloaded-virtual       # a forward() overload hiding the base one
  -Wnull-dereference
  -Wformat=2
  -Wimplicit-fallthrough
  $<$<BOOL:${NORMGRAD_WERROR}>:-Werror>)
add_library(normgrad_warnings INTERFACE)
target_compile_options(normgrad_warnings INTERFACE ${NORMGRAD_WARNING_FLAGS})
