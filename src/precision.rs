//! Numeric precision: TF32 matmuls on CUDA (on by default there), and bf16 autocast as an
//! option on CUDA and on the CPU. fp32 on the CPU (the default) is the parity reference.

use anyhow::{bail, Result};
use tch::Device;

extern "C" {
    fn chargpt_set_tf32(enabled: i32) -> i32;
    fn chargpt_autocast_bf16(enabled: i32, cuda: i32) -> i32;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Plain fp32 everywhere.
    Fp32,
    /// fp32 storage, TF32 tensor-core matmuls (CUDA only; the default there).
    Tf32,
    /// bf16 autocast of the forward pass (on CUDA on top of TF32; on the CPU its matmuls
    /// run in bf16 through oneDNN, fast on CPUs with AVX512-BF16 or AMX).
    Bf16,
}

impl std::fmt::Display for Precision {
    /// The flag's spelling: fp32, tf32, bf16.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        })
    }
}

impl Precision {
    /// The default for a device: TF32 on CUDA, fp32 on the CPU.
    pub fn default_for(device: Device) -> Self {
        if device.is_cuda() {
            Precision::Tf32
        } else {
            Precision::Fp32
        }
    }

    /// Checks the choice against the device and sets the global TF32 switch.
    pub fn apply(self, device: Device) -> Result<()> {
        if self == Precision::Tf32 && !device.is_cuda() {
            bail!("--precision tf32 is for CUDA; on the CPU use --precision fp32 (or bf16)");
        }
        // SAFETY: sets two flags of libtorch's global context; exceptions are caught in C++.
        let status = unsafe { chargpt_set_tf32((self != Precision::Fp32) as i32) };
        crate::ffi::check(status.into(), "setting TF32")?;
        Ok(())
    }

    /// Runs `f` (a forward pass on `device`) under bf16 autocast when that precision is chosen.
    pub fn forward<T>(self, device: Device, f: impl FnOnce() -> T) -> T {
        if self != Precision::Bf16 {
            return f();
        }
        let _autocast = Bf16Autocast::enter(device.is_cuda());
        f()
    }
}

/// bf16 autocast on this thread while it lives: leaving happens on drop, so a panic in
/// the forward pass does not leave autocast switched on.
struct Bf16Autocast {
    cuda: bool,
}

impl Bf16Autocast {
    fn enter(cuda: bool) -> Self {
        // SAFETY: flips libtorch's thread-local autocast state; exceptions are caught in C++.
        let status = unsafe { chargpt_autocast_bf16(1, cuda as i32) };
        crate::ffi::check(status.into(), "entering bf16 autocast").unwrap_or_else(|e| crate::ffi::raise(e));
        Bf16Autocast { cuda }
    }
}

impl Drop for Bf16Autocast {
    fn drop(&mut self) {
        // SAFETY: as in `enter`. A failure to leave cannot be reported from a drop; it
        // would only leave autocast on for a thread that is failing anyway.
        let _ = unsafe { chargpt_autocast_bf16(0, self.cuda as i32) };
    }
}
