//! Parity with PyTorch: every model against the tensors `scripts/dump_reference.py`
//! wrote into reference/ (no Python needed here).

use chargpt::model_kind::ModelKind;
use chargpt::models::Implementation;
use chargpt::models::Model;
use chargpt::parity::{check_model, compare_all, Mismatch, Reference};
use std::path::Path;
use std::sync::MutexGuard;
use tch::Device;

fn rng_turn() -> MutexGuard<'static, ()> {
    chargpt::rng::lock()
}

fn reference() -> Reference {
    Reference::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("reference")).expect("reference/ is committed")
}

#[test]
fn reference_was_made_by_the_pinned_torch() {
    assert_eq!(reference().manifest.torch_version, "2.11.0");
}

macro_rules! parity_test {
    ($name:ident, $kind:expr) => {
        #[test]
        fn $name() {
            let _turn = rng_turn();
            let r = reference();
            let report = check_model(&r, $kind, Device::Cpu, Implementation::Faithful).unwrap_or_else(|e| panic!("{e:#}"));
            assert!(report.tokens_equal && report.grads_checked && report.run_checked);
        }
    };
}

parity_test!(v1_matches_pytorch, ModelKind::V1);
parity_test!(v2_matches_pytorch, ModelKind::V2);
parity_test!(v3_matches_pytorch, ModelKind::V3);
parity_test!(v4_matches_pytorch, ModelKind::V4);
parity_test!(v5_matches_pytorch, ModelKind::V5);
parity_test!(v6_matches_pytorch, ModelKind::V6);
parity_test!(v7_matches_pytorch, ModelKind::V7);
parity_test!(v8_matches_pytorch, ModelKind::V8);
parity_test!(v9_matches_pytorch, ModelKind::V9);
parity_test!(v10_matches_pytorch, ModelKind::V10);

#[test]
fn a_perturbed_weight_is_reported_by_name() {
    let _turn = rng_turn(); // building a model draws from the generator the parity tests replay
    let r = reference();
    let t = r.tensors(ModelKind::V9).unwrap();
    let init = Reference::group(&t, "init");
    let model = Model::new(ModelKind::V9, &r.manifest.config, Device::Cpu).unwrap();
    model.load_state_dict(&init).unwrap();
    let ours = model.state_dict();
    compare_all("v9", &ours, &init, &r.manifest.tolerance).expect("identical weights compare equal");
    let victim = ours.iter().find(|(n, _)| n == "blocks.1.ff.ff.2.weight").unwrap();
    tch::no_grad(|| {
        let _ = victim.1.get(3).get(5).g_add_scalar_(1e-3);
    });
    let err = compare_all("v9", &ours, &init, &r.manifest.tolerance).unwrap_err();
    let mismatch = err.downcast_ref::<Mismatch>().expect("a Mismatch");
    assert_eq!(mismatch.name, "v9 blocks.1.ff.ff.2.weight");
}

/// `chargpt parity --impl fast`: the fast path against the same reference, each tensor
/// within 1e-4 of its own scale (V10's train-mode logits, gradients and run need the
/// reference's dropout masks, which the fast path does not draw).
#[test]
fn the_fast_path_matches_pytorch() {
    let _turn = rng_turn();
    let r = reference();
    for kind in ModelKind::ALL {
        let report = check_model(&r, kind, Device::Cpu, Implementation::Fast).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(report.grads_checked, kind != ModelKind::V10, "{kind}");
        assert_eq!(report.run_checked, kind != ModelKind::V10, "{kind}");
    }
}

/// The bench's best-PyTorch side (scripts/best_pytorch.py: fused QKV, SDPA) computes the
/// blog's V10: its loss at dropout 0 from the same weights is the reference model's (1e-5).
#[test]
fn the_best_pytorch_side_is_the_blog_s_v10() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/best_pytorch.py"))
        .arg("--check")
        .output()
        .expect("the project's Python runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("difference"), "{text}");
}
