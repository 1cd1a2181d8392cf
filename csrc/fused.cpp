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
//
// 3. Causal self-attention of every head at once, on the fused QKV matmul's output as it
// lies ([B, T, 3, H, head_size]): each (sequence, head)'s products are BLAS calls on
// strided rows of that tensor, and its output and gradients are written straight into
// [B, T, H * head_size] and [B, T, 3, H, head_size], so none of the permute, stack and
// transpose copies that libtorch's batched matmuls need happen. The softmax and its
// backward are libtorch's (vectorised) kernels, the dropout the one above. With S the
// scaled scores, P = softmax(S + causal mask), Pd = dropout(P), Y = Pd V:
//   dV = Pd^T dY,  dPd = dY V^T,  dP = dropout mask of dPd,  dS = P * (dP - rowsum(dP * P)),
//   dQ = scale * dS K,  dK = scale * dS^T Q.
//
// 4. The feed-forward layer, relu(x W1^T + b1) [W2^T + b2] [then dropout], as one
// autograd node: its matmuls are libtorch's (no bias, so no bias copy into each output),
// the bias, ReLU and dropout are applied in place in one pass each, and the backward masks
// its gradient in place and sums the bias gradients in the same pass, over a fixed split
// of rows (so they do not depend on the thread count). With h = relu(x W1^T + b1):
//   dy' = dropout mask of dy,  db2 = colsum(dy'),  dW2 = dy'^T h,  dh = (dy' W2) * (h > 0),
//   db1 = colsum(dh),  dW1 = dh^T x,  dx = dh W1.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "shim.h"

// The element-wise loops get clones for AVX2 and AVX-512, picked at load time by the CPU
// (GCC's target_clones); the baseline build targets plain x86-64 (SSE2), which leaves
// most of a modern core's vector width unused.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

// The BLAS libtorch's CPU matmuls run (MKL's sgemm in the PyTorch wheels), called
// directly: a libtorch op per small product would cost more in dispatch than the product.
// Weak, so that a libtorch without it still links; then the fast path keeps its batched
// matmuls (chargpt_causal_attention_available says which).
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc) __attribute__((weak));

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

// A dropout call's seed: one draw from libtorch's default CPU generator.
uint64_t draw_seed() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
}

struct FastDropout : public torch::autograd::Function<FastDropout> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, double p) {
    const uint64_t seed = draw_seed();
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

// Row-major C[m, n] = alpha * op(A) op(B) + beta * C, where op transposes an operand
// stored the other way round (A as [k, m], B as [n, k]) and ld* are row strides. A
// column-major BLAS sees a row-major matrix as its transpose, so it computes C^T = op(B)^T op(A)^T.
void gemm(bool a_transposed, bool b_transposed, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc) {
  const char ta = b_transposed ? 'T' : 'N', tb = a_transposed ? 'T' : 'N';
  sgemm_(&ta, &tb, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}

// Where one (sequence, head)'s rows of queries, keys and values start in the QKV output
// [B, T, 3, H, hs], whose rows (one per position) are 3 * H * hs long.
struct HeadRows {
  int64_t t, h, hs, row;  // positions, heads, head width, row stride
  int64_t first(int64_t bh, int which) const { return (bh / h) * t * row + which * h * hs + (bh % h) * hs; }
  // Its output rows in [B, T, H * hs].
  int64_t out(int64_t bh) const { return (bh / h) * t * h * hs + (bh % h) * hs; }
};

constexpr int kQuery = 0, kKey = 1, kValue = 2;

struct CausalAttention : public torch::autograd::Function<CausalAttention> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, int64_t heads, double scale, double p) {
    const at::Tensor qkv = input.contiguous();
    const int64_t b = qkv.size(0), t = qkv.size(1), hs = qkv.size(2) / (3 * heads);
    const HeadRows rows{t, heads, hs, 3 * heads * hs};
    at::Tensor scores = at::empty({b, heads, t, t}, qkv.options());
    at::Tensor y = at::empty({b, t, heads * hs}, qkv.options());
    const float* in = qkv.data_ptr<float>();
    float* sp = scores.data_ptr<float>();
    const int ti = (int)t, hi = (int)hs, row = (int)rows.row;
    // S = scale * Q K^T, then -inf above the diagonal (a position sees itself and the past).
    at::parallel_for(0, b * heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        float* s = sp + bh * t * t;
        gemm(false, true, ti, ti, hi, (float)scale, in + rows.first(bh, kQuery), row, in + rows.first(bh, kKey), row, 0.f,
             s, ti);
        for (int64_t i = 0; i < t; ++i)
          for (int64_t j = i + 1; j < t; ++j) s[i * t + j] = -INFINITY;
      }
    });
    at::Tensor probs = at::_softmax(scores, -1, false);
    uint64_t seed = 0;
    at::Tensor kept = probs;
    if (p > 0) {
      seed = draw_seed();
      kept = at::empty_like(probs);
      apply_dropout_mask(probs, kept, seed, p);
    }
    // Y = Pd V, written into the head's columns of [B, T, H * hs].
    const float* kp = kept.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, b * heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        gemm(false, false, ti, hi, ti, 1.f, kp + bh * t * t, ti, in + rows.first(bh, kValue), row, 0.f, yp + rows.out(bh),
             (int)(heads * hs));
      }
    });
    ctx->save_for_backward({qkv, probs, kept});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["seed"] = (int64_t)seed;
    ctx->saved_data["p"] = p;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &qkv = saved[0], &probs = saved[1], &kept = saved[2];
    const int64_t heads = ctx->saved_data["heads"].toInt();
    const float scale = (float)ctx->saved_data["scale"].toDouble();
    const double p = ctx->saved_data["p"].toDouble();
    const int64_t b = qkv.size(0), t = qkv.size(1), hs = qkv.size(2) / (3 * heads);
    const HeadRows rows{t, heads, hs, 3 * heads * hs};
    const at::Tensor dy = grads[0].contiguous();
    at::Tensor dqkv = at::empty_like(qkv);
    at::Tensor dkept = at::empty_like(probs);
    const float* in = qkv.data_ptr<float>();
    const float* dyp = dy.data_ptr<float>();
    const float* kp = kept.data_ptr<float>();
    float* dp = dqkv.data_ptr<float>();
    float* dkp = dkept.data_ptr<float>();
    const int ti = (int)t, hi = (int)hs, row = (int)rows.row, width = (int)(heads * hs);
    // dV = Pd^T dY and dPd = dY V^T.
    at::parallel_for(0, b * heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const float* g = dyp + rows.out(bh);
        gemm(true, false, ti, hi, ti, 1.f, kp + bh * t * t, ti, g, width, 0.f, dp + rows.first(bh, kValue), row);
        gemm(false, true, ti, ti, hi, 1.f, g, width, in + rows.first(bh, kValue), row, 0.f, dkp + bh * t * t, ti);
      }
    });
    at::Tensor dprobs = dkept;
    if (p > 0) {  // the same mask and scale as the forward's
      dprobs = at::empty_like(dkept);
      apply_dropout_mask(dkept, dprobs, (uint64_t)ctx->saved_data["seed"].toInt(), p);
    }
    const at::Tensor dscores = at::_softmax_backward_data(dprobs, probs, -1, at::kFloat);
    const float* dsp = dscores.data_ptr<float>();
    // dQ = scale * dS K and dK = scale * dS^T Q (dS is 0 above the diagonal, as P is).
    at::parallel_for(0, b * heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const float* ds = dsp + bh * t * t;
        gemm(false, false, ti, hi, ti, scale, ds, ti, in + rows.first(bh, kKey), row, 0.f, dp + rows.first(bh, kQuery), row);
        gemm(true, false, ti, hi, ti, scale, ds, ti, in + rows.first(bh, kQuery), row, 0.f, dp + rows.first(bh, kKey), row);
      }
    });
    return {dqkv, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Rows [begin, end) of y [n, d]: y = y + b, then max(y, 0) where `relu`.
VECTOR_CLONES
void add_bias_rows(float* yp, const float* bp, int64_t d, bool relu, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    float* yr = yp + i * d;
    if (relu) {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) yr[j] = std::max(yr[j] + bp[j], 0.f);
    } else {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) yr[j] += bp[j];
    }
  }
}

// y [n, d] += b in place, then ReLU where `relu`, in parallel over rows.
void add_bias(at::Tensor& y, const at::Tensor& b, bool relu) {
  const int64_t n = y.size(0), d = y.size(1);
  float* yp = y.data_ptr<float>();
  const float* bp = b.data_ptr<float>();
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) { add_bias_rows(yp, bp, d, relu, begin, end); });
}

// Rows [begin, end) of g [n, d]: g = 0 where h <= 0 (ReLU's backward, when h is given),
// and the rows added to `sums`.
VECTOR_CLONES
void mask_and_sum_rows(float* gp, const float* hp, float* sums, int64_t d, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    float* gr = gp + i * d;
    if (hp != nullptr) {
      const float* hr = hp + i * d;
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) gr[j] = hr[j] > 0.f ? gr[j] : 0.f;
    }
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) sums[j] += gr[j];
  }
}

// The column sums of g [n, d] (a bias's gradient), with g first zeroed in place where
// h <= 0 if h is defined, over chunks of kRowsPerChunk rows whatever the thread count.
at::Tensor mask_and_sum(at::Tensor& g, const at::Tensor& h) {
  const int64_t n = g.size(0), d = g.size(1);
  const int64_t chunks = (n + kRowsPerChunk - 1) / kRowsPerChunk;
  at::Tensor partial = at::zeros({chunks, d}, g.options());
  float* gp = g.data_ptr<float>();
  const float* hp = h.defined() ? h.data_ptr<float>() : nullptr;
  float* pp = partial.data_ptr<float>();
  at::parallel_for(0, chunks, 1, [&](int64_t cbegin, int64_t cend) {
    for (int64_t c = cbegin; c < cend; ++c)
      mask_and_sum_rows(gp, hp, pp + c * d, d, c * kRowsPerChunk, std::min(n, (c + 1) * kRowsPerChunk));
  });
  return partial.sum(0);
}

struct FeedForward : public torch::autograd::Function<FeedForward> {
  // No w2 and b2: FF1, relu(x W1^T + b1) (then p is 0). (Optional, not undefined: the
  // autograd Function takes an undefined tensor for an input.)
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& w1, const at::Tensor& b1,
                            const std::optional<at::Tensor>& w2_given, const std::optional<at::Tensor>& b2, double p) {
    const at::Tensor w2 = w2_given.value_or(at::Tensor());
    const at::Tensor x = input.contiguous().view({-1, input.size(-1)});
    at::Tensor h = at::mm(x, w1.t());
    add_bias(h, b1.contiguous(), true);
    at::Tensor y = h;
    uint64_t seed = 0;
    if (w2.defined()) {
      y = at::mm(h, w2.t());
      add_bias(y, b2->contiguous(), false);
      if (p > 0) {
        seed = draw_seed();
        apply_dropout_mask(y, y, seed, p);
      }
    }
    ctx->save_for_backward({x, w1, h, w2});
    ctx->saved_data["seed"] = (int64_t)seed;
    ctx->saved_data["p"] = p;
    std::vector<int64_t> sizes = input.sizes().vec();
    sizes.back() = y.size(1);
    return y.view(sizes);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w1 = saved[1], &h = saved[2], &w2 = saved[3];
    const double p = ctx->saved_data["p"].toDouble();
    const at::Tensor dy = grads[0].contiguous().view({x.size(0), -1});
    at::Tensor dw2, db2, dh;
    if (w2.defined()) {
      at::Tensor g = at::empty_like(dy);
      if (p > 0) {
        apply_dropout_mask(dy, g, (uint64_t)ctx->saved_data["seed"].toInt(), p);
      } else {
        g.copy_(dy);
      }
      db2 = mask_and_sum(g, at::Tensor());
      dw2 = at::mm(g.t(), h);
      dh = at::mm(g, w2);
    } else {
      dh = dy.clone();
    }
    const at::Tensor db1 = mask_and_sum(dh, h);
    const at::Tensor dw1 = at::mm(dh.t(), x);
    const at::Tensor dx = at::mm(dh, w1);
    std::vector<int64_t> sizes = grads[0].sizes().vec();
    sizes.back() = x.size(1);
    return {dx.view(sizes), dw1, db1, dw2, db2, at::Tensor()};
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

// The feed-forward layer relu(x W1^T + b1), then `x W2^T + b2` and dropout p (0 <= p < 1)
// when w2 is not null (float32, CPU; W as nn.Linear stores it, [out, in]). Returns a new
// tensor, or null on a libtorch error.
at::Tensor* chargpt_feed_forward(const at::Tensor* x, const at::Tensor* w1, const at::Tensor* b1, const at::Tensor* w2,
                                 const at::Tensor* b2, double p) {
  return chargpt::guarded<at::Tensor*>(nullptr, [&] {
    check_cpu_float(*x, "feed-forward input");
    check_cpu_float(*w1, "feed-forward weight");
    check_cpu_float(*b1, "feed-forward bias");
    TORCH_CHECK(x->dim() >= 2 && w1->dim() == 2 && w1->size(1) == x->size(-1) && b1->numel() == w1->size(0),
                "feed-forward shapes do not fit: input ", x->sizes(), ", weight ", w1->sizes(), ", bias ", b1->sizes());
    std::optional<at::Tensor> second_w, second_b;
    if (w2 != nullptr) {
      check_cpu_float(*w2, "feed-forward second weight");
      check_cpu_float(*b2, "feed-forward second bias");
      TORCH_CHECK(w2->dim() == 2 && w2->size(1) == w1->size(0) && b2->numel() == w2->size(0),
                  "feed-forward second layer does not fit: weight ", w2->sizes(), ", bias ", b2->sizes(), " after ",
                  w1->sizes());
      second_w = *w2;
      second_b = *b2;
    }
    TORCH_CHECK(p >= 0 && p < 1 && (w2 != nullptr || p == 0),
                "dropout probability must be in [0, 1) (and 0 without a second layer), got ", p);
    return new at::Tensor(FeedForward::apply(*x, *w1, *b1, second_w, second_b, p));
  });
}

// Causal attention of `heads` heads over qkv = [B, T, 3 * heads * head_size] (float32,
// CPU; per position every head's query, then every key, then every value), scores scaled
// by `scale`, attention-weight dropout p (0 <= p < 1; 0 for none). Returns [B, T, heads *
// head_size], or null on a libtorch error.
at::Tensor* chargpt_causal_attention(const at::Tensor* qkv, int64_t heads, double scale, double p) {
  return chargpt::guarded<at::Tensor*>(nullptr, [&] {
    TORCH_CHECK(sgemm_ != nullptr, "this libtorch has no sgemm_ for the fused attention");
    check_cpu_float(*qkv, "attention input");
    TORCH_CHECK(qkv->dim() == 3 && heads >= 1 && qkv->size(2) % (3 * heads) == 0 && qkv->size(2) > 0,
                "attention input must be [B, T, 3 * heads * head_size] with ", heads, " heads, got ", qkv->sizes());
    TORCH_CHECK(qkv->size(1) >= 1, "attention input has no positions");
    TORCH_CHECK(p >= 0 && p < 1, "dropout probability must be in [0, 1), got ", p);
    return new at::Tensor(CausalAttention::apply(*qkv, heads, scale, p));
  });
}

// Whether CPU autocast is on on this thread: then the fused feed-forward does not apply
// (its matmuls would autocast to bf16 under kernels that read fp32).
int chargpt_cpu_autocast_enabled() { return at::autocast::is_autocast_enabled(at::kCPU); }

// How many threads the kernels' at::parallel_for loops run on now: libtorch's thread
// count when this file was compiled with OpenMP (build.rs), else 1 (every loop serial).
int chargpt_kernel_threads() {
  std::atomic<uint64_t> seen{0};  // a bit per thread number
  at::parallel_for(0, 4096, 1, [&](int64_t, int64_t) { seen.fetch_or(1ULL << std::min(at::get_thread_num(), 63)); });
  return __builtin_popcountll(seen.load());
}

// Whether chargpt_causal_attention can run: the linked libtorch has the BLAS it calls.
int chargpt_causal_attention_available() { return sgemm_ != nullptr; }
}
