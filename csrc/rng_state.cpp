// The CPU generator's state as bytes, like torch.get_rng_state()/set_rng_state().
// tch exposes manual_seed but not the state; resuming a run needs both.
#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/ops/empty.h>
#include <cstring>
#include <mutex>

extern "C" {

// Writes the state into `out` (capacity `cap`); returns its length, or -1 if `cap` is too small.
long chargpt_cpu_rng_get_state(unsigned char* out, long cap) {
  try {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    at::Tensor state = gen.get_state();
    long n = state.numel();
    if (n > cap) return -1;
    std::memcpy(out, state.data_ptr<uint8_t>(), n);
    return n;
  } catch (...) {
    return -2;
  }
}

// Restores a state written by chargpt_cpu_rng_get_state; returns 0 on success.
int chargpt_cpu_rng_set_state(const unsigned char* in, long len) {
  try {
    auto gen = at::detail::getDefaultCPUGenerator();
    at::Tensor state = at::empty({len}, at::kByte);
    std::memcpy(state.data_ptr<uint8_t>(), in, len);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
    return 0;
  } catch (...) {
    return -1;
  }
}
}
