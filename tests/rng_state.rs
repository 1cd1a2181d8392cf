//! The generator-state shim: restoring a saved state replays the same numbers.
//! (Its own test binary: no other test draws from the global generator meanwhile.)

use chargpt::rng::CpuRngState;
use tch::Tensor;

#[test]
fn restoring_the_state_replays_the_same_numbers() {
    tch::manual_seed(7);
    let _ = Tensor::randn([10], tch::kind::FLOAT_CPU);
    let state = CpuRngState::save();
    let a = Tensor::randint(1000, [20], tch::kind::INT64_CPU);
    state.restore();
    let b = Tensor::randint(1000, [20], tch::kind::INT64_CPU);
    assert!(a.equal(&b));
    let c = Tensor::randint(1000, [20], tch::kind::INT64_CPU);
    assert!(!a.equal(&c));
    let round_trip = CpuRngState::from_tensor(&state.to_tensor()).unwrap();
    assert_eq!(round_trip, state);
    assert!(CpuRngState(vec![1, 2, 3]).try_restore().is_err(), "a wrong-sized state is refused");
}
