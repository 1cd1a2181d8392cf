//! The generator-state shim: restoring a saved state replays the same numbers.
//! (Its own test binary: no other test draws from the global generator meanwhile.)

use chargpt::rng::{Generator, RngState};
use tch::Tensor;

#[test]
fn restoring_the_state_replays_the_same_numbers() {
    tch::manual_seed(7);
    let _ = Tensor::randn([10], tch::kind::FLOAT_CPU);
    let state = RngState::save(Generator::Cpu);
    let a = Tensor::randint(1000, [20], tch::kind::INT64_CPU);
    state.restore();
    let b = Tensor::randint(1000, [20], tch::kind::INT64_CPU);
    assert!(a.equal(&b));
    let c = Tensor::randint(1000, [20], tch::kind::INT64_CPU);
    assert!(!a.equal(&c));
    let round_trip = RngState::from_tensor(Generator::Cpu, &state.to_tensor());
    assert_eq!(round_trip, state);
    assert!(RngState { generator: Generator::Cpu, bytes: vec![1, 2, 3] }.try_restore().is_err(), "a wrong-sized state is refused");
}

#[test]
fn a_cuda_generator_is_read_where_there_is_one_and_refused_in_one_line_where_not() {
    match RngState::try_save(Generator::Cuda(0)) {
        // CUDA's Philox generator: its seed and offset.
        Ok(state) => assert!(tch::Cuda::is_available() && state.bytes.len() == 16, "{state:?}"),
        Err(e) => {
            let err = e.to_string();
            assert!(!tch::Cuda::is_available() && err.contains("no CUDA device") && !err.contains('\n'), "{err}");
        }
    }
}

#[test]
fn the_loaded_libtorch_names_its_version() {
    assert_eq!(chargpt::rng::libtorch_version(), "2.11.0", "the version tch 0.24 binds (Cargo.toml)");
}
