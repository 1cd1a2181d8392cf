// Precision switches tch does not expose: TF32 for CUDA matmuls/convolutions, and bf16
// autocast on CUDA (thread-local, like `torch.autocast("cuda", torch.bfloat16)`).
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>

#include "shim.h"

extern "C" {

// Returns 0, or -1 on a libtorch error (chargpt_last_error says why).
int chargpt_set_tf32(int enabled) {
  return chargpt::guarded(-1, [&] {
    at::globalContext().setAllowTF32CuBLAS(enabled != 0);
    at::globalContext().setAllowTF32CuDNN(enabled != 0);
    return 0;
  });
}

// Enters (enabled=1) or leaves (0) bf16 autocast for CUDA ops on this thread. Leaving
// clears the cast cache, as leaving PyTorch's outermost autocast context does: the
// cached bf16 copies of the weights go stale once the optimiser updates them.
// Returns 0, or -1 on a libtorch error.
int chargpt_autocast_bf16(int enabled) {
  return chargpt::guarded(-1, [&] {
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, enabled != 0);
    if (!enabled) at::autocast::clear_cache();
    return 0;
  });
}
}
