// Precision switches tch does not expose: TF32 for CUDA matmuls/convolutions, and bf16
// autocast (thread-local, like `torch.autocast("cuda" or "cpu", torch.bfloat16)`).
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

// Enters (enabled=1) or leaves (0) bf16 autocast for the ops of one device type (cuda=1:
// CUDA, 0: CPU) on this thread. Leaving clears the cast cache, as leaving PyTorch's
// outermost autocast context does: the cached bf16 copies of the weights go stale once
// the optimiser updates them. Returns 0, or -1 on a libtorch error.
int chargpt_autocast_bf16(int enabled, int cuda) {
  return chargpt::guarded(-1, [&] {
    const auto device = cuda ? at::kCUDA : at::kCPU;
    at::autocast::set_autocast_dtype(device, at::kBFloat16);
    at::autocast::set_autocast_enabled(device, enabled != 0);
    if (!enabled) at::autocast::clear_cache();
    return 0;
  });
}
}
