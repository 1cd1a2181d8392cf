// The blog's LayerNorm (unbiased std, eps added to the std) as one CPU pass forward and
// one pass backward, for the fast path. Written out with libtorch's tensor ops it takes
// about ten kernels forward and twenty backward, each a full trip through memory; here a
// row of x is read once per direction. An autograd Function, so libtorch's engine calls
// the hand-written backward.
//
// With c = x - mean, s = std(x) (unbiased), r = 1 / (s + eps), xhat = c * r:
//   y      = gamma * xhat + beta
//   dxhat  = dy * gamma
//   dx     = r * (dxhat - mean(dxhat)) - r^2 * sum(dxhat * c) / ((D - 1) * s) * c
//   dgamma = sum over rows of dy * xhat,  dbeta = sum over rows of dy
// (the s term is 0 where s = 0, as torch's std backward masks it).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <cmath>
#include <string>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows per chunk of the backward's gamma/beta partial sums: a fixed split, so the sums
// do not depend on the number of threads.
constexpr int64_t kRowsPerChunk = 64;

struct BlogLayerNorm : public torch::autograd::Function<BlogLayerNorm> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& gamma,
                            const at::Tensor& beta, double eps) {
    const int64_t d = input.size(-1);
    at::Tensor x = input.contiguous().view({-1, d});
    const int64_t n = x.size(0);
    at::Tensor y = at::empty_like(x);
    at::Tensor stats = at::empty({n, 3}, x.options());  // mean, std, 1 / (std + eps)
    const float* xp = x.data_ptr<float>();
    const float* gp = gamma.contiguous().data_ptr<float>();
    const float* bp = beta.contiguous().data_ptr<float>();
    float* yp = y.data_ptr<float>();
    float* sp = stats.data_ptr<float>();
    at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
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
        const float r = 1.f / (std + (float)eps);
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) yr[j] = gp[j] * ((xr[j] - mean) * r) + bp[j];
        sp[3 * i] = mean;
        sp[3 * i + 1] = std;
        sp[3 * i + 2] = r;
      }
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
        float* dgamma = pg + c * d;
        float* dbeta = pb + c * d;
        const int64_t row_end = std::min(n, (c + 1) * kRowsPerChunk);
        for (int64_t i = c * kRowsPerChunk; i < row_end; ++i) {
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
    });
    at::Tensor sums = partial.sum(1);
    return {dx.view(grads[0].sizes()), sums[0], sums[1], at::Tensor()};
  }
};

thread_local std::string last_error;

}  // namespace

extern "C" {

// y = the blog's LayerNorm of x (float32, CPU, last dim normalised). Returns a new
// tensor, or null on a libtorch error (then chargpt_last_error says why).
at::Tensor* chargpt_blog_layer_norm(const at::Tensor* x, const at::Tensor* gamma, const at::Tensor* beta,
                                    double eps) {
  try {
    return new at::Tensor(BlogLayerNorm::apply(*x, *gamma, *beta, eps));
  } catch (const std::exception& e) {
    last_error = e.what();
    return nullptr;
  }
}

const char* chargpt_last_error() { return last_error.c_str(); }
}
