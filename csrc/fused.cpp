// Hand-written CPU kernels for the fast path, each an autograd Function so that
// libtorch's engine calls the hand-written backward.
//
// 1. The blog's LayerNorm (unbiased std, eps added to the std) as one CPU pass forward and
// one pass backward. Written out with libtorch's tensor ops it takes
// about ten kernels forward and twenty backward, each a full trip through memory; here a
// row of x is read once per direction.
//
// With c = x - mean, s = std(x) (unbiased), r = 1 / (s + eps), xhat = c * r:
//   y      = gamma * xhat + beta
//   dxhat  = dy * gamma
//   dx     = r * (dxhat - mean(dxhat)) - r^2 * sum(dxhat * c) / ((D - 1) * s) * c
//   dgamma = sum over rows of dy * xhat,  dbeta = sum over rows of dy
// (the s term is 0 where s = 0, as torch's std backward masks it).
//
// 2. Dropout in one parallel pass: `x * keep / (1 - p)`, where `keep` comes from a
// counter-based generator (SplitMix64 of the element's index and a per-call seed) instead
// of libtorch's sequential Mersenne Twister, which fills a uniform tensor on one thread
// and then needs a compare and two multiplies. The seed is drawn from libtorch's default
// CPU generator, so `manual_seed` fixes the masks and a saved generator state resumes
// them; the backward regenerates the mask from the seed instead of storing it.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <cmath>
#include <cstring>
#include <string>

#include "shim.h"

// The element-wise loops get clones for AVX2 and AVX-512, picked at load time by the CPU
// (GCC's target_clones); the baseline build targets plain x86-64 (SSE2), which leaves
// most of a modern core's vector width unused.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows per chunk of the backward's gamma/beta partial sums: a fixed split, so the sums
// do not depend on the number of threads.
constexpr int64_t kRowsPerChunk = 64;

// Rows [begin, end) of the LayerNorm's forward: y, and per row mean, std and 1 / (std + eps).
VECTOR_CLONES
void layer_norm_rows(const float* xp, const float* gp, const float* bp, float* yp, float* sp, int64_t d,
                     float eps, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float* xr = xp + i * d;
    float* yr = yp + i * d;
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < d; ++j) sum += xr[j];
    const float mean = sum / d;
    float sq = 0.f;
#pragma omp simd reduction(+ : sq)
    for (int64_t j = 0; j < d; ++j) sq += (xr[j] - mean) * (xr[j] - mean);
    const float std = std::sqrt(sq / (d - 1));
    const float r = 1.f / (std + eps);
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) yr[j] = gp[j] * ((xr[j] - mean) * r) + bp[j];
    sp[3 * i] = mean;
    sp[3 * i + 1] = std;
    sp[3 * i + 2] = r;
  }
}

// Rows [begin, end) of the LayerNorm's backward: dx, and the rows' dgamma and dbeta added
// to the chunk's partial sums.
VECTOR_CLONES
void layer_norm_backward_rows(const float* xp, const float* gp, const float* sp, const float* dyp, float* dxp,
                              float* dgamma, float* dbeta, int64_t d, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float* xr = xp + i * d;
    const float* g = dyp + i * d;
    float* out = dxp + i * d;
    const float mean = sp[3 * i], std = sp[3 * i + 1], r = sp[3 * i + 2];
    float a = 0.f, b = 0.f;
#pragma omp simd reduction(+ : a, b)
    for (int64_t j = 0; j < d; ++j) {
      const float dxhat = g[j] * gp[j];
      a += dxhat;
      b += dxhat * (xr[j] - mean);
    }
    const float mean_dxhat = a / d;
    const float coef = std > 0.f ? r * r * b / ((d - 1) * std) : 0.f;
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) {
      const float centered = xr[j] - mean;
      out[j] = r * (g[j] * gp[j] - mean_dxhat) - coef * centered;
      dgamma[j] += g[j] * centered * r;
      dbeta[j] += g[j];
    }
  }
}

struct BlogLayerNorm : public torch::autograd::Function<BlogLayerNorm> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& gamma,
                            const at::Tensor& beta, double eps) {
    const int64_t d = input.size(-1);
    at::Tensor x = input.contiguous().view({-1, d});
    const int64_t n = x.size(0);
    at::Tensor y = at::empty_like(x);
    at::Tensor stats = at::empty({n, 3}, x.options());  // mean, std, 1 / (std + eps)
    const float* xp = x.data_ptr<float>();
    const at::Tensor g = gamma.contiguous(), b = beta.contiguous();
    const float* gp = g.data_ptr<float>();
    const float* bp = b.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    float* sp = stats.data_ptr<float>();
    at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
      layer_norm_rows(xp, gp, bp, yp, sp, d, (float)eps, begin, end);
    });
    ctx->save_for_backward({x, gamma, stats});
    return y.view(input.sizes());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor gamma = saved[1].contiguous();
    const at::Tensor& stats = saved[2];
    const int64_t n = x.size(0), d = x.size(1);
    at::Tensor dy = grads[0].contiguous().view({n, d});
    at::Tensor dx = at::empty_like(x);
    const int64_t chunks = (n + kRowsPerChunk - 1) / kRowsPerChunk;
    at::Tensor partial = at::zeros({2, chunks, d}, x.options());  // dgamma, dbeta per chunk
    const float* xp = x.data_ptr<float>();
    const float* gp = gamma.data_ptr<float>();
    const float* sp = stats.data_ptr<float>();
    const float* dyp = dy.data_ptr<float>();
    float* dxp = dx.data_ptr<float>();
    float* pg = partial.data_ptr<float>();
    float* pb = pg + chunks * d;
    at::parallel_for(0, chunks, 1, [&](int64_t cbegin, int64_t cend) {
      for (int64_t c = cbegin; c < cend; ++c) {
        layer_norm_backward_rows(xp, gp, sp, dyp, dxp, pg + c * d, pb + c * d, d, c * kRowsPerChunk,
                                 std::min(n, (c + 1) * kRowsPerChunk));
      }
    });
    at::Tensor sums = partial.sum(1);
    return {dx.view(grads[0].sizes()), sums[0], sums[1], at::Tensor()};
  }
};

// SplitMix64's output function: a bijective mix of a 64-bit counter.
#pragma omp declare simd
inline uint64_t splitmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// `value` where `diff` (32-bit draw minus threshold, as 64 bits) is negative, i.e. the
// element is kept, else 0: the sign bit becomes an all-ones or all-zeros mask, with no
// branch (a branch would mispredict on a p share of the elements).
#pragma omp declare simd
inline float masked(float value, uint64_t diff) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  bits &= (uint32_t)((int64_t)diff >> 63);
  std::memcpy(&value, &bits, 4);
  return value;
}

// Pairs [begin, end) of the mask below, as one function so that it can have vector clones.
VECTOR_CLONES
void dropout_pairs(const float* ip, float* op, int64_t begin, int64_t end, uint64_t seed, uint64_t threshold,
                   float scale) {
#pragma omp simd
  for (int64_t pair = begin; pair < end; ++pair) {
    const uint64_t bits = splitmix64(seed + (uint64_t)(pair + 1) * 0x9e3779b97f4a7c15ULL);
    op[2 * pair] = masked(ip[2 * pair] * scale, (bits & 0xffffffffULL) - threshold);
    op[2 * pair + 1] = masked(ip[2 * pair + 1] * scale, (bits >> 32) - threshold);
  }
}

// out[i] = in[i] * scale where element i is kept, else 0. Each 64-bit draw decides two
// elements (its low and high 32 bits against keep * 2^32), so a mask depends only on the
// seed and the element's index, not on how the work is split between threads.
void apply_dropout_mask(const at::Tensor& in, at::Tensor& out, uint64_t seed, double p) {
  const int64_t n = in.numel();
  const uint64_t threshold = (uint64_t)std::ldexp(1.0 - p, 32);  // keep iff bits < threshold
  const float scale = (float)(1.0 / (1.0 - p));
  const float* ip = in.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, n / 2, 4096, [&](int64_t begin, int64_t end) {
    dropout_pairs(ip, op, begin, end, seed, threshold, scale);
  });
  if (n % 2 == 1) {  // the last element: the low half of its pair's draw
    const uint64_t bits = splitmix64(seed + (uint64_t)(n / 2 + 1) * 0x9e3779b97f4a7c15ULL);
    op[n - 1] = masked(ip[n - 1] * scale, (bits & 0xffffffffULL) - threshold);
  }
}

struct FastDropout : public torch::autograd::Function<FastDropout> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, double p) {
    uint64_t seed;
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      seed = at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
    }
    at::Tensor x = input.contiguous();
    at::Tensor y = at::empty_like(x);
    apply_dropout_mask(x, y, seed, p);
    ctx->saved_data["seed"] = (int64_t)seed;
    ctx->saved_data["p"] = p;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    at::Tensor g = grads[0].contiguous();
    at::Tensor dx = at::empty_like(g);
    apply_dropout_mask(g, dx, (uint64_t)ctx->saved_data["seed"].toInt(), ctx->saved_data["p"].toDouble());
    return {dx, at::Tensor()};
  }
};

// The kernels read raw fp32 memory: refuse anything else before touching it.
void check_cpu_float(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.defined(), what, " is undefined");
  TORCH_CHECK(t.device().is_cpu(), what, " must be on the CPU, got ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, what, " must be float32, got ", t.scalar_type());
}

}  // namespace

extern "C" {

// y = the blog's LayerNorm of x (float32, CPU, last dim normalised). Returns a new
// tensor, or null on a libtorch error (then chargpt_last_error says why).
at::Tensor* chargpt_blog_layer_norm(const at::Tensor* x, const at::Tensor* gamma, const at::Tensor* beta,
                                    double eps) {
  return chargpt::guarded<at::Tensor*>(nullptr, [&] {
    check_cpu_float(*x, "LayerNorm input");
    check_cpu_float(*gamma, "LayerNorm gamma");
    check_cpu_float(*beta, "LayerNorm beta");
    TORCH_CHECK(x->dim() >= 1 && x->size(-1) >= 2, "LayerNorm input needs a last dim of at least 2, got ", x->sizes());
    const int64_t d = x->size(-1);
    TORCH_CHECK(gamma->numel() == d && beta->numel() == d, "LayerNorm gamma/beta have ", gamma->numel(), "/",
                beta->numel(), " elements, the input's last dim is ", d);
    TORCH_CHECK(eps >= 0, "LayerNorm eps must be non-negative, got ", eps);
    return new at::Tensor(BlogLayerNorm::apply(*x, *gamma, *beta, eps));
  });
}

// Dropout with probability p (0 <= p < 1) of x (float32, CPU) in training mode. Returns
// a new tensor, or null on a libtorch error.
at::Tensor* chargpt_fast_dropout(const at::Tensor* x, double p) {
  return chargpt::guarded<at::Tensor*>(nullptr, [&] {
    check_cpu_float(*x, "dropout input");
    TORCH_CHECK(p >= 0 && p < 1, "dropout probability must be in [0, 1), got ", p);
    return new at::Tensor(FastDropout::apply(*x, p));
  });
}
}
