//! The CPU generator's state (what `torch.get_rng_state()` returns), through the C++
//! shim in `csrc/`: a resumed run must continue the very random stream it left.

use anyhow::{bail, Result};
use tch::Tensor;

extern "C" {
    fn chargpt_cpu_rng_get_state(out: *mut u8, cap: i64) -> i64;
    fn chargpt_cpu_rng_set_state(state: *const u8, len: i64) -> i32;
}

/// A snapshot of libtorch's default CPU generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuRngState(pub Vec<u8>);

impl CpuRngState {
    pub fn save() -> Self {
        Self::try_save().unwrap_or_else(|e| crate::ffi::raise(e))
    }

    pub fn try_save() -> Result<Self, crate::ffi::LibtorchError> {
        let mut buf = vec![0u8; 1 << 14];
        // SAFETY: `buf` is writable for `buf.len()` bytes and the C++ side writes at most
        // that many (it checks the capacity first); exceptions are caught in C++.
        let n = unsafe { chargpt_cpu_rng_get_state(buf.as_mut_ptr(), buf.len() as i64) };
        crate::ffi::check(n, "reading the CPU generator state")?;
        buf.truncate(n as usize);
        Ok(CpuRngState(buf))
    }

    pub fn restore(&self) {
        self.try_restore().expect("a state read from this libtorch is valid")
    }

    pub fn try_restore(&self) -> Result<()> {
        // SAFETY: `self.0` is readable for its length; the C++ side copies it into a fresh
        // tensor and lets libtorch validate it; exceptions are caught in C++.
        let rc = unsafe { chargpt_cpu_rng_set_state(self.0.as_ptr(), self.0.len() as i64) };
        if let Err(e) = crate::ffi::check(rc.into(), "restoring the CPU generator state") {
            bail!("the saved random-generator state ({} bytes) is invalid: {e}", self.0.len());
        }
        Ok(())
    }

    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_slice(&self.0)
    }

    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        let t = t.to_kind(tch::Kind::Uint8).flatten(0, -1);
        let mut buf = vec![0u8; t.numel()];
        t.copy_data(&mut buf, t.numel());
        Ok(CpuRngState(buf))
    }
}
