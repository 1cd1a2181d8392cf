//! Measuring what a training step costs: the step itself (forward, loss, backward,
//! AdamW, as the trainer does it), its ops, launches and host syncs (`crate::op_count`), generation throughput, the analytic
//! FLOPs of a step, and the machine's fp32 matmul rate through libtorch.

use crate::device::DeviceKind;
use crate::layers::Config;
use crate::model_kind::ModelKind;
use crate::models::{Implementation, Model};
use crate::optim::{AdamW, AdamWConfig, Update};
use crate::precision::Precision;
use crate::presets::Preset;
use crate::sample::{self, Sampling};
use anyhow::Result;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// A bench configuration: a preset's model sizes and batch size (`cpu` or `blog`, as
/// scripts/bench_pytorch.py reads them from the same src/presets.json).
pub fn bench_config(preset: Preset, vocab_size: i64) -> (Config, i64) {
    let v = preset.values();
    let cfg = Config {
        vocab_size,
        n_embed: v.n_embed,
        num_heads: v.num_heads,
        block_size: v.block_size,
        block_layers: v.block_layers,
        dropout: v.dropout,
    };
    (cfg, v.batch_size)
}

/// How `chargpt bench` times: seconds of steps per model, characters generated, and
/// whether the threads follow the load (`--threads auto`).
pub struct Timing {
    pub budget_s: f64,
    pub generate_chars: usize,
    pub follow_load: bool,
    /// Whether to time the step's matmul floor too (`crate::floor`).
    pub floor: bool,
    /// Sequences per step, in place of the preset's.
    pub batch_size: Option<i64>,
    /// The step captured as a CUDA graph and replayed (`crate::cuda_graph`).
    pub cuda_graphs: bool,
}

/// `chargpt bench`: one CSV line per model (the format scripts/bench.py reads).
pub fn print_steps(
    models: &[ModelKind],
    preset: Preset,
    implementation: Implementation,
    device: Device,
    precision: Precision,
    timing: Timing,
) -> Result<()> {
    let Timing { budget_s, generate_chars, follow_load, floor, batch_size, cuda_graphs } = timing;
    let (cfg, preset_batch) = bench_config(preset, 84);
    let batch = batch_size.unwrap_or(preset_batch);
    let threads = tch::get_num_threads();
    println!("model,impl,parameters,ms_per_step,flops_per_step,floor_ms,gen_chars_per_s,threads,device,precision,batch_size,ops_per_step,launches_per_step,host_syncs_per_step,cuda_graph,peak_mem_mb");
    for &kind in models {
        let mut b = StepBench::new(kind, &cfg, implementation, batch, device)?;
        b.precision = precision;
        if cuda_graphs {
            let (graph, note) = crate::cuda_graph::StepGraph::new(device);
            if let Some(note) = note {
                eprintln!("{kind}: {note}");
            }
            b.graph = graph;
        }
        // As training does: fewer threads while other processes keep cores busy, each
        // model starting from all of them.
        if follow_load {
            crate::arithmetic::Threads::Auto.apply();
        }
        b.cpu_share =
            if follow_load && !device.is_cuda() { crate::cpu_share::CpuShare::new(crate::device::available_cpus()) } else { None };
        crate::cuda_graph::peak_memory_bytes(device, true);
        // With a graph: its warm-up and capture before the timed steps.
        let warmup = if cuda_graphs { crate::cuda_graph::WARMUP_STEPS + 3 } else { 3 };
        let times = b.time_steps(warmup, 5, budget_s);
        let counts = b.count_step();
        let graphed = matches!(b.graph, crate::cuda_graph::StepGraph::Captured(_));
        let peak_mb = crate::cuda_graph::peak_memory_bytes(device, false).map_or(f64::NAN, |b| b as f64 / (1 << 20) as f64);
        let gen = if generate_chars > 0 { generation_rate(&b.model, generate_chars) } else { f64::NAN };
        // The step's own matmuls, in the same process and threads (`crate::floor`).
        let gemm_kind = if precision == Precision::Bf16 { Kind::BFloat16 } else { Kind::Float };
        let floor_ms = if floor {
            crate::floor::floor_seconds(&crate::floor::step_gemms(&b.model, batch), device, gemm_kind, budget_s / 2.0) * 1e3
        } else {
            f64::NAN
        };
        let (params, ms, flops) = (b.model.num_parameters(), median(&times) * 1e3, flops_per_step(&b.model, batch));
        let (device, precision) = (DeviceKind::of(device), format!("{precision:?}").to_lowercase());
        // A replayed graph is one more launch, which no ATen op records.
        let (ops, launches, syncs) = (counts.ops, counts.launches + graphed as i64, counts.host_syncs);
        println!("{kind},{implementation},{params},{ms:.4},{flops:.0},{floor_ms:.4},{gen:.1},{threads},{device},{precision},{batch},{ops},{launches},{syncs},{graphed},{peak_mb:.1}");
    }
    Ok(())
}

/// `chargpt bench --matmul-peak`: the device's matmul rate at `precision`, as a CSV row
/// under its header.
pub fn print_matmul_peak(device: Device, precision: Precision) {
    let n = if device.is_cuda() { 8192 } else { 2048 };
    let kind = if precision == Precision::Bf16 { Kind::BFloat16 } else { Kind::Float };
    let name = format!("{precision:?}").to_lowercase();
    println!("matmul_gflops,threads,precision");
    println!("{:.3},{},{name}", matmul_peak_gflops(device, n, kind), tch::get_num_threads());
}

fn sync(device: Device) {
    crate::device::synchronize(device)
}

/// A model, its optimiser and one fixed batch, ready to time steps.
pub struct StepBench {
    pub model: Model,
    pub precision: Precision,
    /// Threads that follow the load (None: a fixed count).
    pub cpu_share: Option<crate::cpu_share::CpuShare>,
    /// Eager steps, or the step as a CUDA graph.
    pub graph: crate::cuda_graph::StepGraph,
    opt: AdamW,
    x: Tensor,
    y: Tensor,
}

impl StepBench {
    pub fn new(kind: ModelKind, cfg: &Config, implementation: Implementation, batch_size: i64, device: Device) -> Result<Self> {
        tch::manual_seed(0);
        let model = Model::with_implementation(kind, cfg, implementation, device)?;
        let opt = AdamW::new(model.named_parameters(), AdamWConfig::pytorch_default(1e-4), Update::of(implementation, device));
        let shape = [batch_size, cfg.block_size];
        let x = Tensor::randint(cfg.vocab_size, shape, (Kind::Int64, device));
        let y = Tensor::randint(cfg.vocab_size, shape, (Kind::Int64, device));
        Ok(StepBench { model, precision: Precision::Fp32, cpu_share: None, graph: crate::cuda_graph::StepGraph::Eager, opt, x, y })
    }

    /// One training step, as the trainer does it; returns the loss, still on the device
    /// (the trainer reads losses now and then, not at every step).
    pub fn step(&mut self) -> Tensor {
        if let Some(share) = &mut self.cpu_share {
            share.give_way();
        }
        let stepped = self.graph.step(&self.model, &mut self.opt, self.precision, &self.x, &self.y);
        let (loss, note) = stepped.unwrap_or_else(|e| crate::ffi::raise(crate::ffi::LibtorchError(e.to_string())));
        if let Some(note) = note {
            eprintln!("{}: {note}", self.model.kind);
        }
        loss
    }

    /// What one step (after warm-up) costs in ops, launches and host syncs.
    pub fn count_step(&mut self) -> crate::op_count::OpCount {
        let _ = self.step();
        let (_, counts, _) = crate::op_count::count(|| self.step()).unwrap_or_else(|e| crate::ffi::raise(e));
        counts
    }

    /// Seconds per step: `warmup` untimed steps, then at least `min_steps` and about
    /// `budget_s` seconds of timed ones. On a GPU the steps are timed ten at a time between
    /// two waits for the device, as training runs them (the host queues a step while the
    /// device computes the one before).
    pub fn time_steps(&mut self, warmup: usize, min_steps: usize, budget_s: f64) -> Vec<f64> {
        for _ in 0..warmup {
            let _ = self.step();
        }
        let device = self.model.device();
        let group = if device.is_cuda() { 10 } else { 1 };
        let mut times = Vec::new();
        let start = Instant::now();
        while times.len() < min_steps || start.elapsed().as_secs_f64() < budget_s {
            sync(device);
            let t0 = Instant::now();
            for _ in 0..group {
                let _ = self.step();
            }
            sync(device);
            times.push(t0.elapsed().as_secs_f64() / group as f64);
            if times.len() >= 1000 {
                break;
            }
        }
        times
    }
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Characters per second generating `n` characters from token 1.
pub fn generation_rate(model: &Model, n: usize) -> f64 {
    let _ = sample::generate(model, &[sample::START_TOKEN], 10, Sampling::default(), |_| std::ops::ControlFlow::Continue(()));
    let t0 = Instant::now();
    let _ = sample::generate(model, &[sample::START_TOKEN], n, Sampling::default(), |_| std::ops::ControlFlow::Continue(()));
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Analytic FLOPs of one training step: 6 per weight per token for every matmul weight
/// used in forward (2 forward, 4 backward), plus the attention score and weighted-sum
/// matmuls, 12 B T^2 C per attention layer (the full T x T, as the blog computes it).
/// Embedding lookups, element-wise ops and the optimiser are not counted.
pub fn flops_per_step(model: &Model, batch_size: i64) -> f64 {
    let cfg = &model.cfg;
    let tokens = (batch_size * cfg.block_size) as f64;
    let unused_ff = model.kind >= ModelKind::V7;
    let matmul_weights: i64 = model
        .named_parameters()
        .iter()
        .filter(|(n, t)| t.dim() == 2 && !n.contains("embedding") && !(unused_ff && n.starts_with("ff.")))
        .map(|(_, t)| t.numel() as i64)
        .sum();
    let attention_layers = match model.kind {
        ModelKind::V1 | ModelKind::V2 | ModelKind::V3 => 0,
        ModelKind::V4 | ModelKind::V5 | ModelKind::V6 => 1,
        ModelKind::V7 | ModelKind::V8 | ModelKind::V9 => 3,
        ModelKind::V10 => cfg.block_layers,
    };
    let t = cfg.block_size as f64;
    6.0 * matmul_weights as f64 * tokens + 12.0 * attention_layers as f64 * batch_size as f64 * t * t * cfg.n_embed as f64
}

/// The machine's matmul rate through libtorch for `kind` (fp32, with TF32 where the global
/// switch allows it, or bf16), in GFLOP/s (median of several).
pub fn matmul_peak_gflops(device: Device, n: i64, kind: Kind) -> f64 {
    tch::manual_seed(0);
    let a = Tensor::randn([n, n], (kind, device));
    let b = Tensor::randn([n, n], (kind, device));
    let mut times = Vec::new();
    for i in 0..8 {
        sync(device);
        let t0 = Instant::now();
        let _c = a.matmul(&b);
        sync(device);
        if i >= 2 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    2.0 * (n as f64).powi(3) / median(&times) / 1e9
}
