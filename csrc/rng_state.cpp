// The CPU generator's state as bytes, like torch.get_rng_state()/set_rng_state().
// tch exposes manual_seed but not the state; resuming a run needs both.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <ATen/ops/empty.h>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "shim.h"

extern "C" {

// Writes the state into `out` (capacity `cap`); returns its length, or -1 on an error
// (a too small buffer included; chargpt_last_error says why).
int64_t chargpt_cpu_rng_get_state(uint8_t* out, int64_t cap) {
  return chargpt::guarded<int64_t>(-1, [&]() -> int64_t {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    at::Tensor state = gen.get_state();
    const int64_t n = state.numel();
    TORCH_CHECK(n <= cap, "the generator state has ", n, " bytes, the buffer ", cap);
    std::memcpy(out, state.data_ptr<uint8_t>(), n);
    return n;
  });
}

// Restores a state written by chargpt_cpu_rng_get_state; returns 0, or -1 on an error
// (libtorch refuses a state of the wrong size or version).
int chargpt_cpu_rng_set_state(const uint8_t* in, int64_t len) {
  return chargpt::guarded(-1, [&] {
    TORCH_CHECK(len >= 0, "negative state length ", len);
    auto gen = at::detail::getDefaultCPUGenerator();
    at::Tensor state = at::empty({len}, at::kByte);
    std::memcpy(state.data_ptr<uint8_t>(), in, len);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
    return 0;
  });
}
}
