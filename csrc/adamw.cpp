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

// The fast path's update: every parameter at once through libtorch's fused AdamW
// (`torch.optim.AdamW(fused=True)`): one pass per tensor over param, grad and both
// moments, instead of eight kernels per tensor. `steps[i]` is parameter i's step count,
// already incremented. Returns 0, or -1 on a libtorch error (chargpt_last_error says why).
int chargpt_fused_adamw(at::Tensor** params, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs, const int64_t* steps,
                        int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay) {
  return chargpt::guarded(-1, [&] {
    std::vector<at::Tensor> ps, gs, ms, vs, ts;
    for (int64_t i = 0; i < n; i++) {
      TORCH_CHECK(params[i]->defined() && exp_avgs[i]->defined() && exp_avg_sqs[i]->defined(), "AdamW: undefined tensor");
      TORCH_CHECK(params[i]->grad().defined(), "AdamW: the parameter has no gradient");
      TORCH_CHECK(steps[i] >= 1, "AdamW: step must be at least 1, got ", steps[i]);
      ps.push_back(*params[i]);
      gs.push_back(params[i]->grad());
      ms.push_back(*exp_avgs[i]);
      vs.push_back(*exp_avg_sqs[i]);
      ts.push_back(at::scalar_tensor((double)steps[i], params[i]->options().dtype(at::kFloat)));
    }
    c10::NoGradGuard no_grad;
    at::_fused_adamw_(ps, gs, ms, vs, {}, ts, lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                      /*maximize=*/false);
    return 0;
  });
}
}
