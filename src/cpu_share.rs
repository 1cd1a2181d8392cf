//! Threads that give way: while other processes keep some of this process's CPUs busy,
//! libtorch computes with fewer threads, and with all of them again once they are free.
//! With `--threads auto` (the default, `crate::arithmetic::Threads`); a fixed count only
//! watches, so that the progress line can say when the machine is slowing it down.
//!
//! Why (results/PERF.md, "Sharing the CPU"): libtorch's OpenMP threads meet at a barrier
//! after every parallel op. With 2 threads on 2 cores beside one busy process, one of the
//! two is descheduled at any moment and the other spins at the barrier until its time
//! slice ends: a step gets 2-3× slower, on PyTorch too. One thread has no barrier to
//! wait at, so beside a busy process it runs at its own full speed. No OpenMP setting
//! does both: a short spin keeps the time beside a busy process but costs 30% alone
//! (measured with scripts/omp_spin_sweep.py).

use std::time::Instant;

/// How often the load is looked at: long enough for /proc's 100 Hz tick counts to mean
/// something, short next to a training run.
const PERIOD_S: f64 = 0.5;

/// Watches the CPUs this process may use: how many cores the other processes leave free.
pub struct CpuShare {
    max: i32,
    cpus: Vec<usize>,
    last: (Instant, u64, u64),
    ticks_per_s: f64,
}

impl CpuShare {
    /// Watches for a computation of up to `max` threads; None when /proc cannot be read.
    pub fn new(max: i32) -> Option<CpuShare> {
        let cpus = allowed_cpus()?;
        // SAFETY: sysconf reads a system value; it has no preconditions.
        let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let ticks_per_s = if ticks_per_s > 0.0 { ticks_per_s } else { 100.0 };
        let (busy, own) = sample(&cpus)?;
        Some(CpuShare { max: max.max(1), cpus, last: (Instant::now(), busy, own), ticks_per_s })
    }

    /// Call between steps: every half second, the threads the load of the last half
    /// second leaves room for (between 1 and `max`); None in between.
    pub fn tick(&mut self) -> Option<i32> {
        let (then, busy_then, own_then) = self.last;
        let elapsed = then.elapsed().as_secs_f64();
        if elapsed < PERIOD_S {
            return None;
        }
        let (busy, own) = sample(&self.cpus)?;
        self.last = (Instant::now(), busy, own);
        let others = busy.saturating_sub(busy_then).saturating_sub(own.saturating_sub(own_then)) as f64;
        Some(threads_for(self.max, others / self.ticks_per_s / elapsed))
    }

    /// [`Self::tick`], and libtorch computes with that many threads (`--threads auto`).
    pub fn give_way(&mut self) {
        if let Some(threads) = self.tick() {
            if threads != tch::get_num_threads() {
                tch::set_num_threads(threads);
            }
        }
    }
}

/// (busy ticks of `cpus`, this process's CPU ticks).
fn sample(cpus: &[usize]) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let busy = busy_ticks(&stat, cpus)?;
    let own = own_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    Some((busy, own))
}

/// The threads to use when other processes keep `others` cores busy: the cores they leave,
/// rounded, between 1 and `max`.
pub fn threads_for(max: i32, others: f64) -> i32 {
    (max - others.round() as i32).clamp(1, max.max(1))
}

/// Busy ticks (user, nice, system, irq, softirq, steal) of the given CPUs in /proc/stat.
pub fn busy_ticks(stat: &str, cpus: &[usize]) -> Option<u64> {
    let mut total = 0;
    let mut found = 0;
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields.next().and_then(|n| n.strip_prefix("cpu")).and_then(|n| n.parse::<usize>().ok()) else { continue };
        if !cpus.contains(&cpu) {
            continue;
        }
        let v: Vec<u64> = fields.map(|f| f.parse().unwrap_or(0)).collect();
        // user nice system idle iowait irq softirq steal ...
        total += [0, 1, 2, 5, 6, 7].iter().map(|&i| v.get(i).copied().unwrap_or(0)).sum::<u64>();
        found += 1;
    }
    (found > 0).then_some(total)
}

/// This process's CPU ticks (utime + stime, all threads) from /proc/self/stat.
pub fn own_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The CPUs this process may run on (its affinity mask).
fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`,
    // which is zero-initialised and that large; CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some((0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_the_cores_others_leave_between_one_and_all() {
        assert_eq!(threads_for(2, 0.0), 2);
        assert_eq!(threads_for(2, 0.4), 2);
        assert_eq!(threads_for(2, 0.7), 1, "a busy process beside 2 threads gets ~2/3 of a core");
        assert_eq!(threads_for(2, 1.9), 1);
        assert_eq!(threads_for(8, 3.2), 5);
        assert_eq!(threads_for(1, 5.0), 1);
    }

    #[test]
    fn proc_files_are_read_as_documented() {
        let stat = "cpu  10 0 10 500 0 0 0 0 0 0\ncpu0 1 2 3 100 7 4 5 6 0 0\ncpu1 10 0 10 100 0 0 0 1 0 0\nintr 5\n";
        assert_eq!(busy_ticks(stat, &[0]), Some(1 + 2 + 3 + 4 + 5 + 6));
        assert_eq!(busy_ticks(stat, &[0, 1]), Some(21 + 21));
        assert_eq!(busy_ticks(stat, &[5]), None);
        let own = "4242 (chargpt (x) y) R 1 2 3 4 5 6 7 8 9 10 111 222 13 14 15";
        assert_eq!(own_ticks(own), Some(333));
    }

    /// A busy process on this process's CPUs leaves room for fewer threads than all of
    /// them. Needs two CPUs (the development and CI machines have two): it says so, loudly,
    /// where there are fewer.
    #[test]
    fn a_busy_process_takes_a_thread_away() {
        let mut share = CpuShare::new(2).expect("/proc is readable");
        assert!(share.cpus.len() >= 2, "this test needs 2 CPUs, has {:?}", share.cpus);
        let mut busy = std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap();
        // Wait for the busy process to show in /proc, then for a full period of it.
        let start = Instant::now();
        let mut seen = None;
        while start.elapsed().as_secs_f64() < 10.0 && seen.is_none_or(|t| t > 1) {
            std::thread::sleep(std::time::Duration::from_millis(100));
            seen = share.tick().or(seen);
        }
        busy.kill().unwrap();
        busy.wait().unwrap();
        assert_eq!(seen, Some(1), "beside a busy process, room for {seen:?} threads of 2");
    }
}
