// What chargpt needs of CUDA beyond tch: the GPU's description (for run.json), the
// allocator's peak memory (for the bench), and CUDA Graphs for the training step: the forward, backward and AdamW update of one step
// captured once and replayed, so that each later step costs the host one launch instead of
// hundreds. The steps around it follow PyTorch's whole-network capture
// (torch.cuda.graph): warm-up steps on a side stream, then the capture on that stream into
// the graph's private memory pool, with autocast's weight cache off; the default CUDA
// generator is registered with the graph, so each replay draws new dropout masks.
//
// Only libtorch's exported functions are called (no CUDA runtime symbol of our own), so
// that the binary needs no libcudart beside libtorch's. Built without CUDA's headers (a
// libtorch without CUDA), every entry point says so and the trainer stays eager.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <algorithm>

#include "shim.h"

#ifdef CHARGPT_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/cuda/CUDAStream.h>
#include <cstring>
#include <optional>
#include <string>

// From ATen/cuda/CUDAContextLight.h, whose other includes need more of CUDA than the
// runtime's headers (cuSPARSE, CCCL).
namespace at::cuda {
cudaDeviceProp* getDeviceProperties(c10::DeviceIndex device);
}

namespace {

struct StepGraph {
  c10::DeviceIndex device;
  c10::cuda::CUDAStream side;
  std::optional<c10::cuda::CUDAStream> before;  // the current stream while on the side one
  at::cuda::CUDAGraph graph;
  bool autocast_cache = true;
  bool captured = false;

  explicit StepGraph(c10::DeviceIndex d) : device(d), side(c10::cuda::getStreamFromPool(false, d)) {}

  // Work issued from here on runs on the side stream, after everything issued before.
  void enter_side() {
    TORCH_CHECK(!before.has_value(), "CUDA graph: already on the side stream");
    c10::cuda::device_synchronize();
    before = c10::cuda::getCurrentCUDAStream(device);
    c10::cuda::setCurrentCUDAStream(side);
  }

  // Back on the stream before, after everything issued on the side stream.
  void leave_side() {
    if (!before.has_value()) return;
    c10::cuda::device_synchronize();
    c10::cuda::setCurrentCUDAStream(*before);
    before.reset();
  }
};

}  // namespace

extern "C" {

int chargpt_cuda_graphs_built() { return 1; }

// A new graph for CUDA device `device`, or null on a libtorch error.
void* chargpt_graph_new(int64_t device) {
  return chargpt::guarded<void*>(nullptr, [&] { return (void*)new StepGraph((c10::DeviceIndex)device); });
}

void chargpt_graph_free(void* g) {
  auto* graph = static_cast<StepGraph*>(g);
  chargpt::guarded(0, [&] {
    graph->leave_side();
    return 0;
  });
  delete graph;
}

// Warm-up: the ops issued between warmup_begin and warmup_end run on the graph's stream.
int chargpt_graph_warmup_begin(void* g) {
  return chargpt::guarded(-1, [&] {
    static_cast<StepGraph*>(g)->enter_side();
    return 0;
  });
}

int chargpt_graph_warmup_end(void* g) {
  return chargpt::guarded(-1, [&] {
    static_cast<StepGraph*>(g)->leave_side();
    return 0;
  });
}

// Capture: the ops issued between capture_begin and capture_end are recorded, not run.
int chargpt_graph_capture_begin(void* g) {
  return chargpt::guarded(-1, [&] {
    auto* s = static_cast<StepGraph*>(g);
    TORCH_CHECK(!s->captured, "CUDA graph: captured already");
    s->enter_side();
    c10::cuda::CUDACachingAllocator::emptyCache();
    s->autocast_cache = at::autocast::is_autocast_cache_enabled();
    at::autocast::set_autocast_cache_enabled(false);
    try {
      s->graph.capture_begin();
    } catch (...) {
      at::autocast::set_autocast_cache_enabled(s->autocast_cache);
      s->leave_side();
      throw;
    }
    return 0;
  });
}

// Ends the capture. Called after a failed capture too, to leave the stream usable; then
// returns -1 with the reason.
int chargpt_graph_capture_end(void* g) {
  return chargpt::guarded(-1, [&] {
    auto* s = static_cast<StepGraph*>(g);
    at::autocast::set_autocast_cache_enabled(s->autocast_cache);
    try {
      s->graph.capture_end();
    } catch (...) {
      s->leave_side();
      throw;
    }
    s->leave_side();
    s->captured = true;
    return 0;
  });
}

// CUDA device `device` as libtorch sees it, one line "name|memory bytes|compute capability|
// CUDA runtime|cuDNN" into buf (truncated to len bytes, terminated). Returns 0, or -1.
int chargpt_cuda_device_info(int64_t device, char* buf, int64_t len) {
  return chargpt::guarded(-1, [&] {
    const cudaDeviceProp* p = at::cuda::getDeviceProperties((c10::DeviceIndex)device);
    const auto& hooks = at::detail::getCUDAHooks();
    const long runtime = hooks.versionCUDART(), cudnn = hooks.hasCuDNN() ? hooks.versionCuDNN() : 0;
    const std::string line = std::string(p->name) + "|" + std::to_string((int64_t)p->totalGlobalMem) + "|" +
                             std::to_string(p->major) + "." + std::to_string(p->minor) + "|" +
                             std::to_string(runtime / 1000) + "." + std::to_string(runtime % 1000 / 10) + "|" +
                             std::to_string(cudnn);
    TORCH_CHECK(len > 0, "no room for the device description");
    const int64_t k = std::min<int64_t>(len - 1, (int64_t)line.size());
    std::memcpy(buf, line.data(), k);
    buf[k] = 0;
    return 0;
  });
}

// The most memory libtorch's allocator has held for tensors on CUDA device `device` since
// the last reset (reset=1 also starts a new count). Returns -1 on a libtorch error.
int64_t chargpt_cuda_peak_bytes(int64_t device, int reset) {
  return chargpt::guarded<int64_t>(-1, [&] {
    const auto d = (c10::DeviceIndex)device;
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(d);
    const int64_t peak = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
    if (reset) c10::cuda::CUDACachingAllocator::resetPeakStats(d);
    return peak;
  });
}

// One replay of the captured step, on the current stream.
int chargpt_graph_replay(void* g) {
  return chargpt::guarded(-1, [&] {
    auto* s = static_cast<StepGraph*>(g);
    TORCH_CHECK(s->captured, "CUDA graph: nothing captured");
    s->graph.replay();
    return 0;
  });
}
}

#else

extern "C" {

int chargpt_cuda_graphs_built() { return 0; }

void* chargpt_graph_new(int64_t) {
  chargpt::set_last_error("this chargpt was built against a libtorch without CUDA's headers: no CUDA graphs");
  return nullptr;
}

void chargpt_graph_free(void*) {}

int chargpt_graph_warmup_begin(void*) { return -1; }
int chargpt_graph_warmup_end(void*) { return -1; }
int chargpt_graph_capture_begin(void*) { return -1; }
int chargpt_graph_capture_end(void*) { return -1; }
int chargpt_graph_replay(void*) { return -1; }

int chargpt_cuda_device_info(int64_t, char*, int64_t) {
  chargpt::set_last_error("this chargpt was built without CUDA's headers: the GPU is not described");
  return -1;
}

int64_t chargpt_cuda_peak_bytes(int64_t, int) {
  chargpt::set_last_error("this chargpt was built without CUDA's headers: no CUDA memory statistics");
  return -1;
}
}

#endif
