//! The generators' states (what `torch.get_rng_state()` and `torch.cuda.get_rng_state()`
//! return), through the C++ shim in `csrc/`: a resumed run must continue the very random
//! streams it left.
//!
//! A run draws from the CPU generator (initialisation, every batch's indices, as the blog
//! does) and, on CUDA, from the device's generator too (dropout masks, the sample's draws).

use anyhow::{bail, Result};
use tch::{Device, Tensor};

extern "C" {
    fn chargpt_rng_get_state(device_index: i64, out: *mut u8, cap: i64) -> i64;
    fn chargpt_rng_set_state(device_index: i64, state: *const u8, len: i64) -> i32;
}

/// libtorch has one global CPU generator, and tests run in parallel threads of one
/// process: every test that draws random numbers (building a model included) holds this
/// lock, so that no test's draws interleave with another's.
pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// One of libtorch's default generators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generator {
    Cpu,
    Cuda(usize),
}

impl Generator {
    /// The generators a run on `device` draws from, CPU first.
    pub fn of_run(device: Device) -> Vec<Generator> {
        match device {
            Device::Cuda(i) => vec![Generator::Cpu, Generator::Cuda(i)],
            _ => vec![Generator::Cpu],
        }
    }

    /// Its tensor's name in a resume file: `rng/cpu`, `rng/cuda` (device 0), `rng/cuda:1`.
    pub fn tensor_name(self) -> String {
        match self {
            Generator::Cpu => "rng/cpu".to_string(),
            Generator::Cuda(0) => "rng/cuda".to_string(),
            Generator::Cuda(i) => format!("rng/cuda:{i}"),
        }
    }

    fn shim_index(self) -> i64 {
        match self {
            Generator::Cpu => -1,
            Generator::Cuda(i) => i as i64,
        }
    }
}

impl std::fmt::Display for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Generator::Cpu => f.write_str("the CPU generator"),
            Generator::Cuda(i) => write!(f, "the generator of CUDA device {i}"),
        }
    }
}

/// A snapshot of one generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RngState {
    pub generator: Generator,
    pub bytes: Vec<u8>,
}

impl RngState {
    pub fn save(generator: Generator) -> Self {
        Self::try_save(generator).unwrap_or_else(|e| crate::ffi::raise(e))
    }

    pub fn try_save(generator: Generator) -> Result<Self, crate::ffi::LibtorchError> {
        let mut buf = vec![0u8; 1 << 14];
        // SAFETY: `buf` is writable for `buf.len()` bytes and the C++ side writes at most
        // that many (it checks the capacity first); exceptions are caught in C++.
        let n = unsafe { chargpt_rng_get_state(generator.shim_index(), buf.as_mut_ptr(), buf.len() as i64) };
        crate::ffi::check(n, &format!("reading the state of {generator}"))?;
        buf.truncate(n as usize);
        Ok(RngState { generator, bytes: buf })
    }

    /// The states of every generator a run on `device` draws from.
    pub fn save_run(device: Device) -> Result<Vec<RngState>, crate::ffi::LibtorchError> {
        Generator::of_run(device).into_iter().map(Self::try_save).collect()
    }

    pub fn restore(&self) {
        self.try_restore().expect("a state read from this libtorch is valid")
    }

    pub fn try_restore(&self) -> Result<()> {
        // SAFETY: `self.bytes` is readable for its length; the C++ side copies it into a
        // fresh tensor and lets libtorch validate it; exceptions are caught in C++.
        let rc = unsafe { chargpt_rng_set_state(self.generator.shim_index(), self.bytes.as_ptr(), self.bytes.len() as i64) };
        if let Err(e) = crate::ffi::check(rc.into(), &format!("restoring the state of {}", self.generator)) {
            bail!("the saved state of {} ({} bytes) is invalid: {e}", self.generator, self.bytes.len());
        }
        Ok(())
    }

    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_slice(&self.bytes)
    }

    pub fn from_tensor(generator: Generator, t: &Tensor) -> Self {
        let t = t.to_kind(tch::Kind::Uint8).flatten(0, -1);
        let mut bytes = vec![0u8; t.numel()];
        t.copy_data(&mut bytes, t.numel());
        RngState { generator, bytes }
    }
}

extern "C" {
    fn chargpt_torch_version(out: *mut std::os::raw::c_char, cap: i64) -> i64;
}

/// The version of the libtorch this process loaded (not the headers it was built with).
pub fn libtorch_version() -> String {
    let mut buf = vec![0u8; 256];
    // SAFETY: `buf` is writable for its length and the C++ side writes at most that many
    // bytes (it checks first); exceptions are caught in C++.
    let n = unsafe { chargpt_torch_version(buf.as_mut_ptr().cast(), buf.len() as i64) };
    if n < 0 {
        return "unknown".to_string();
    }
    buf.truncate(n as usize);
    String::from_utf8_lossy(&buf).into_owned()
}
