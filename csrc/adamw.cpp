// AdamW's update and zero_grad(set_to_none=True) as torch.optim.AdamW's single-tensor
// path performs them, op for op (addcmul_/addcdiv_ with their `value`, which tch's
// generated API lacks), and `grad = None`, which tch cannot express. tch's Tensor is a
// pointer to an at::Tensor, so Rust hands those pointers over.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <cmath>

extern "C" {

// param.grad = None
void chargpt_clear_grad(at::Tensor* param) {
  param->mutable_grad().reset();
}

// One update of one parameter whose state step counter is already incremented to `step`.
// Returns 0, or -1 on a libtorch error.
int chargpt_adamw_update(at::Tensor* param, at::Tensor* exp_avg, at::Tensor* exp_avg_sq, double lr,
                         double beta1, double beta2, double eps, double weight_decay, long step) {
  try {
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
  } catch (...) {
    return -1;
  }
}
}
