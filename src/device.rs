//! Where a run computes: the CLI's choice (`auto` included) and the recorded device.

use anyhow::{bail, Result};
use tch::{Device, Tensor};

/// `--device`: `auto` is CUDA when libtorch sees a GPU, else the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

/// The device a run trains on, as run.json records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

impl DeviceChoice {
    /// The device, or an error that says what to pass instead.
    pub fn select(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => bail!("--device cuda was asked for but libtorch sees no CUDA GPU; use --device cpu (or auto)"),
        }
    }
}

impl DeviceKind {
    pub fn of(device: Device) -> Self {
        if device.is_cuda() {
            DeviceKind::Cuda
        } else {
            DeviceKind::Cpu
        }
    }

    pub fn choice(self) -> DeviceChoice {
        match self {
            DeviceKind::Cpu => DeviceChoice::Cpu,
            DeviceKind::Cuda => DeviceChoice::Cuda,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The CPUs this process may use: `available_parallelism`, which honours CPU affinity and
/// cgroup quotas (1 where it cannot tell).
pub fn available_cpus() -> i32 {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(i32::MAX as usize) as i32
}

/// Lowers libtorch's CPU threads to the CPUs this process may use. libtorch starts one
/// thread per online core; `available_parallelism` also honours CPU affinity (`taskset`)
/// and cgroup CPU quotas (containers), and more threads than CPUs spin against each other.
pub fn fit_threads_to_available_cpus() {
    let available = available_cpus();
    if available < tch::get_num_threads() {
        tch::set_num_threads(available);
    }
}

/// "2 threads" (for `n` threads), and why when they are fewer than the machine's cores:
/// for run headers.
pub fn threads_line(n: i32) -> String {
    let threads = if n == 1 { "1 thread".to_string() } else { format!("{n} threads") };
    let available = available_cpus() as i64;
    // SAFETY: sysconf reads a system value; it has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as i64;
    if n as i64 == available && available < online {
        format!("{threads}: {available} of the {online} cores, by CPU affinity or quota")
    } else {
        threads
    }
}

/// Waits for `device`'s queued kernels (CUDA); a no-op on the CPU. For timings.
pub fn synchronize(device: tch::Device) {
    if let tch::Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// libtorch computes with one CPU thread while this lives, then with as many as before.
/// For generation: a batch of one sequence is a chain of small ops, serial work that a
/// second thread only spins beside, taking a core from whatever else runs (README,
/// "Sharing the CPU").
pub struct OneThread {
    before: i32,
}

impl OneThread {
    pub fn enter() -> Self {
        let before = tch::get_num_threads();
        if before != 1 {
            tch::set_num_threads(1);
        }
        OneThread { before }
    }
}

impl Drop for OneThread {
    fn drop(&mut self) {
        if self.before != 1 {
            tch::set_num_threads(self.before);
        }
    }
}

extern "C" {
    fn chargpt_cuda_device_info(device: i64, buf: *mut std::os::raw::c_char, len: i64) -> i32;
}

/// A GPU as libtorch reports it: what a GPU run's numbers and speed depend on, as a CPU
/// run's depend on its CPU and thread count.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gpu {
    pub name: String,
    pub memory_mib: i64,
    /// Compute capability, e.g. "9.0".
    pub capability: String,
    /// The CUDA runtime libtorch was built with, e.g. "13.0".
    pub cuda_runtime: String,
    /// cuDNN's version number (0: none).
    pub cudnn: i64,
}

impl Gpu {
    /// The GPU behind `device` (None on the CPU, or where libtorch cannot say).
    pub fn of(device: Device) -> Option<Gpu> {
        let Device::Cuda(index) = device else { return None };
        let mut buf = vec![0u8; 512];
        // SAFETY: the C++ side writes at most `len` bytes, NUL-terminated, into `buf`, and
        // catches every exception.
        let rc = unsafe { chargpt_cuda_device_info(index as i64, buf.as_mut_ptr().cast(), buf.len() as i64) };
        if rc != 0 {
            return None;
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let text = String::from_utf8_lossy(&buf[..end]).into_owned();
        let [name, bytes, capability, runtime, cudnn] = text.split('|').collect::<Vec<_>>()[..] else { return None };
        Some(Gpu {
            name: name.to_string(),
            memory_mib: bytes.parse::<i64>().ok()? >> 20,
            capability: capability.to_string(),
            cuda_runtime: runtime.to_string(),
            cudnn: cudnn.parse().ok()?,
        })
    }
}

extern "C" {
    fn chargpt_pin_memory(x: *const torch_sys::C_tensor) -> *mut torch_sys::C_tensor;
}

/// `x` copied into page-locked host memory, from which a copy to the GPU need not wait;
/// None where there is none to be had (no CUDA).
pub fn pinned(x: &Tensor) -> Option<Tensor> {
    // SAFETY: `x` is a live tensor borrowed for the call; the C++ side catches every
    // exception and returns a new owned tensor or null.
    let ptr = unsafe { chargpt_pin_memory(x.as_ptr()) };
    // SAFETY: a non-null pointer is a new at::Tensor that the returned Tensor now owns.
    (!ptr.is_null()).then(|| unsafe { Tensor::from_ptr(ptr) })
}
