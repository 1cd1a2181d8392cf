// What a step costs on a GPU, counted on any machine: libtorch's RecordFunction calls a
// callback at the entry and exit of every ATen op the dispatcher runs on the thread that
// counts (and on the autograd engine's threads, which inherit its thread-local state), so
// that other threads' work is not counted. Counting sessions must not overlap (the Rust
// side holds a lock). From them:
//
// - ops: the ops chargpt and the autograd engine's nodes dispatch (not those an op calls
//   in its own code);
// - launches: those of them that launch a kernel on a GPU: not a view or metadata op (or a
//   composite that resolves to views, as `reshape` often does), and running a kernel itself
//   or through what it calls. Each counts once, as on CUDA, whatever its CPU code calls
//   (an `addmm` that copies its bias first, a fused optimiser that loops over tensors);
// - host syncs: where the host waits for the device: a value chargpt reads (`item`, behind
//   it `_local_scalar_dense`), a blocking copy between host and device memory, and ops
//   whose output size depends on device data (`nonzero`).
//
// On the CPU the counts are those of the code that CUDA runs, op for op, except where
// libtorch picks another kernel by device: its CPU attention with dropout is a composite
// of several ops each way, where CUDA runs one fused kernel.
// libtorch is built with NDEBUG, so its RecordFunction never marks inputs valid; without
// NDEBUG here too, the header's debug-only check would refuse every inputs() call.
#ifndef NDEBUG
#define NDEBUG
#endif
#include <ATen/record_function.h>
#include <ATen/core/ivalue.h>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "shim.h"

namespace {

std::atomic<int64_t> g_ops{0}, g_launches{0}, g_syncs{0};
std::mutex g_names_mutex;
std::map<std::string, int64_t> g_launches_by_name;  // the launching ops by name
at::CallbackHandle g_handle = 0;

struct Frame {
  bool top;        // called by chargpt or by an autograd node, not by another op
  bool view;       // a view or metadata op (or a composite): no kernel of its own
  bool does_work;  // it, or an op it calls, runs a kernel
  const char* name;
};
thread_local std::vector<Frame> t_stack;

bool starts_with(const char* s, const char* prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

bool named(const char* name, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (std::strcmp(name, n) == 0) return true;
  }
  return false;
}

// No kernel: new views of the same memory, allocation without initialisation, metadata.
bool is_view(const char* name) {
  return named(name, {"aten::view", "aten::_unsafe_view", "aten::_reshape_alias", "aten::as_strided", "aten::transpose",
                      "aten::t", "aten::permute", "aten::select", "aten::narrow", "aten::slice", "aten::unsqueeze",
                      "aten::squeeze", "aten::expand", "aten::expand_as", "aten::view_as", "aten::alias", "aten::detach",
                      "aten::detach_", "aten::unbind", "aten::split", "aten::split_with_sizes", "aten::chunk",
                      "aten::unflatten", "aten::flatten", "aten::reshape", "aten::empty", "aten::empty_like",
                      "aten::empty_strided", "aten::resize_", "aten::set_", "aten::lift_fresh", "aten::requires_grad_",
                      "aten::_has_compatible_shallow_copy_type", "aten::is_same_size", "aten::result_type",
                      "aten::contiguous", "aten::to", "aten::dropout", "aten::clone", "aten::_to_copy_", "aten::numpy_T", "aten::movedim",
                      "aten::diagonal", "aten::squeeze_", "aten::unsqueeze_", "aten::transpose_", "aten::t_",
                      "aten::_nested_tensor_from_mask_left_aligned", "aten::output_nr", "aten::_version"});
}

bool on_device(const c10::IValue& v) { return v.isTensor() && !v.toTensor().device().is_cpu(); }

// Whether this op makes the host wait for the device.
bool syncs(const at::RecordFunction& fn, const char* name) {
  // A value read that chargpt asks for (`item`), not one inside a CPU kernel's own code
  // (the CPU's fused AdamW reads each step count).
  if (named(name, {"aten::_local_scalar_dense"})) {
    return t_stack.size() == 1 || (t_stack.size() == 2 && t_stack.front().top && named(t_stack.front().name, {"aten::item"}));
  }
  auto inputs = fn.inputs();
  if (named(name, {"aten::nonzero", "aten::masked_select", "aten::unique_consecutive", "aten::_unique2"})) {
    return !inputs.empty() && on_device(inputs[0]);
  }
  if (named(name, {"aten::copy_"}) && inputs.size() >= 3) {
    // copy_(self, src, non_blocking): between host and device, and blocking.
    const bool crosses = inputs[0].isTensor() && inputs[1].isTensor() &&
                         inputs[0].toTensor().device().is_cpu() != inputs[1].toTensor().device().is_cpu();
    const bool blocking = !(inputs[2].isBool() && inputs[2].toBool());
    return crosses && blocking;
  }
  return false;
}

// A record that is not an ATen op: the autograd engine's around a node's backward (its ops
// are the node's), or libtorch's own scopes ("detach" around AccumulateGrad's detach).
bool is_autograd_node(const char* name) { return !starts_with(name, "aten::"); }

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction& fn) {
  const char* name = fn.name();
  const bool top = t_stack.empty() || is_autograd_node(t_stack.back().name);
  t_stack.push_back(Frame{top, is_view(name) || is_autograd_node(name), false, name});
  if (top && !is_autograd_node(name)) {
    g_ops.fetch_add(1, std::memory_order_relaxed);
  }
  if (syncs(fn, name)) g_syncs.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

void on_exit(const at::RecordFunction& fn, at::ObserverContext*) {
  if (t_stack.empty()) return;  // entered before counting began
  Frame f = t_stack.back();
  t_stack.pop_back();
  // A leaf that is not a view runs a kernel; a composite runs what it calls.
  if (!f.view) f.does_work = true;
  if (!t_stack.empty() && f.does_work) t_stack.back().does_work = true;
  if (f.top && f.does_work && !is_autograd_node(f.name)) {
    g_launches.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(g_names_mutex);
    g_launches_by_name[f.name] += 1;
  }
}

}  // namespace

extern "C" {

// Starts counting this thread's ops from zero (replacing a count in progress). Returns 0, or -1 on a libtorch
// error (chargpt_last_error says why).
int chargpt_counter_start() {
  return chargpt::guarded(-1, [&] {
    if (g_handle != 0) at::removeCallback(g_handle);
    g_ops = 0;
    g_launches = 0;
    g_syncs = 0;
    {
      std::lock_guard<std::mutex> lock(g_names_mutex);
      g_launches_by_name.clear();
    }
    g_handle = at::addThreadLocalCallback(
        at::RecordFunctionCallback(on_enter, on_exit).scopes({at::RecordScope::FUNCTION}).needsInputs(true));
    return 0;
  });
}

// Stops counting and writes ops, launches and host syncs to out[0..3]. Returns 0, or -1.
int chargpt_counter_stop(int64_t* out) {
  return chargpt::guarded(-1, [&] {
    if (g_handle != 0) at::removeCallback(g_handle);
    g_handle = 0;
    out[0] = g_ops;
    out[1] = g_launches;
    out[2] = g_syncs;
    return 0;
  });
}

// The launching ops of the last count by name, one "count name" per line, most first,
// into buf (truncated to len bytes, always terminated). Returns the bytes needed.
int64_t chargpt_counter_launches_by_name(char* buf, int64_t len) {
  std::vector<std::pair<int64_t, std::string>> rows;
  {
    std::lock_guard<std::mutex> lock(g_names_mutex);
    for (const auto& [name, n] : g_launches_by_name) rows.emplace_back(n, name);
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
  std::string text;
  for (const auto& [n, name] : rows) text += std::to_string(n) + " " + name + "\n";
  if (len > 0) {
    const int64_t k = std::min<int64_t>(len - 1, (int64_t)text.size());
    std::memcpy(buf, text.data(), k);
    buf[k] = 0;
  }
  return (int64_t)text.size() + 1;
}
}
