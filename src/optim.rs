//! AdamW exactly as `torch.optim.AdamW` computes it (PyTorch's defaults), with its state
//! in our hands so that it can be saved and resumed; tch's wrapper around the C++
//! optimiser keeps the moments out of reach. The update runs in `csrc/adamw.cpp`: for the
//! faithful path op for op as PyTorch's single-tensor Python code issues it, for the fast
//! path as `AdamW(fused=True)` does it (one libtorch call for every parameter).

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

/// How [`AdamW::step`] computes the update; the formula and the state are the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// `torch.optim.AdamW`'s single-tensor algorithm, eight kernels per parameter in
    /// PyTorch's order: the faithful path on the CPU (PyTorch's default there), whose parity
    /// is exact.
    SingleTensor,
    /// `torch.optim.AdamW`'s foreach algorithm, PyTorch's default on CUDA: the same ops
    /// over every parameter at once (`_foreach_*`, a few launches per op). The faithful
    /// path on CUDA.
    Foreach,
    /// libtorch's fused multi-tensor kernel (`_fused_adamw_`, what `AdamW(fused=True)`
    /// runs): one pass per parameter, all parameters in one call. The fast path's; its
    /// last bits may differ from the single-tensor order's.
    Fused,
}

impl Update {
    /// The update each implementation trains with on `device`: the faithful path's is the
    /// one `torch.optim.AdamW()` picks there.
    pub fn of(implementation: crate::models::Implementation, device: tch::Device) -> Self {
        match implementation {
            crate::models::Implementation::Faithful if device.is_cuda() => Update::Foreach,
            crate::models::Implementation::Faithful => Update::SingleTensor,
            crate::models::Implementation::Fast => Update::Fused,
        }
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
    fn chargpt_foreach_adamw(
        params: *const *mut torch_sys::C_tensor,
        exp_avgs: *const *mut torch_sys::C_tensor,
        exp_avg_sqs: *const *mut torch_sys::C_tensor,
        steps: *const i64,
        n: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    ) -> i32;
    fn chargpt_fused_adamw(
        params: *const *mut torch_sys::C_tensor,
        exp_avgs: *const *mut torch_sys::C_tensor,
        exp_avg_sqs: *const *mut torch_sys::C_tensor,
        device_steps: *const *mut torch_sys::C_tensor,
        n: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    ) -> i32;
}

pub struct AdamW {
    pub cfg: AdamWConfig,
    pub update: Update,
    params: Vec<(String, Tensor)>,
    pub state: BTreeMap<String, ParamState>,
    /// The fused update's step counts as it reads them, on the parameters' device (as
    /// PyTorch keeps them for `fused=True`), with the count each holds: made once, then
    /// advanced by one launch a step, instead of one tensor per parameter per step.
    device_steps: BTreeMap<String, (Tensor, i64)>,
}

impl AdamW {
    pub fn new(params: Vec<(String, Tensor)>, cfg: AdamWConfig, update: Update) -> Self {
        AdamW { cfg, update, params, state: BTreeMap::new(), device_steps: BTreeMap::new() }
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
        // (parameter, exp_avg, exp_avg_sq, step) of the parameters updated together.
        let mut together = Vec::new();
        let mut device_steps = Vec::new();
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
            match self.update {
                Update::SingleTensor => {
                    // SAFETY: the three pointers are live tensors of this parameter and its
                    // state; the C++ side checks shapes and the gradient and catches every
                    // exception.
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
                Update::Foreach => together.push((p.as_mut_ptr(), st.exp_avg.as_mut_ptr(), st.exp_avg_sq.as_mut_ptr(), st.step)),
                Update::Fused => {
                    // The device count is made (again) where it does not hold the count
                    // before this step: the first step, or a state loaded since.
                    let before = st.step - 1;
                    let (count, held) = self.device_steps.entry(name.clone()).or_insert_with(|| (Tensor::new(), -1));
                    if *held != before {
                        *count = Tensor::full([], before as f64, (tch::Kind::Float, p.device()));
                    }
                    *held = st.step;
                    device_steps.push(count.as_mut_ptr());
                    together.push((p.as_mut_ptr(), st.exp_avg.as_mut_ptr(), st.exp_avg_sq.as_mut_ptr(), st.step));
                }
            }
        }
        if together.is_empty() {
            return Ok(());
        }
        let params: Vec<_> = together.iter().map(|f| f.0).collect();
        let exp_avgs: Vec<_> = together.iter().map(|f| f.1).collect();
        let exp_avg_sqs: Vec<_> = together.iter().map(|f| f.2).collect();
        let steps: Vec<i64> = together.iter().map(|f| f.3).collect();
        let n = steps.len() as i64;
        // SAFETY: every pointer is a live tensor owned by `self.params`, `self.state` or
        // `self.device_steps`, none of which changes during the call; the arrays have `n`
        // entries; the C++ side checks the gradients and catches every exception.
        let rc = unsafe {
            match self.update {
                Update::Fused => chargpt_fused_adamw(
                    params.as_ptr(),
                    exp_avgs.as_ptr(),
                    exp_avg_sqs.as_ptr(),
                    device_steps.as_ptr(),
                    n,
                    c.lr,
                    c.beta1,
                    c.beta2,
                    c.eps,
                    c.weight_decay,
                ),
                _ => chargpt_foreach_adamw(
                    params.as_ptr(),
                    exp_avgs.as_ptr(),
                    exp_avg_sqs.as_ptr(),
                    steps.as_ptr(),
                    n,
                    c.lr,
                    c.beta1,
                    c.beta2,
                    c.eps,
                    c.weight_decay,
                ),
            }
        };
        crate::ffi::check(rc.into(), &format!("{:?} AdamW update", self.update))
    }

    /// The step counts (per parameter, and what each device count holds), to put back
    /// with [`Self::set_step_counts`] after a step that ran nothing (a CUDA graph capture).
    pub fn step_counts(&self) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
        (self.state.iter().map(|(n, s)| (n.clone(), s.step)).collect(), self.device_steps.iter().map(|(n, d)| (n.clone(), d.1)).collect())
    }

    pub fn set_step_counts(&mut self, (steps, device): (BTreeMap<String, i64>, BTreeMap<String, i64>)) {
        for (name, st) in &mut self.state {
            if let Some(&step) = steps.get(name) {
                st.step = step;
            }
        }
        for (name, d) in &mut self.device_steps {
            if let Some(&held) = device.get(name) {
                d.1 = held;
            }
        }
    }

    /// Counts one step of the fused update replayed from a CUDA graph (which advanced the
    /// device counts itself): the parameters with a gradient, as [`Self::step`] would.
    pub fn count_replayed_step(&mut self) {
        for (name, p) in &self.params {
            if let (Some(st), true) = (self.state.get_mut(name), p.grad().defined()) {
                st.step += 1;
                if let Some(d) = self.device_steps.get_mut(name) {
                    d.1 += 1;
                }
            }
        }
    }

    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// torch.optim.AdamW's update written out in f64 (docs/MODELS.md, "The trainer").
    fn adamw_f64(p0: &[f64], grads: &[Vec<f64>], c: AdamWConfig) -> Vec<f64> {
        let mut p = p0.to_vec();
        let (mut m, mut v) = (vec![0.0; p.len()], vec![0.0; p.len()]);
        for (t, g) in grads.iter().enumerate() {
            let step = (t + 1) as i32;
            for i in 0..p.len() {
                p[i] *= 1.0 - c.lr * c.weight_decay;
                m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g[i];
                v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g[i] * g[i];
                let m_hat = m[i] / (1.0 - c.beta1.powi(step));
                let v_hat = v[i] / (1.0 - c.beta2.powi(step));
                p[i] -= c.lr * m_hat / (v_hat.sqrt() + c.eps);
            }
        }
        p
    }

    /// Gradients of very different sizes (1e-8 is where eps matters), changing sign from
    /// step to step (where the betas matter), and a large lr (where weight decay shows):
    /// both updates follow the formula.
    #[test]
    fn four_steps_follow_the_formula_with_pytorch_defaults() {
        let cfg = AdamWConfig::pytorch_default(0.5);
        let p0 = vec![1.0, -2.0, 0.5, 3.0, -1.5, 0.25];
        let grads: Vec<Vec<f64>> = vec![
            vec![1e-8, 0.3, -2.0, 1e-6, 4.0, -3e-8],
            vec![-2e-8, 0.1, 1.0, -1e-6, 4.0, 5e-8],
            vec![3e-8, -0.5, 0.5, 2e-6, -1.0, -1e-8],
            vec![1e-8, 0.2, -0.1, 1e-6, 2.0, 2e-8],
        ];
        let expected = adamw_f64(&p0, &grads, cfg);
        for update in [Update::SingleTensor, Update::Foreach, Update::Fused] {
            let param = Tensor::from_slice(&p0).to_kind(Kind::Float).set_requires_grad(true);
            let mut opt = AdamW::new(vec![("w".into(), param.shallow_clone())], cfg, update);
            for g in &grads {
                opt.zero_grad().unwrap();
                let g = Tensor::from_slice(g).to_kind(Kind::Float);
                (&param * g).sum(Kind::Float).backward();
                opt.step().unwrap();
            }
            let ours = Vec::<f64>::try_from(param.detach().to_kind(Kind::Double)).unwrap();
            for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{update:?}, element {i}: {a} vs the formula's {b}");
            }
            assert_eq!(opt.state["w"].step, 4, "{update:?}");
        }
        assert_eq!((cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay), (0.9, 0.999, 1e-8, 0.01), "PyTorch's defaults");
    }

    /// The fused update over many parameters of different shapes, some without a
    /// gradient, follows the single-tensor one step for step (to float rounding), moments
    /// included, and leaves the gradient-less ones alone.
    #[test]
    fn the_fused_update_follows_the_single_tensor_one() {
        let _rng = crate::rng_lock();
        tch::manual_seed(7);
        let shapes: [&[i64]; 5] = [&[3], &[4, 5], &[128], &[2, 3, 4], &[1]];
        let init: Vec<Tensor> = shapes.iter().map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu))).collect();
        let grads: Vec<Vec<Tensor>> =
            (0..5).map(|_| shapes.iter().map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu))).collect()).collect();
        let run = |update: Update| {
            let params: Vec<(String, Tensor)> =
                init.iter().enumerate().map(|(i, t)| (format!("p{i}"), t.copy().set_requires_grad(true))).collect();
            let mut opt =
                AdamW::new(params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(), AdamWConfig::pytorch_default(0.1), update);
            for step in &grads {
                opt.zero_grad().unwrap();
                // p3 never has a gradient.
                let loss = params
                    .iter()
                    .zip(step)
                    .filter(|((n, _), _)| n != "p3")
                    .map(|((_, p), g)| (p * g).sum(Kind::Float))
                    .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
                loss.backward();
                opt.step().unwrap();
            }
            let moments: Vec<Tensor> = opt.state.values().flat_map(|s| [s.exp_avg.copy(), s.exp_avg_sq.copy()]).collect();
            (params.into_iter().map(|(_, t)| t.detach()).collect::<Vec<_>>(), moments)
        };
        let (single, single_moments) = run(Update::SingleTensor);
        let (fused, fused_moments) = run(Update::Fused);
        for (i, (a, b)) in single.iter().zip(&fused).enumerate() {
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff <= 1e-6, "p{i}: fused differs from single-tensor by {diff}");
        }
        assert!(fused[3].equal(&init[3]), "a parameter without a gradient is not touched");
        assert_eq!(single_moments.len(), 8, "four parameters with state");
        for (a, b) in single_moments.iter().zip(&fused_moments) {
            assert!((a - b).abs().max().double_value(&[]) <= 1e-6);
        }
        assert!(!fused[0].equal(&init[0]), "the fused update moved the parameters");
    }

    /// A parameter whose gradient is None is skipped entirely, weight decay included (the
    /// unused `ff` of V7..V10), as PyTorch's AdamW does.
    #[test]
    fn a_parameter_without_gradient_is_not_decayed() {
        for update in [Update::SingleTensor, Update::Foreach, Update::Fused] {
            let used = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let unused = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let mut opt = AdamW::new(
                vec![("used".into(), used.shallow_clone()), ("unused".into(), unused.shallow_clone())],
                AdamWConfig::pytorch_default(0.5),
                update,
            );
            opt.zero_grad().unwrap();
            (&used * 2.0).sum(Kind::Float).backward();
            opt.step().unwrap();
            assert_eq!(Vec::<f32>::try_from(unused.detach()).unwrap(), [1.0, 1.0, 1.0], "{update:?}");
            assert!(!opt.state.contains_key("unused"), "{update:?}");
            assert_ne!(Vec::<f32>::try_from(used.detach()).unwrap(), [1.0, 1.0, 1.0], "{update:?}");
        }
    }
}
