//! AdamW exactly as `torch.optim.AdamW` computes it (single-tensor path, PyTorch's
//! defaults), written out so that its state can be saved and resumed; tch's wrapper
//! around the C++ optimiser keeps the moments out of reach.

use std::collections::BTreeMap;
use tch::Tensor;

#[derive(Clone, Copy, Debug)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamWConfig {
    /// PyTorch's defaults (betas 0.9/0.999, eps 1e-8, weight decay 0.01) at `lr`.
    pub fn pytorch_default(lr: f64) -> Self {
        AdamWConfig { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

/// Per-parameter state; absent until the parameter first has a gradient (as in PyTorch).
pub struct ParamState {
    pub step: i64,
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
}

pub struct AdamW {
    pub cfg: AdamWConfig,
    params: Vec<(String, Tensor)>,
    pub state: BTreeMap<String, ParamState>,
}

impl AdamW {
    pub fn new(params: Vec<(String, Tensor)>, cfg: AdamWConfig) -> Self {
        AdamW { cfg, params, state: BTreeMap::new() }
    }

    /// `optimizer.zero_grad()` (set_to_none=True, PyTorch's default).
    pub fn zero_grad(&self) {
        for (_, p) in &self.params {
            let mut grad = p.grad();
            if grad.defined() {
                // Detach and drop: the next backward allocates a fresh gradient, as with None.
                let _ = grad.detach_();
                let _ = grad.zero_();
            }
        }
    }

    /// One AdamW update of every parameter that has a gradient. A parameter without one
    /// (the unused top-level `ff` of V7..V10) is skipped, as PyTorch skips `grad is None`.
    pub fn step(&mut self) {
        let c = self.cfg;
        tch::no_grad(|| {
            for (name, p) in &self.params {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let st = self.state.entry(name.clone()).or_insert_with(|| ParamState {
                    step: 0,
                    exp_avg: p.zeros_like(),
                    exp_avg_sq: p.zeros_like(),
                });
                st.step += 1;
                let mut p = p.shallow_clone();
                let _ = p.g_mul_scalar_(1.0 - c.lr * c.weight_decay);
                let _ = st.exp_avg.lerp_(&grad, 1.0 - c.beta1);
                // addcmul_(g, g, value=v) computes (v * g) * g; passing (g * v, g) rounds identically.
                let _ = st.exp_avg_sq.g_mul_scalar_(c.beta2).addcmul_(&grad.g_mul_scalar(1.0 - c.beta2), &grad);
                let bias_correction1 = 1.0 - c.beta1.powf(st.step as f64);
                let bias_correction2 = 1.0 - c.beta2.powf(st.step as f64);
                let step_size = c.lr / bias_correction1;
                let denom = (st.exp_avg_sq.sqrt() / bias_correction2.sqrt()).g_add_scalar_(c.eps);
                // addcdiv_(m, d, value=s) computes (s * m) / d; so does passing (m * s, d).
                let _ = p.addcdiv_(&(&st.exp_avg * -step_size), &denom);
            }
        });
    }

    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }
}
