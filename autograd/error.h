// normgrad errors. Every bad input throws an ng::Error subclass whose message names the
// op and the shapes / dtypes / values involved:  "<op>: <what is wrong>: <expected> vs <actual>".
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace ng {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ShapeError : Error {  // shapes that do not fit the op
  using Error::Error;
};
struct DTypeError : Error {  // wrong or mismatched dtypes
  using Error::Error;
};
struct ValueError : Error {  // a bad argument value (eps <= 0, negative lr, ...)
  using Error::Error;
};
struct IndexError : ValueError {  // an index outside its range
  using ValueError::ValueError;
};
struct IOError : Error {  // files: missing, truncated, corrupt
  using Error::Error;
};
struct AutogradError : Error {  // misuse of the tape (backward twice, no grad, ...)
  using Error::Error;
};
struct OutOfMemoryError : Error {  // a buffer larger than allocation_limit() or than the allocator gives
  using Error::Error;
};
struct AnomalyError : Error {  // anomaly mode: an op or a backward produced NaN or Inf (tape.h)
  using Error::Error;
};

// ng::fail<ShapeError>("matmul: ...: {} vs {}", a, b) -- builds the message with fmt and throws.
template <class E = Error, class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw E(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace ng
