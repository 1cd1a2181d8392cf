//! What a training step costs on a GPU, counted on the CPU (`chargpt::op_count`): on a GPU
//! a step's time is mostly one launch per op and every wait for the device, so these
//! counts are held here, where no GPU is, and measured on one when there is one
//! (results/cuda/). The GPU form of the fast path (`Kernels::Gpu`) is what CUDA runs; on
//! the CPU its attention with dropout falls back to libtorch's composite, which launches
//! more than CUDA's one fused kernel each way (the budget below includes that).

mod common;

use chargpt::data::Dataset;
use chargpt::fast::Kernels;
use chargpt::layers::{Compute, Config};
use chargpt::model_kind::ModelKind;
use chargpt::models::Model;
use chargpt::op_count::{count, OpCount};
use chargpt::optim::{AdamW, AdamWConfig, Update};
use chargpt::train::{train_model, ModelJob};
use tch::{Device, Kind, Tensor};

/// The blog's structure (6 layers of 6 heads) at small widths: counts do not depend on sizes.
fn blog_shape() -> Config {
    Config { vocab_size: 65, n_embed: 48, num_heads: 6, block_size: 32, block_layers: 6, dropout: 0.2 }
}

/// The counts of one training step (after one untimed step), and of its update alone.
fn count_step(kind: ModelKind, compute: Compute, update: Update) -> (OpCount, OpCount) {
    let _turn = chargpt::rng::lock();
    tch::manual_seed(3);
    let cfg = blog_shape();
    let model = Model::with_compute(kind, &cfg, compute, Device::Cpu).unwrap();
    let mut opt = AdamW::new(model.named_parameters(), AdamWConfig::pytorch_default(1e-3), update);
    let x = Tensor::randint(cfg.vocab_size, [4, cfg.block_size], (Kind::Int64, Device::Cpu));
    let y = Tensor::randint(cfg.vocab_size, [4, cfg.block_size], (Kind::Int64, Device::Cpu));
    let step = |opt: &mut AdamW| {
        let loss = model.loss(&x, &y, true);
        opt.zero_grad().unwrap();
        loss.backward();
        opt.step().unwrap();
    };
    step(&mut opt);
    let (_, whole, names) = count(|| step(&mut opt)).unwrap();
    eprintln!("{kind} {compute:?} {update:?}: {whole:?}\n{names}");
    let loss = model.loss(&x, &y, true);
    opt.zero_grad().unwrap();
    loss.backward();
    let (_, update_only, _) = count(|| opt.step().unwrap()).unwrap();
    (whole, update_only)
}

/// Not one value of a step is read to the host, on any path, with any update: the host
/// can queue the next step while the device computes this one.
#[test]
fn a_training_step_never_waits_for_the_device() {
    for kind in ModelKind::ALL {
        for (compute, update) in [
            (Compute::Faithful, Update::SingleTensor),
            (Compute::Faithful, Update::Foreach),
            (Compute::Fast(Kernels::Fused), Update::Fused),
            (Compute::Fast(Kernels::Gpu), Update::Fused),
        ] {
            let (step, _) = count_step(kind, compute, update);
            assert_eq!(step.host_syncs, 0, "{kind} {compute:?} {update:?}: {step:?}");
            assert!(step.launches > 0, "{kind} {compute:?}: nothing counted");
        }
    }
}

/// The fast path's GPU form of a V10 step at the blog's depth launches at most 530 ops on
/// the CPU (the portable form, what CUDA ran before it: 764); the update is two launches
/// (the step counts advanced on the device, then the fused AdamW).
#[test]
fn the_gpu_form_of_a_v10_step_stays_within_its_launch_budget() {
    let (gpu, gpu_update) = count_step(ModelKind::V10, Compute::Fast(Kernels::Gpu), Update::Fused);
    let (portable, _) = count_step(ModelKind::V10, Compute::Fast(Kernels::Portable), Update::Fused);
    assert!(gpu.launches <= 530, "the GPU form's V10 step launches {} ops", gpu.launches);
    assert!(gpu.launches + 200 < portable.launches, "GPU form {} vs portable {}", gpu.launches, portable.launches);
    assert_eq!(gpu_update.launches, 2, "{gpu_update:?}");
}

/// The faithful path's update as PyTorch runs it: eight launches per parameter with the
/// single-tensor algorithm (the CPU's), eight for all parameters with foreach (CUDA's).
#[test]
fn the_faithful_update_launches_per_parameter_on_the_cpu_and_once_per_op_on_cuda() {
    let model = Model::with_compute(ModelKind::V10, &blog_shape(), Compute::Faithful, Device::Cpu).unwrap();
    // The unused top-level `ff` of V7..V10 gets no gradient, so no update.
    let updated = model.named_parameters().iter().filter(|(n, _)| !n.starts_with("ff.")).count() as i64;
    let (_, single) = count_step(ModelKind::V10, Compute::Faithful, Update::SingleTensor);
    let (_, foreach) = count_step(ModelKind::V10, Compute::Faithful, Update::Foreach);
    assert_eq!(single.launches, 8 * updated, "{single:?} for {updated} parameters");
    assert_eq!(foreach.launches, 8, "{foreach:?}");
}

/// The trainer reads its losses now and then, not at every step: every half second and at
/// each evaluation, far fewer times than a 201-step run takes steps. Each read is one
/// `stack` of the losses since the last (on the CPU the copy to the host is no op, so the
/// read shows as that `stack`; on CUDA it is also a host sync).
#[test]
fn the_trainer_reads_the_loss_now_and_then_not_at_every_step() {
    let _turn = chargpt::rng::lock();
    let data = Dataset::new(&common::excerpt_text());
    let opts = chargpt::config::RunConfig { steps: 201, eval_steps: 2, ..common::small_options(201, 3, 1e-2) };
    let job = ModelJob { kind: ModelKind::V10, opts: &opts, data: &data, device: Device::Cpu, run: None, stop: None, verbose: false };
    let (trained, counts, names) = count(|| train_model(&job).unwrap()).unwrap();
    assert_eq!(trained.losses.len(), 201, "every step's loss is read, in the end");
    let reads: i64 = names.lines().filter_map(|l| l.strip_suffix(" aten::stack")).map(|n| n.parse::<i64>().unwrap()).sum();
    assert!((1..100).contains(&reads), "{reads} reads of the losses in 201 steps:\n{names}");
    assert!(counts.host_syncs < 100, "{counts:?} for 201 steps");
}
