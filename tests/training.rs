//! The trainer learns, is reproducible, and its checkpoints round-trip.

mod common;
use chargpt::checkpoint::{self, ModelInfo};
use chargpt::config::RunConfig;
use chargpt::data::Dataset;
use chargpt::model_kind::ModelKind;
use chargpt::models::Model;
use chargpt::train::{train_model, ModelJob};
use tch::{Device, Kind, Tensor};

fn text() -> String {
    common::excerpt_text()
}

fn options(steps: i64, seed: i64) -> RunConfig {
    common::small_options(steps, seed, 3e-3)
}

fn train(kind: ModelKind, opts: &RunConfig, data: &Dataset) -> chargpt::train::TrainedModel {
    let job = ModelJob { kind, opts, data, device: Device::Cpu, run: None, stop: None, verbose: false };
    train_model(&job).unwrap()
}

#[test]
fn a_few_hundred_steps_bring_the_loss_well_below_ln_v() {
    let _turn = chargpt::rng::lock();
    let data = Dataset::new(&text());
    let ln_v = (data.tokenizer.len() as f64).ln();
    for kind in [ModelKind::V1, ModelKind::V5, ModelKind::V10] {
        let opts = RunConfig { lr: 1e-2, ..options(301, 1) };
        let t = train(kind, &opts, &data);
        let last = t.rows.last().unwrap();
        assert!(last.train_loss < 0.75 * ln_v, "{kind}: train loss {} vs ln V {ln_v}", last.train_loss);
        assert!(last.val_loss < 0.85 * ln_v, "{kind}: val loss {} vs ln V {ln_v}", last.val_loss);
    }
}

#[test]
fn same_seed_same_losses_other_seed_other_losses() {
    let _turn = chargpt::rng::lock();
    let data = Dataset::new(&text());
    let a = train(ModelKind::V10, &options(30, 5), &data);
    let b = train(ModelKind::V10, &options(30, 5), &data);
    let c = train(ModelKind::V10, &options(30, 6), &data);
    assert_eq!(a.losses, b.losses);
    assert_eq!(a.sample, b.sample);
    assert_ne!(a.losses, c.losses);
}

#[test]
fn checkpoint_save_load_gives_identical_logits() {
    let _turn = chargpt::rng::lock();
    let data = Dataset::new(&text());
    let dir = tempfile::tempdir().unwrap();
    for kind in ModelKind::ALL {
        let t = train(kind, &options(3, 2), &data);
        let path = dir.path().join(format!("{kind}.safetensors"));
        let info = ModelInfo {
            model: kind.to_string(),
            config: t.model.cfg.clone(),
            vocab: data.tokenizer.identity(),
            tokenizer: None,
            steps_done: 3,
            finished: true,
            chargpt_version: "test".into(),
            corpus: None,
            arithmetic: None,
            history: Vec::new(),
            training_sample: None,
        };
        checkpoint::save_model(&path, &t.model, &info).unwrap();
        let (loaded, vocab, read) = checkpoint::load_model(&path, Device::Cpu).unwrap();
        assert_eq!(read, info);
        assert_eq!(vocab.identity(), data.tokenizer.identity());
        let idx = Tensor::randint(data.tokenizer.len() as i64, [2, 16], (Kind::Int64, Device::Cpu));
        assert!(t.model.forward(&idx, false).equal(&loaded.forward(&idx, false)), "{kind}");
        let names = |m: &Model| m.state_dict().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(&t.model), names(&loaded));
    }
}
