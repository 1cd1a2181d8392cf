//! `--impl fast` computes the same function as the faithful path: same parameters, same
//! logits (to 1e-4 at dropout 0) and gradients, and it trains to the same loss.

mod common;

use chargpt::data::Dataset;
use chargpt::layers::Config;
use chargpt::models::{Model, ModelKind};
use chargpt::train::{train_model, TrainJob, TrainOptions};
use std::sync::Mutex;
use tch::{Device, Kind, Tensor};

static RNG: Mutex<()> = Mutex::new(());

fn config(fast: bool) -> Config {
    Config { vocab_size: 30, n_embed: 32, num_heads: 4, block_size: 16, block_layers: 2, dropout: 0.0, fast }
}

#[test]
fn fast_and_faithful_agree_on_every_model() {
    let _turn = RNG.lock().unwrap_or_else(|e| e.into_inner());
    for kind in ModelKind::ALL {
        tch::manual_seed(11);
        let faithful = Model::new(kind, &config(false), Device::Cpu).unwrap();
        tch::manual_seed(11);
        let fast = Model::new(kind, &config(true), Device::Cpu).unwrap();
        let keys = |m: &Model| m.state_dict().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(keys(&faithful), keys(&fast), "{kind}: same checkpoint keys");
        let idx = Tensor::randint(30, [3, 16], (Kind::Int64, Device::Cpu));
        let targets = Tensor::randint(30, [3, 16], (Kind::Int64, Device::Cpu));
        for train in [false, true] {
            let a = faithful.forward(&idx, train);
            let b = fast.forward(&idx, train);
            let err = (&a - &b).abs().max().double_value(&[]);
            assert!(err <= 1e-4, "{kind} (train={train}): logits differ by {err}");
        }
        // Shorter contexts too (generation uses T < Tmax).
        let short = idx.narrow(1, 0, 5);
        let err = (faithful.forward(&short, false) - fast.forward(&short, false)).abs().max().double_value(&[]);
        assert!(err <= 1e-4, "{kind}: short context differs by {err}");
        faithful.loss(&idx, &targets, false).backward();
        fast.loss(&idx, &targets, false).backward();
        for ((name, p), (_, q)) in faithful.named_parameters().iter().zip(fast.named_parameters()) {
            let (g, h) = (p.grad(), q.grad());
            assert_eq!(g.defined(), h.defined(), "{kind} {name}");
            if g.defined() {
                let err = (&g - &h).abs().max().double_value(&[]);
                assert!(err <= 1e-4, "{kind} {name}: gradients differ by {err}");
            }
        }
    }
}

#[test]
fn fast_path_trains_to_the_same_loss() {
    let _turn = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/reference/excerpt.txt")).unwrap();
    let data = Dataset::new(&text);
    let opts = |implementation: &str| TrainOptions {
        steps: 201,
        eval_steps: 10,
        implementation: implementation.into(),
        ..common::small_options(201, 3, 1e-2)
    };
    let run = |o: &TrainOptions| {
        let job = TrainJob { kind: ModelKind::V10, opts: o, data: &data, device: Device::Cpu, run: None, stop: None, verbose: false };
        train_model(&job).unwrap().rows.last().unwrap().val_loss
    };
    let (a, b) = (run(&opts("faithful")), run(&opts("fast")));
    assert!((a - b).abs() < 0.15, "faithful val loss {a} vs fast {b}");
}
