#include "layers/activation.h"

#include "layers/repr.h"

namespace ng::nn {

std::string LeakyReLU::extra_repr() const { return "negative_slope=" + detail::py_float(negative_slope); }

}  // namespace ng::nn
