// AdamW's update and zero_grad(set_to_none=True) as torch.optim.AdamW's single-tensor
// path performs them, op for op (addcmul_/addcdiv_ with their `value`, which tch's
// generated API lacks), and `grad = None`, which tch cannot express. tch's Tensor is a
// pointer to an at::Tensor, so Rust hands those pointers over.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <cmath>
#include <cstdint>
#include <vector>

#include "shim.h"

extern "C" {

// param.grad = None. Returns 0, or -1 on a libtorch error (chargpt_last_error says why).
int chargpt_clear_grad(at::Tensor* param) {
  return chargpt::guarded(-1, [&] {
    TORCH_CHECK(param->defined(), "clear_grad: undefined parameter");
    param->mutable_grad().reset();
    return 0;
  });
}

// One update of one parameter whose state step counter is already incremented to `step`.
// Returns 0, or -1 on a libtorch error (chargpt_last_error says why).
int chargpt_adamw_update(at::Tensor* param, at::Tensor* exp_avg, at::Tensor* exp_avg_sq, double lr,
                         double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  return chargpt::guarded(-1, [&] {
    TORCH_CHECK(param->defined() && exp_avg->defined() && exp_avg_sq->defined(), "AdamW: undefined tensor");
    TORCH_CHECK(param->grad().defined(), "AdamW: the parameter has no gradient");
    TORCH_CHECK(exp_avg->sizes() == param->sizes() && exp_avg_sq->sizes() == param->sizes(),
                "AdamW: moment shapes ", exp_avg->sizes(), " / ", exp_avg_sq->sizes(), " differ from the parameter's ",
                param->sizes());
    TORCH_CHECK(step >= 1, "AdamW: step must be at least 1, got ", step);
    c10::NoGradGuard no_grad;
    const at::Tensor& grad = param->grad();
    param->mul_(1 - lr * weight_decay);
    exp_avg->lerp_(grad, 1 - beta1);
    exp_avg_sq->mul_(beta2).addcmul_(grad, grad, 1 - beta2);
    double bias_correction1 = 1 - std::pow(beta1, (double)step);
    double bias_correction2 = 1 - std::pow(beta2, (double)step);
    double step_size = lr / bias_correction1;
    double bias_correction2_sqrt = std::sqrt(bias_correction2);
    at::Tensor denom = (exp_avg_sq->sqrt() / bias_correction2_sqrt).add_(eps);
    param->addcdiv_(*exp_avg, denom, -step_size);
    return 0;
  });
}

// The faithful path's update on CUDA, as torch.optim.AdamW's foreach algorithm
// (`_multi_tensor_adamw`, capturable=False) issues it: the same formula as the single-tensor
// one, op by op over every parameter at once; the bias corrections computed on the host
// from the step counts (already incremented), as PyTorch computes them from its CPU step
// tensors. Returns 0, or -1 on a libtorch error (chargpt_last_error says why).
int chargpt_foreach_adamw(at::Tensor** params, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs, const int64_t* steps,
                          int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay) {
  return chargpt::guarded(-1, [&] {
    std::vector<at::Tensor> ps, gs, ms, vs;
    std::vector<c10::Scalar> step_size, bias_correction2_sqrt;
    for (int64_t i = 0; i < n; i++) {
      TORCH_CHECK(params[i]->defined() && exp_avgs[i]->defined() && exp_avg_sqs[i]->defined(), "AdamW: undefined tensor");
      TORCH_CHECK(params[i]->grad().defined(), "AdamW: the parameter has no gradient");
      TORCH_CHECK(steps[i] >= 1, "AdamW: step must be at least 1, got ", steps[i]);
      ps.push_back(*params[i]);
      gs.push_back(params[i]->grad());
      ms.push_back(*exp_avgs[i]);
      vs.push_back(*exp_avg_sqs[i]);
      const double bias_correction1 = 1 - std::pow(beta1, (double)steps[i]);
      const double bias_correction2 = 1 - std::pow(beta2, (double)steps[i]);
      step_size.push_back((lr / bias_correction1) * -1);
      bias_correction2_sqrt.push_back(std::pow(bias_correction2, 0.5));
    }
    c10::NoGradGuard no_grad;
    at::_foreach_mul_(ps, 1 - lr * weight_decay);
    at::_foreach_lerp_(ms, gs, 1 - beta1);
    at::_foreach_mul_(vs, beta2);
    at::_foreach_addcmul_(vs, gs, gs, 1 - beta2);
    std::vector<at::Tensor> denom = at::_foreach_sqrt(vs);
    at::_foreach_div_(denom, bias_correction2_sqrt);
    at::_foreach_add_(denom, eps);
    at::_foreach_addcdiv_(ps, ms, denom, step_size);
    return 0;
  });
}

// The fast path's update: every parameter at once through libtorch's fused AdamW
// (`torch.optim.AdamW(fused=True)`): one pass per tensor over param, grad and both
// moments, instead of eight kernels per tensor. `device_steps[i]` is parameter i's step
// count before this step, a float32 scalar on its device, advanced here by one launch for
// all (as PyTorch's `_fused_adamw` does), not made anew each step. Returns 0, or -1 on a
// libtorch error (chargpt_last_error says why).
int chargpt_fused_adamw(at::Tensor** params, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs, at::Tensor** device_steps,
                        int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay) {
  return chargpt::guarded(-1, [&] {
    std::vector<at::Tensor> ps, gs, ms, vs, ts;
    for (int64_t i = 0; i < n; i++) {
      TORCH_CHECK(params[i]->defined() && exp_avgs[i]->defined() && exp_avg_sqs[i]->defined(), "AdamW: undefined tensor");
      TORCH_CHECK(params[i]->grad().defined(), "AdamW: the parameter has no gradient");
      TORCH_CHECK(device_steps[i]->defined() && device_steps[i]->numel() == 1 &&
                      device_steps[i]->device() == params[i]->device(),
                  "AdamW: the step count must be one number on the parameter's device");
      ps.push_back(*params[i]);
      gs.push_back(params[i]->grad());
      ms.push_back(*exp_avgs[i]);
      vs.push_back(*exp_avg_sqs[i]);
      ts.push_back(*device_steps[i]);
    }
    c10::NoGradGuard no_grad;
    at::_foreach_add_(ts, 1);
    at::_fused_adamw_(ps, gs, ms, vs, {}, ts, lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                      /*maximize=*/false);
    return 0;
  });
}
}
