//! `--impl fast` computes the same function as the faithful path: same parameters, same
//! logits and gradients at dropout 0 (per tensor, relative to the tensor's own scale, as
//! parity compares), dropout at every site with the right keep rate and scaling, and the
//! same loss after training. Its one-pass CPU kernels, its portable kernels and its GPU
//! form (what CUDA runs) are all checked.

mod common;

use chargpt::config::RunConfig;
use chargpt::data::Dataset;
use chargpt::fast::Kernels;
use chargpt::layers::{Compute, Config, FeedForward, FeedForwardKind, MultiHead, MultiHeadKind};
use chargpt::model_kind::ModelKind;
use chargpt::models::{Implementation, Model};
use chargpt::parity::{compare, Tolerance};
use chargpt::train::{train_model, ModelJob};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

fn config() -> Config {
    Config { vocab_size: 30, n_embed: 32, num_heads: 4, block_size: 16, block_layers: 2, dropout: 0.0 }
}

/// The faithful layers (None), or the fast path's with the given kernels.
fn compute(kernels: Option<Kernels>) -> Compute {
    kernels.map_or(Compute::Faithful, Compute::Fast)
}

/// Per-tensor: `max|fast - faithful| <= 1e-4 * max|faithful| + 1e-9`. Gradients of the
/// per-head key/query weights are small (1e-3 and below), so an absolute bound would let a
/// 10 % error of exactly what the fused QKV computes pass.
const TOL: Tolerance = Tolerance { rel: 1e-4, abs_floor: 1e-9, run_loss: 0.0, adam_end_to_end_rel: 0.0 };

fn agree_on_every_model(kernels: Kernels) {
    let _turn = chargpt::rng::lock();
    for kind in ModelKind::ALL {
        tch::manual_seed(11);
        let faithful = Model::new(kind, &config(), Device::Cpu).unwrap();
        tch::manual_seed(11);
        let fast = Model::with_compute(kind, &config(), compute(Some(kernels)), Device::Cpu).unwrap();
        let keys = |m: &Model| m.state_dict().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(keys(&faithful), keys(&fast), "{kind}: same checkpoint keys");
        let idx = Tensor::randint(30, [3, 16], (Kind::Int64, Device::Cpu));
        let targets = Tensor::randint(30, [3, 16], (Kind::Int64, Device::Cpu));
        for train in [false, true] {
            compare(&format!("{kind} logits (train={train})"), &fast.forward(&idx, train), &faithful.forward(&idx, train), &TOL)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        // Shorter contexts too (generation uses T < Tmax).
        let short = idx.narrow(1, 0, 5);
        compare(&format!("{kind} short-context logits"), &fast.forward(&short, false), &faithful.forward(&short, false), &TOL)
            .unwrap_or_else(|e| panic!("{e}"));
        faithful.loss(&idx, &targets, true).backward();
        fast.loss(&idx, &targets, true).backward();
        for ((name, p), (_, q)) in faithful.named_parameters().iter().zip(fast.named_parameters()) {
            let (g, h) = (p.grad(), q.grad());
            assert_eq!(g.defined(), h.defined(), "{kind} {name}");
            if g.defined() {
                compare(&format!("{kind} grad {name}"), &h, &g, &TOL).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
}

#[test]
fn fast_and_faithful_agree_on_every_model() {
    agree_on_every_model(Kernels::Fused);
}

/// The portable LayerNorm and `rand_like` dropout (bf16 on the CPU), forced on fp32.
#[test]
fn fast_with_portable_kernels_and_faithful_agree_on_every_model() {
    agree_on_every_model(Kernels::Portable);
}

/// The GPU form (what CUDA runs: the LayerNorm node, native dropout, fused attention) on
/// the CPU.
#[test]
fn fast_in_its_gpu_form_and_faithful_agree_on_every_model() {
    agree_on_every_model(Kernels::Gpu);
}

fn dropout_config() -> Config {
    Config { vocab_size: 10, n_embed: 8, num_heads: 2, block_size: 64, block_layers: 1, dropout: 0.3 }
}

/// Every dropout site of attention, on both paths: uniform attention (zero query and key
/// weights) over values that are all 1 and an identity projection make every output 1
/// without dropout. Attention-weight dropout makes each row's output (kept weights) / (1 - p)
/// of its window, which varies; the projection's dropout zeroes a share p; together the
/// mean stays 1.
fn attention_dropout_sites(kernels: Option<Kernels>) {
    let _turn = chargpt::rng::lock();
    tch::manual_seed(5);
    let vs = VarStore::new(Device::Cpu);
    let mh = MultiHead::new(vs.root() / "sa", &dropout_config(), MultiHeadKind::Dropout, compute(kernels));
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.ends_with("query.weight") || name.ends_with("key.weight") || name.ends_with("proj.bias") {
                let _ = t.zero_();
            } else if name.ends_with("value.weight") {
                let _ = t.zero_();
                let _ = t.narrow(1, 0, 1).fill_(1.0);
            } else if name.ends_with("proj.weight") {
                t.copy_(&Tensor::eye(8, (Kind::Float, Device::Cpu)));
            }
        }
    });
    let x = Tensor::zeros([64, 64, 8], (Kind::Float, Device::Cpu));
    let _ = x.narrow(2, 0, 1).fill_(1.0);
    let what = format!("{kernels:?}");
    let eval = mh.forward_t(&x, false);
    assert!((eval - 1.0).abs().max().double_value(&[]) < 1e-5, "{what}: no dropout in eval");
    // Rows with at least 17 positions in their window, so a row is rarely dropped whole.
    let y = mh.forward_t(&x, true).narrow(1, 16, 48);
    let zero_share = y.eq(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    assert!((zero_share - 0.3).abs() < 0.02, "{what}: the projection's dropout zeroes {zero_share}, not p = 0.3");
    let mean = y.mean(Kind::Float).double_value(&[]);
    assert!((mean - 1.0).abs() < 0.02, "{what}: mean output {mean}, dropout must keep the expectation at 1");
    let kept = y.masked_select(&y.ne(0.0));
    let spread = kept.std(true).double_value(&[]);
    assert!(spread > 0.05, "{what}: kept outputs all equal (std {spread}): no dropout on the attention weights");
}

#[test]
fn attention_dropout_sites_faithful() {
    attention_dropout_sites(None);
}

#[test]
fn attention_dropout_sites_fast() {
    attention_dropout_sites(Some(Kernels::Fused));
}

#[test]
fn attention_dropout_sites_fast_portable() {
    attention_dropout_sites(Some(Kernels::Portable));
}

#[test]
fn attention_dropout_sites_fast_gpu_form() {
    attention_dropout_sites(Some(Kernels::Gpu));
}

/// FF3's dropout, on both paths: in training each output is 0 (a share p) or the eval
/// output scaled by 1 / (1 - p).
#[test]
fn feed_forward_dropout_keeps_one_minus_p_and_scales() {
    let _turn = chargpt::rng::lock();
    for kernels in [None, Some(Kernels::Fused), Some(Kernels::Portable), Some(Kernels::Gpu)] {
        tch::manual_seed(6);
        let vs = VarStore::new(Device::Cpu);
        let ff = FeedForward::new(vs.root() / "ff", &dropout_config(), FeedForwardKind::FF3, compute(kernels));
        let x = Tensor::randn([32, 64, 8], (Kind::Float, Device::Cpu));
        let (eval, train) = (ff.forward_t(&x, false), ff.forward_t(&x, true));
        assert!(eval.equal(&ff.forward_t(&x, false)), "no dropout in eval");
        let dropped = train.eq(0.0).logical_and(&eval.ne(0.0)).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        assert!((dropped - 0.3).abs() < 0.02, "{kernels:?}: dropped {dropped}, not p = 0.3");
        let kept = train.ne(0.0);
        let err = (train.masked_select(&kept) - eval.masked_select(&kept) / 0.7).abs().max().double_value(&[]);
        assert!(err < 1e-5, "{kernels:?}: kept outputs are not scaled by 1 / (1 - p) ({err})");
    }
}

#[test]
fn fast_path_trains_to_the_same_loss() {
    let _turn = chargpt::rng::lock();
    let text = common::excerpt_text();
    let data = Dataset::new(&text);
    let opts =
        |implementation: Implementation| RunConfig { steps: 201, eval_steps: 10, implementation, ..common::small_options(201, 3, 1e-2) };
    let run = |o: &RunConfig| {
        let job = ModelJob { kind: ModelKind::V10, opts: o, data: &data, device: Device::Cpu, run: None, stop: None, verbose: false };
        train_model(&job).unwrap().rows.last().unwrap().val_loss
    };
    let (a, b) = (run(&opts(Implementation::Faithful)), run(&opts(Implementation::Fast)));
    assert!((a - b).abs() < 0.15, "faithful val loss {a} vs fast {b}");
}

/// `--precision bf16` on the CPU: the forward pass under bf16 autocast (both paths) gives
/// the fp32 loss to bf16's precision and gradients that point the same way (cosine > 0.99
/// per tensor); outside the autocast scope everything is fp32 again.
#[test]
fn bf16_autocast_on_the_cpu_agrees_with_fp32_to_bf16_precision() {
    let _turn = chargpt::rng::lock();
    let cfg = Config { vocab_size: 30, n_embed: 64, num_heads: 4, block_size: 16, block_layers: 2, dropout: 0.0 };
    for imp in [Implementation::Faithful, Implementation::Fast] {
        for kind in [ModelKind::V5, ModelKind::V8, ModelKind::V10] {
            tch::manual_seed(5);
            let model = Model::with_implementation(kind, &cfg, imp, Device::Cpu).unwrap();
            let idx = Tensor::randint(30, [8, 16], (Kind::Int64, Device::Cpu));
            let targets = Tensor::randint(30, [8, 16], (Kind::Int64, Device::Cpu));
            let grads = |precision: chargpt::precision::Precision| {
                for (_, p) in model.named_parameters() {
                    if p.grad().defined() {
                        let _ = p.grad().zero_();
                    }
                }
                let loss = precision.forward(Device::Cpu, || model.loss(&idx, &targets, true));
                loss.backward();
                // The unused top-level `ff` of V7..V10 has no gradient: zeros.
                let g: Vec<Tensor> = model
                    .named_parameters()
                    .iter()
                    .map(|(_, p)| if p.grad().defined() { p.grad().copy() } else { p.zeros_like() })
                    .collect();
                (loss.double_value(&[]), loss.kind(), g)
            };
            let (l32, k32, g32) = grads(chargpt::precision::Precision::Fp32);
            let (l16, _, g16) = grads(chargpt::precision::Precision::Bf16);
            assert_eq!(k32, Kind::Float);
            assert!((l16 - l32).abs() <= 1e-2 * l32.abs(), "{kind} {imp:?}: loss {l16} under bf16, {l32} in fp32");
            assert_ne!(l16, l32, "{kind} {imp:?}: bf16 autocast changed nothing: was it on?");
            for (((name, _), a), b) in model.named_parameters().iter().zip(&g32).zip(&g16) {
                let cos = (a * b).sum(Kind::Double).double_value(&[]) / (a.norm().double_value(&[]) * b.norm().double_value(&[]) + 1e-30);
                assert!(a.norm().double_value(&[]) == 0.0 || cos > 0.99, "{kind} {imp:?} {name}: gradient cosine {cos}");
            }
            let after = model.forward(&idx, false);
            assert_eq!(after.kind(), Kind::Float, "autocast left on after the scope");
        }
    }
}
