//! Criterion benchmarks: one full training step of each model (forward, loss, backward,
//! AdamW, loss read back) at the `cpu` bench configuration, faithful and fast, and
//! generation of 200 characters. The `blog` configuration is added when CUDA is present.
//! `make bench` also runs scripts/bench.py, which puts PyTorch eager beside these numbers.

use chargpt::bench::{bench_config, StepBench};
use chargpt::model_kind::ModelKind;
use chargpt::models::Implementation;
use chargpt::presets::Preset;
use chargpt::sample;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use tch::Device;

fn steps(c: &mut Criterion) {
    chargpt::memory::keep_freed_tensor_memory();
    let mut configs = vec![(Preset::Cpu, Device::Cpu)];
    if tch::Cuda::is_available() {
        configs.push((Preset::Blog, Device::Cuda(0)));
    }
    for (name, device) in configs {
        let (cfg, batch) = bench_config(name, 84);
        let mut group = c.benchmark_group(format!("train_step/{name}"));
        group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
        group.throughput(Throughput::Elements((batch * cfg.block_size) as u64));
        for kind in ModelKind::ALL {
            for implementation in [Implementation::Faithful, Implementation::Fast] {
                if implementation == Implementation::Fast && kind < ModelKind::V4 {
                    continue; // no attention: the fast path is the same computation
                }
                let mut b = StepBench::new(kind, &cfg, implementation, batch, device).expect("valid configuration");
                let id = format!("{kind}/{implementation}");
                group.bench_function(id, |bencher| bencher.iter(|| b.step()));
            }
        }
        group.finish();

        let mut group = c.benchmark_group(format!("generate_200/{name}"));
        group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
        group.throughput(Throughput::Elements(200));
        for kind in ModelKind::ALL {
            let b = StepBench::new(kind, &cfg, Implementation::Faithful, batch, device).expect("valid configuration");
            group.bench_function(kind.to_string(), |bencher| {
                bencher.iter(|| {
                    sample::generate(&b.model, &[sample::START_TOKEN], 200, sample::Sampling::default(), |_| {
                        std::ops::ControlFlow::Continue(())
                    })
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // No criterion plots: the numbers are what matter here, and its plot backend finds
    // no font once plotters' ab_glyph feature (used by `chargpt plot`) is on.
    config = Criterion::default().without_plots();
    targets = steps
}
criterion_main!(benches);
