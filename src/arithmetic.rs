//! What decides a run's numbers besides its seed and settings: the thread count, MKL's
//! reproducibility mode, the CPU and the libtorch. Chosen once when a run starts, recorded
//! in run.json and in each checkpoint's JSON, and kept by every model, seed and resume.
//!
//! Why (docs/REPRODUCIBILITY.md): MKL's matrix multiplies split their sums by thread
//! count, so 1 and 2 threads round differently and training amplifies the last bits. In
//! MKL's strict conditional-numerical-reproducibility mode (`MKL_CBWR=AUTO,STRICT`) the
//! split does not depend on the thread count: chargpt sets it before libtorch's first
//! matrix multiply. The default thread count then follows the machine's load (fast on a
//! shared machine, `crate::cpu_share`) without changing a number; each model checks this
//! before it trains (one forward and backward at 1 and at all threads, bit for bit) and
//! keeps a fixed count where it does not hold.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// MKL's mode: on the CPU the CPU's best code path (`AUTO`), split by the same blocks
/// whatever the thread count (`STRICT`).
pub const MKL_CBWR: &str = "AUTO,STRICT";

/// Sets `MKL_CBWR` unless the user did. Must run before libtorch's first MKL call (MKL
/// reads the variable once): first thing in `main`, and in the PyTorch scripts before
/// `import torch`, so that both sides compute alike.
pub fn use_reproducible_blas() {
    if std::env::var_os("MKL_CBWR").is_none() {
        // SAFETY (of set_var): called at the start of main, before any other thread exists.
        std::env::set_var("MKL_CBWR", MKL_CBWR);
    }
}

/// `--threads`: libtorch's CPU threads for a whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// This many, from start to end (`--threads N`, or `OMP_NUM_THREADS`).
    Fixed(i32),
    /// Follow the machine's load (`crate::cpu_share`), up to the CPUs this process may use:
    /// fewer threads while other processes keep cores busy. The default, where the thread
    /// count does not change the numbers ([`threads_leave_the_numbers_alone`]).
    Auto,
}

/// The most threads `--threads` accepts: far above any core count, far below what
/// OpenMP would choke on.
const MAX_THREADS: i32 = 1024;

impl std::str::FromStr for Threads {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "auto" {
            return Ok(Threads::Auto);
        }
        match s.parse::<i32>() {
            Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(Threads::Fixed(n)),
            _ => bail!("--threads takes a count from 1 to {MAX_THREADS} or `auto`, got {s:?}"),
        }
    }
}

impl std::fmt::Display for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Threads::Fixed(n) => write!(f, "{n}"),
            Threads::Auto => f.write_str("auto"),
        }
    }
}

impl Serialize for Threads {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Threads::Fixed(n) => s.serialize_i32(*n),
            Threads::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Threads {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(i64),
            Word(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Count(n) => n.to_string(),
            Raw::Word(w) => w,
        };
        text.parse().map_err(|e: anyhow::Error| serde::de::Error::custom(e.to_string().replace("--threads", "threads")))
    }
}

impl Threads {
    /// The default: `auto`, or the count `OMP_NUM_THREADS` fixes.
    pub fn default_now() -> Threads {
        match std::env::var_os("OMP_NUM_THREADS") {
            Some(_) => Threads::Fixed(tch::get_num_threads().max(1)),
            None => Threads::Auto,
        }
    }

    /// The count that `0` means for `bench --threads`: the CPUs this process may use
    /// (affinity, quotas and `OMP_NUM_THREADS` honoured).
    pub fn all_available() -> Threads {
        Threads::Fixed(tch::get_num_threads().max(1))
    }

    /// Gives libtorch this count for what follows (`Auto`: all available, then
    /// `cpu_share` lowers it while the machine is busy).
    pub fn apply(self) {
        let n = match self {
            Threads::Fixed(n) => n,
            Threads::Auto => crate::device::available_cpus(),
        };
        if tch::get_num_threads() != n {
            tch::set_num_threads(n);
        }
    }

    /// "2 threads", "up to 2 threads, following the load": for the run header.
    pub fn describe(self) -> String {
        match self {
            Threads::Fixed(n) => crate::device::threads_line(n),
            Threads::Auto if crate::device::available_cpus() == 1 => crate::device::threads_line(1),
            Threads::Auto => format!("up to {} threads, following the load", crate::device::available_cpus()),
        }
    }
}

/// Whether `loss` (a forward pass of `model`, dropout off: no random draws) and the
/// gradients of its backward pass are the same, bit for bit, with one thread and with
/// `threads`. Where they are, the count can follow the load without changing a number.
pub fn threads_leave_the_numbers_alone(model: &crate::models::Model, threads: i32, loss: impl Fn() -> tch::Tensor) -> bool {
    let before = tch::get_num_threads();
    let with = |n: i32| -> Vec<tch::Tensor> {
        tch::set_num_threads(n);
        let params = model.named_parameters();
        for (_, p) in &params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let l = loss();
        l.backward();
        let mut out = vec![l.detach().copy()];
        out.extend(params.iter().map(|(_, p)| p.grad()).filter(|g| g.defined()).map(|g| g.copy()));
        out
    };
    let (one, all) = (with(1), with(threads));
    tch::set_num_threads(before);
    one.len() == all.len() && one.iter().zip(&all).all(|(a, b)| a.equal(b))
}

/// The machine a run computes on, as far as its numbers depend on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The CPU's model name, family and model (the MKL kernels depend on them).
    pub cpu: String,
    /// The version of the libtorch loaded (`rng::libtorch_version`).
    pub libtorch: String,
    /// MKL's reproducibility mode (`MKL_CBWR`) the process ran with.
    pub mkl_cbwr: String,
    /// The GPU of a CUDA run (None on the CPU, and in runs recorded before chargpt kept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<crate::device::Gpu>,
}

impl Machine {
    /// This machine, computing on `device`.
    pub fn this(device: tch::Device) -> Machine {
        Machine {
            cpu: cpu_model(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
            libtorch: crate::rng::libtorch_version(),
            mkl_cbwr: std::env::var("MKL_CBWR").unwrap_or_else(|_| "unset".to_string()),
            gpu: crate::device::Gpu::of(device),
        }
    }

    /// What differs between the machine a run was recorded on and this one, in words
    /// (None: nothing that changes the numbers).
    pub fn differences(&self, now: &Machine) -> Option<String> {
        let mut what = Vec::new();
        for (name, then, here) in
            [("CPU", &self.cpu, &now.cpu), ("libtorch", &self.libtorch, &now.libtorch), ("MKL_CBWR", &self.mkl_cbwr, &now.mkl_cbwr)]
        {
            if then != here {
                what.push(format!("{name} {then:?} then, {here:?} now"));
            }
        }
        let gpu = |m: &Machine| m.gpu.as_ref().map(|g| g.name.clone());
        if let (Some(then), Some(here)) = (gpu(self), gpu(now)) {
            if then != here {
                what.push(format!("GPU {then:?} then, {here:?} now"));
            }
        }
        (!what.is_empty()).then(|| what.join("; "))
    }
}

/// "Intel(R) Xeon(R) Processor (family 6, model 207)" from /proc/cpuinfo's first CPU.
pub fn cpu_model(cpuinfo: &str) -> String {
    let field =
        |key: &str| cpuinfo.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim().to_string()));
    let name = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
    match (field("cpu family"), field("model")) {
        (Some(family), Some(model)) => format!("{name} (family {family}, model {model})"),
        _ => name,
    }
}

/// How one model's numbers were computed: recorded in its checkpoint's JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arithmetic {
    pub device: crate::device::DeviceKind,
    pub implementation: crate::models::Implementation,
    pub precision: crate::precision::Precision,
    pub threads: Threads,
    #[serde(flatten)]
    pub machine: Machine,
}

/// Steps `from_step..to_step` of a model (counted from 0, the last one excluded) and how
/// they were computed: a model's `history`, one stretch per way it was trained, so that
/// a run resumed with another precision or on another machine shows which steps are which.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stretch {
    pub from_step: i64,
    pub to_step: i64,
    #[serde(flatten)]
    pub arithmetic: Arithmetic,
}

/// `history` with steps `from..to` computed by `arithmetic` added: the last stretch
/// grows when it ends at `from` and computed alike, else a stretch is appended.
pub fn extend_history(history: &[Stretch], from: i64, to: i64, arithmetic: &Arithmetic) -> Vec<Stretch> {
    let mut history = history.to_vec();
    if to <= from {
        return history;
    }
    match history.last_mut() {
        Some(last) if last.to_step == from && last.arithmetic == *arithmetic => last.to_step = to,
        _ => history.push(Stretch { from_step: from, to_step: to, arithmetic: arithmetic.clone() }),
    }
    history
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_parse_counts_and_auto_and_refuse_the_rest() {
        assert_eq!("3".parse::<Threads>().unwrap(), Threads::Fixed(3));
        assert_eq!("auto".parse::<Threads>().unwrap(), Threads::Auto);
        for bad in ["0", "-1", "1025", "two", ""] {
            let err = bad.parse::<Threads>().unwrap_err().to_string();
            assert!(err.contains("--threads takes a count from 1 to 1024"), "{bad}: {err}");
        }
    }

    #[test]
    fn threads_round_trip_through_json_as_a_number_or_auto() {
        for t in [Threads::Fixed(2), Threads::Auto] {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Threads>(&json).unwrap(), t, "{json}");
        }
        assert_eq!(serde_json::to_string(&Threads::Fixed(2)).unwrap(), "2");
        let err = serde_json::from_str::<Threads>("0").unwrap_err().to_string();
        assert!(err.contains("threads takes a count") && !err.contains("--threads"), "{err}");
    }

    #[test]
    fn the_cpu_is_named_with_its_family_and_model() {
        let info = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\nmodel name\t: Intel(R) Xeon(R) Processor\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(cpu_model(info), "Intel(R) Xeon(R) Processor (family 6, model 207)");
        assert_eq!(cpu_model(""), std::env::consts::ARCH);
    }

    /// The check compares the loss and every gradient bit for bit: a computation whose
    /// result depends on the thread count is caught, one that does not passes.
    #[test]
    fn the_thread_check_tells_a_count_dependent_computation() {
        let _rng = crate::rng_lock();
        let cfg = crate::layers::Config { vocab_size: 11, n_embed: 16, num_heads: 2, block_size: 8, block_layers: 1, dropout: 0.0 };
        let model = crate::models::Model::new(crate::model_kind::ModelKind::V6, &cfg, tch::Device::Cpu).unwrap();
        let x = tch::Tensor::arange(16, (tch::Kind::Int64, tch::Device::Cpu)).remainder(11).view([2, 8]);
        let y = (&x + 1).remainder(11);
        let before = tch::get_num_threads();
        assert!(threads_leave_the_numbers_alone(&model, 2, || model.loss(&x, &y, false)));
        let scaled = || model.loss(&x, &y, false) * (1.0 + 1e-6 * tch::get_num_threads() as f64);
        assert!(!threads_leave_the_numbers_alone(&model, 2, scaled));
        assert_eq!(tch::get_num_threads(), before, "the caller's count is put back");
    }

    #[test]
    fn a_machine_names_each_difference() {
        let then = Machine { cpu: "A".into(), libtorch: "2.11.0".into(), mkl_cbwr: MKL_CBWR.into(), gpu: None };
        assert_eq!(then.differences(&then.clone()), None);
        let now = Machine { cpu: "B".into(), libtorch: "2.12.0".into(), ..then.clone() };
        let said = then.differences(&now).unwrap();
        assert!(said.contains("CPU \"A\" then, \"B\" now") && said.contains("libtorch \"2.11.0\" then, \"2.12.0\" now"), "{said}");
        assert!(!said.contains("MKL_CBWR"), "{said}");
    }
}
