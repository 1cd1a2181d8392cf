//! What a step costs on a GPU, counted on any machine (`csrc/counter.cpp`): the ATen ops
//! dispatched, the ops that launch a kernel (not views or metadata), and the host syncs
//! (a value read to the host, a blocking copy between host and device). On a GPU the
//! step's time is mostly launches and syncs, not FLOPs; these counts are how a change is
//! judged before a GPU is at hand, and tests hold their budgets.

use crate::ffi::{check, LibtorchError};
use std::sync::Mutex;

extern "C" {
    fn chargpt_counter_start() -> i32;
    fn chargpt_counter_stop(out: *mut i64) -> i32;
    fn chargpt_counter_launches_by_name(buf: *mut std::os::raw::c_char, len: i64) -> i64;
}

/// The counts of one piece of work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCount {
    /// The ATen ops chargpt and the autograd engine dispatch, views included (not the ops
    /// they call in their own code).
    pub ops: i64,
    /// The ops that launch a kernel on a GPU.
    pub launches: i64,
    /// Where the host waits for the device.
    pub host_syncs: i64,
}

/// One count at a time: the counters are global, the callbacks per thread.
static COUNTING: Mutex<()> = Mutex::new(());

/// Counts the ops `work` runs on this thread (and on the autograd threads it starts);
/// also returns the launching ops by name ("count name" lines, most first).
pub fn count<T>(work: impl FnOnce() -> T) -> Result<(T, OpCount, String), LibtorchError> {
    let _one = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: no arguments; the C++ side catches every exception.
    check(unsafe { chargpt_counter_start() }.into(), "starting the op counter")?;
    let result = work();
    let mut out = [0i64; 3];
    // SAFETY: `out` has the three slots the C++ side writes.
    check(unsafe { chargpt_counter_stop(out.as_mut_ptr()) }.into(), "stopping the op counter")?;
    Ok((result, OpCount { ops: out[0], launches: out[1], host_syncs: out[2] }, launches_by_name()))
}

fn launches_by_name() -> String {
    // SAFETY: a null buffer of length 0 only asks for the size; the second call writes at
    // most `buf.len()` bytes, NUL-terminated, into a buffer of that length.
    let needed = unsafe { chargpt_counter_launches_by_name(std::ptr::null_mut(), 0) };
    let mut buf = vec![0u8; needed.max(1) as usize];
    unsafe { chargpt_counter_launches_by_name(buf.as_mut_ptr().cast(), buf.len() as i64) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    /// A view launches nothing, an add launches one kernel, a composite launches what it
    /// calls, and reading a value to the host is a sync.
    #[test]
    fn views_are_free_kernels_count_once_and_reads_are_syncs() {
        let x = Tensor::ones([4, 6], (Kind::Float, Device::Cpu));
        let (_, views, _) = count(|| x.view([6, 4]).transpose(0, 1).narrow(0, 1, 2)).unwrap();
        assert_eq!((views.launches, views.host_syncs), (0, 0), "{views:?}");
        assert!(views.ops >= 3, "{views:?}");
        let (_, add, names) = count(|| &x + 1.0).unwrap();
        assert_eq!(add.launches, 1, "{add:?}\n{names}");
        let w = Tensor::ones([5, 6], (Kind::Float, Device::Cpu));
        let b = Tensor::ones([5], (Kind::Float, Device::Cpu));
        let (_, linear, names) = count(|| x.linear(&w, Some(&b))).unwrap();
        assert_eq!(linear.launches, 1, "linear is one addmm:\n{names}");
        let (_, read, _) = count(|| x.sum(Kind::Float).double_value(&[])).unwrap();
        assert_eq!((read.launches, read.host_syncs), (2, 1), "{read:?}");
    }

    /// Only the counting thread's ops count: another thread's work is not in the count.
    #[test]
    fn other_threads_are_not_counted() {
        let x = Tensor::ones([64], (Kind::Float, Device::Cpu));
        let other = std::thread::spawn(|| {
            let y = Tensor::ones([64], (Kind::Float, Device::Cpu));
            for _ in 0..2000 {
                let _ = &y * 2.0;
            }
        });
        let (_, c, _) = count(|| {
            for _ in 0..10 {
                let _ = &x + 1.0;
            }
        })
        .unwrap();
        other.join().unwrap();
        assert_eq!(c.launches, 10, "{c:?}");
    }
}
