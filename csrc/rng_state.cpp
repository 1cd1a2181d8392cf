// A generator's state as bytes, like torch.get_rng_state()/set_rng_state() and
// torch.cuda.get_rng_state()/set_rng_state(); tch exposes manual_seed but not the state,
// and resuming a run needs both. `device_index` -1 is the CPU generator, 0.. a CUDA
// device's default generator (libtorch_cuda must be loaded and see that device).
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Version.h>
#include <ATen/core/Generator.h>
#include <ATen/ops/empty.h>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>

#include "shim.h"

namespace {

at::Generator default_generator(int64_t device_index) {
  if (device_index < 0) {
    return at::detail::getDefaultCPUGenerator();
  }
  TORCH_CHECK(at::globalContext().hasCUDA(), "no CUDA device is available for its generator");
  return at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index)));
}

}  // namespace

extern "C" {

// Writes the state into `out` (capacity `cap`); returns its length, or -1 on an error
// (a too small buffer included; chargpt_last_error says why).
int64_t chargpt_rng_get_state(int64_t device_index, uint8_t* out, int64_t cap) {
  return chargpt::guarded<int64_t>(-1, [&]() -> int64_t {
    auto gen = default_generator(device_index);
    std::lock_guard<std::mutex> lock(gen.mutex());
    at::Tensor state = gen.get_state();
    const int64_t n = state.numel();
    TORCH_CHECK(n <= cap, "the generator state has ", n, " bytes, the buffer ", cap);
    std::memcpy(out, state.data_ptr<uint8_t>(), n);
    return n;
  });
}

// Restores a state written by chargpt_rng_get_state; returns 0, or -1 on an error
// (libtorch refuses a state of the wrong size or version).
int chargpt_rng_set_state(int64_t device_index, const uint8_t* in, int64_t len) {
  return chargpt::guarded(-1, [&] {
    TORCH_CHECK(len >= 0, "negative state length ", len);
    auto gen = default_generator(device_index);
    at::Tensor state = at::empty({len}, at::kByte);
    std::memcpy(state.data_ptr<uint8_t>(), in, len);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
    return 0;
  });
}

// The version of the libtorch loaded at run time (its build settings' TORCH_VERSION),
// which is what decides the numbers, whatever headers chargpt was compiled against.
// Writes at most `cap` bytes; returns the length, or -1.
int64_t chargpt_torch_version(char* out, int64_t cap) {
  return chargpt::guarded<int64_t>(-1, [&]() -> int64_t {
    const std::string config = at::show_config();
    const std::string key = "TORCH_VERSION=";
    auto at = config.find(key);
    TORCH_CHECK(at != std::string::npos, "libtorch's build settings name no TORCH_VERSION");
    at += key.size();
    auto end = config.find_first_of(", \n", at);
    std::string version = config.substr(at, end == std::string::npos ? std::string::npos : end - at);
    const int64_t n = static_cast<int64_t>(version.size());
    TORCH_CHECK(n <= cap, "the version has ", n, " bytes, the buffer ", cap);
    std::memcpy(out, version.data(), n);
    return n;
  });
}
}
