//! AdamW exactly as `torch.optim.AdamW` computes it (single-tensor path, PyTorch's
//! defaults), with its state in our hands so that it can be saved and resumed; tch's
//! wrapper around the C++ optimiser keeps the moments out of reach. The per-tensor
//! update runs in `csrc/adamw.cpp`, op for op as PyTorch's Python code issues it.

use crate::ffi::LibtorchError;
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

extern "C" {
    fn chargpt_clear_grad(param: *mut torch_sys::C_tensor) -> i32;
    fn chargpt_adamw_update(
        param: *mut torch_sys::C_tensor,
        exp_avg: *mut torch_sys::C_tensor,
        exp_avg_sq: *mut torch_sys::C_tensor,
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        step: i64,
    ) -> i32;
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

    /// `optimizer.zero_grad()` with PyTorch's default `set_to_none=True`: the next backward
    /// writes fresh gradients instead of zero-filling and accumulating into old ones.
    pub fn zero_grad(&mut self) -> Result<(), LibtorchError> {
        for (name, p) in &mut self.params {
            // SAFETY: `p` is a live parameter tensor owned by the model; the C++ side only
            // resets its grad and catches every exception.
            let status = unsafe { chargpt_clear_grad(p.as_mut_ptr()) };
            crate::ffi::check(status.into(), &format!("clearing the gradient of {name}"))?;
        }
        Ok(())
    }

    /// One AdamW update of every parameter that has a gradient. A parameter without one
    /// (the unused top-level `ff` of V7..V10) is skipped, as PyTorch skips `grad is None`.
    pub fn step(&mut self) -> Result<(), LibtorchError> {
        let c = self.cfg;
        for (name, p) in &mut self.params {
            if !p.grad().defined() {
                continue;
            }
            let st = self.state.entry(name.clone()).or_insert_with(|| ParamState {
                step: 0,
                exp_avg: p.zeros_like(),
                exp_avg_sq: p.zeros_like(),
            });
            st.step += 1;
            // SAFETY: the three pointers are live tensors of this parameter and its state;
            // the C++ side checks shapes and the gradient and catches every exception.
            let rc = unsafe {
                chargpt_adamw_update(
                    p.as_mut_ptr(),
                    st.exp_avg.as_mut_ptr(),
                    st.exp_avg_sq.as_mut_ptr(),
                    c.lr,
                    c.beta1,
                    c.beta2,
                    c.eps,
                    c.weight_decay,
                    st.step,
                )
            };
            crate::ffi::check(rc.into(), &format!("AdamW update of {name}"))?;
        }
        Ok(())
    }

    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }
}
