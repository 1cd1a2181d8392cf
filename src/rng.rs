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
        let mut buf = vec![0u8; 1 << 14];
        let n = unsafe { chargpt_cpu_rng_get_state(buf.as_mut_ptr(), buf.len() as i64) };
        assert!(n > 0, "reading the CPU generator state failed ({n})");
        buf.truncate(n as usize);
        CpuRngState(buf)
    }

    pub fn restore(&self) {
        self.try_restore().expect("a state read from this libtorch is valid")
    }

    pub fn try_restore(&self) -> Result<()> {
        let rc = unsafe { chargpt_cpu_rng_set_state(self.0.as_ptr(), self.0.len() as i64) };
        if rc != 0 {
            bail!("the saved random-generator state is invalid ({} bytes)", self.0.len());
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
