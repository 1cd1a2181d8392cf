// The fast path's GPU form (`Kernels::Gpu`): on a GPU a step costs about one launch per
// op, so what pays there is fewer ops, not fewer passes over memory. Written with
// libtorch's own ops, so it runs (and is counted and tested) on any device.
//
// The blog's LayerNorm (unbiased std, eps added to the std) as one autograd node: six ops
// forward and thirteen backward, where the composite's autograd graph takes about nine
// and twenty-two. With c = x - mean, s = std(x) (unbiased), r = 1 / (s + eps), xhat = c r:
//   y      = gamma * xhat + beta
//   dxhat  = dy * gamma
//   dx     = r * (dxhat - mean(dxhat)) - xhat * sum(dxhat * xhat) / ((D - 1) * s)
//   dgamma = sum over rows of dy * xhat,  dbeta = sum over rows of dy
// (the s term is 0 where s = 0, as torch's std backward masks it: there xhat = 0, and s
// is clamped to the smallest normal float so that 0 / s stays 0).
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <limits>

#include "shim.h"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct BlogLayerNormOps : public torch::autograd::Function<BlogLayerNormOps> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& gamma,
                            const at::Tensor& beta, double eps) {
    auto [std, mean] = at::std_mean(x, {-1}, /*correction=*/1, /*keepdim=*/true);
    at::Tensor r = (std + eps).reciprocal();
    at::Tensor xhat = (x - mean) * r;
    ctx->save_for_backward({xhat, gamma, r, std});
    return at::addcmul(beta, gamma, xhat);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &xhat = saved[0], &gamma = saved[1], &r = saved[2], &std = saved[3];
    const at::Tensor& dy = grads[0];
    const int64_t d = xhat.size(-1);
    std::vector<int64_t> rows(xhat.dim() - 1);
    for (int64_t i = 0; i < (int64_t)rows.size(); ++i) rows[i] = i;
    at::Tensor dbeta = dy.sum(rows);
    at::Tensor dgamma = (dy * xhat).sum(rows);
    at::Tensor dxhat = dy * gamma;
    at::Tensor mean_dxhat = dxhat.mean({-1}, /*keepdim=*/true);
    at::Tensor coef = (dxhat * xhat).sum({-1}, /*keepdim=*/true) /
                      (std.clamp_min(std::numeric_limits<float>::min()) * (double)(d - 1));
    at::Tensor dx = at::addcmul((dxhat - mean_dxhat) * r, xhat, coef, -1);
    return {dx, dgamma, dbeta, at::Tensor()};
  }
};

}  // namespace

extern "C" {

// y = the blog's LayerNorm of x over its last dim, as one autograd node of libtorch ops
// (any device, float dtypes). Returns a new tensor, or null on a libtorch error (then
// chargpt_last_error says why).
at::Tensor* chargpt_blog_layer_norm_ops(const at::Tensor* x, const at::Tensor* gamma, const at::Tensor* beta,
                                        double eps) {
  return chargpt::guarded<at::Tensor*>(nullptr, [&] {
    TORCH_CHECK(x->defined() && gamma->defined() && beta->defined(), "LayerNorm: undefined tensor");
    TORCH_CHECK(x->dim() >= 1 && x->size(-1) >= 2, "LayerNorm input needs a last dim of at least 2, got ", x->sizes());
    const int64_t d = x->size(-1);
    TORCH_CHECK(gamma->numel() == d && beta->numel() == d, "LayerNorm gamma/beta have ", gamma->numel(), "/",
                beta->numel(), " elements, the input's last dim is ", d);
    TORCH_CHECK(eps >= 0, "LayerNorm eps must be non-negative, got ", eps);
    return new at::Tensor(BlogLayerNormOps::apply(*x, *gamma, *beta, eps));
  });
}
}

extern "C" {

// x copied into page-locked host memory (for copies to the GPU that do not wait), or null
// on a libtorch error (no CUDA, or no page-locked memory to be had). Without a device
// argument, which libtorch 2.11 warns is deprecated.
at::Tensor* chargpt_pin_memory(const at::Tensor* x) {
  return chargpt::guarded<at::Tensor*>(nullptr, [&] { return new at::Tensor(x->pin_memory()); });
}
}
