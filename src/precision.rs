//! Numeric precision on CUDA: TF32 matmuls (on by default there) and bf16 autocast as an
//! option. On the CPU everything stays fp32, the parity reference.

use anyhow::{bail, Result};
use tch::Device;

extern "C" {
    fn chargpt_set_tf32(enabled: i32);
    fn chargpt_autocast_bf16(enabled: i32);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Plain fp32 everywhere.
    Fp32,
    /// fp32 storage, TF32 tensor-core matmuls (CUDA only; the default there).
    Tf32,
    /// bf16 autocast of the forward pass on top of TF32 (CUDA only).
    Bf16,
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
        if self != Precision::Fp32 && !device.is_cuda() {
            let name = format!("{self:?}").to_lowercase();
            bail!("--precision {name} is for CUDA; on the CPU use --precision fp32");
        }
        unsafe { chargpt_set_tf32((self != Precision::Fp32) as i32) };
        Ok(())
    }

    /// Runs `f` (a forward pass) under bf16 autocast when that precision is chosen.
    pub fn forward<T>(self, f: impl FnOnce() -> T) -> T {
        if self != Precision::Bf16 {
            return f();
        }
        unsafe { chargpt_autocast_bf16(1) };
        let out = f();
        unsafe { chargpt_autocast_bf16(0) };
        out
    }
}
