// TEMPORARY: stubs until the ops helpers land.
#include "autograd/ops.h"
namespace ng {
#define STUB(sig) sig { fail<Error>("not implemented yet"); }
STUB(Tensor max(const Tensor&, const Axes&, bool))
STUB(Tensor min(const Tensor&, const Axes&, bool))
STUB(Tensor var(const Tensor&, const Axes&, int64_t, bool))
STUB(Tensor std(const Tensor&, const Axes&, int64_t, bool))
STUB(Tensor logsumexp(const Tensor&, const Axes&, bool))
STUB(Tensor argmax(const Tensor&, int64_t, bool))
}
