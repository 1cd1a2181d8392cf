//! What decides a run's numbers besides its seed and settings: the thread count, MKL's
//! reproducibility mode, the CPU and the libtorch. Chosen once when a run starts, recorded
//! in run.json and in each checkpoint's JSON, and kept by every model, seed and resume.
//!
//! Why (docs/REPRODUCIBILITY.md): MKL's matrix multiplies split their sums by thread
//! count, so 1 and 2 threads round differently and training amplifies the last bits. In
//! MKL's strict conditional-numerical-reproducibility mode (`MKL_CBWR=AUTO,STRICT`) the
//! split does not depend on the thread count; chargpt sets it before libtorch's first
//! matrix multiply, and the thread count stays fixed besides, so that a run is the same
//! whatever else runs on the machine.

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
    /// This many, from start to end (the default: the CPUs this process may use at start).
    Fixed(i32),
    /// Follow the machine's load (`crate::cpu_share`): fewer threads while other processes
    /// keep cores busy. The numbers then depend on the load wherever the thread count
    /// changes them, so the run is not reproducible bit for bit there.
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
    /// The default: every CPU this process may use now (affinity, quotas and
    /// `OMP_NUM_THREADS` honoured, as `device::fit_threads_to_available_cpus` left them).
    pub fn default_now() -> Threads {
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

    /// "2 threads", "threads following the load (--threads auto: not reproducible bit for
    /// bit)": for the run header.
    pub fn describe(self) -> String {
        match self {
            Threads::Fixed(_) => crate::device::threads_line(),
            Threads::Auto => format!(
                "up to {} threads, following the load (--threads auto: the numbers may depend on what else runs)",
                crate::device::available_cpus()
            ),
        }
    }
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
}

impl Machine {
    pub fn this() -> Machine {
        Machine {
            cpu: cpu_model(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
            libtorch: crate::rng::libtorch_version(),
            mkl_cbwr: std::env::var("MKL_CBWR").unwrap_or_else(|_| "unset".to_string()),
        }
    }

    /// What differs between the machine a run was recorded on and this one, in words
    /// (None: nothing that changes the numbers).
    pub fn differences(&self, now: &Machine) -> Option<String> {
        let mut what = Vec::new();
        for (name, then, here) in [
            ("CPU", &self.cpu, &now.cpu),
            ("libtorch", &self.libtorch, &now.libtorch),
            ("MKL_CBWR", &self.mkl_cbwr, &now.mkl_cbwr),
        ] {
            if then != here {
                what.push(format!("{name} {then:?} then, {here:?} now"));
            }
        }
        (!what.is_empty()).then(|| what.join("; "))
    }
}

/// "Intel(R) Xeon(R) Processor (family 6, model 207)" from /proc/cpuinfo's first CPU.
pub fn cpu_model(cpuinfo: &str) -> String {
    let field = |key: &str| {
        cpuinfo
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim().to_string()))
    };
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

    #[test]
    fn a_machine_names_each_difference() {
        let then = Machine { cpu: "A".into(), libtorch: "2.11.0".into(), mkl_cbwr: MKL_CBWR.into() };
        assert_eq!(then.differences(&then.clone()), None);
        let now = Machine { cpu: "B".into(), libtorch: "2.12.0".into(), ..then.clone() };
        let said = then.differences(&now).unwrap();
        assert!(said.contains("CPU \"A\" then, \"B\" now") && said.contains("libtorch \"2.11.0\" then, \"2.12.0\" now"), "{said}");
        assert!(!said.contains("MKL_CBWR"), "{said}");
    }
}
