//! Honest measurement: repeated timings with warm-up and spread, the
//! memory-bandwidth floor of a pool (a plain parallel read of the same
//! mapped bytes), and the peak of extra (anonymous) memory during a run.

pub mod synth;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::pool::Pool;

/// Rows per unit of parallel work in a row-wise select of `pool`: the
/// floor's read pass uses the same, so the two are compared fairly.
pub fn chunk_rows(pool: &Pool) -> u64 {
    crate::backend::RowJob::new(
        crate::score::ScoreSpec::new(crate::query::Strategy::Margin),
        crate::query::InputForm::probs(),
        0,
    )
    .rows_per_chunk(pool)
}

/// Summary of repeated timings.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Each run's wall time.
    pub runs: Vec<Duration>,
}

impl Timing {
    /// Runs `f` `warmup` times untimed, then `runs` times timed.
    pub fn measure<T>(warmup: usize, runs: usize, mut f: impl FnMut() -> T) -> (Timing, T) {
        for _ in 0..warmup {
            std::hint::black_box(f());
        }
        let mut times = Vec::with_capacity(runs.max(1));
        let mut last = None;
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            let out = std::hint::black_box(f());
            times.push(t.elapsed());
            last = Some(out);
        }
        (Timing { runs: times }, last.expect("at least one run"))
    }

    fn secs(&self) -> Vec<f64> {
        self.runs.iter().map(|d| d.as_secs_f64()).collect()
    }
    /// Mean seconds.
    pub fn mean(&self) -> f64 {
        let s = self.secs();
        s.iter().sum::<f64>() / s.len() as f64
    }
    /// Sample standard deviation; `None` for a single run.
    pub fn std_dev(&self) -> Option<f64> {
        let s = self.secs();
        if s.len() < 2 {
            return None;
        }
        let m = self.mean();
        Some((s.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (s.len() - 1) as f64).sqrt())
    }
    /// Fastest run, seconds.
    pub fn min(&self) -> f64 {
        self.secs().into_iter().fold(f64::INFINITY, f64::min)
    }
    /// Slowest run, seconds.
    pub fn max(&self) -> f64 {
        self.secs().into_iter().fold(0.0, f64::max)
    }
    /// Median seconds.
    pub fn median(&self) -> f64 {
        let mut s = self.secs();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        }
    }

    /// `mean ± σ [min … max]` in milliseconds.
    /// A warning when the runs disagree enough to distrust the mean, as
    /// hyperfine warns: a relative spread (σ/mean) above 10%, or a run more
    /// than twice the fastest (an outlier: another tenant, a page-in).
    pub fn noise_warning(&self) -> Option<String> {
        let sd = self.std_dev()?;
        let rel = sd / self.mean();
        if rel > 0.10 {
            return Some(format!(
                "warning: σ/mean = {:.0}%: these runs vary a lot (a busy machine?); rerun with more --runs",
                rel * 100.0
            ));
        }
        (self.max() > 2.0 * self.min()).then(|| {
            format!(
                "warning: outlier: the slowest run ({:.1} ms) took over twice the fastest ({:.1} ms)",
                self.max() * 1e3,
                self.min() * 1e3
            )
        })
    }

    /// `mean ± σ (min … max)` as a table cell.
    pub fn describe(&self) -> String {
        let ms = |x: f64| x * 1e3;
        match self.std_dev() {
            Some(sd) => format!(
                "{:8.1} ms ± {:5.1}  [{:.1} … {:.1}]",
                ms(self.mean()),
                ms(sd),
                ms(self.min()),
                ms(self.max())
            ),
            None => format!("{:8.1} ms (1 run)", ms(self.mean())),
        }
    }
}

/// One parallel pass that reads every data byte of the pool (summing it as
/// u64 words so the reads cannot be optimized away), chunked as the CPU
/// backend chunks: the floor any pool scan is measured against.
pub fn read_pass(pool: &Pool, chunk_rows: u64) -> u64 {
    let c = pool.classes();
    let chunks: Vec<_> = pool.chunks(chunk_rows).collect();
    chunks
        .par_iter()
        .map_init(Vec::new, |buf, &(shard, start, end)| {
            let Ok(bytes) = shard.bytes(start, end, c, buf) else {
                return 0;
            };
            // SAFETY: every bit pattern is a valid u64.
            let (head, words, tail) = unsafe { bytes.align_to::<u64>() };
            let mut acc = [0u64; 4];
            let mut it = words.chunks_exact(4);
            for w in &mut it {
                for j in 0..4 {
                    acc[j] = acc[j].wrapping_add(w[j]);
                }
            }
            let rest: u64 = it.remainder().iter().fold(0, |a, &w| a.wrapping_add(w));
            let edge: u64 = head.iter().chain(tail).map(|&b| b as u64).sum();
            acc.iter()
                .fold(rest.wrapping_add(edge), |a, &w| a.wrapping_add(w))
        })
        .reduce(|| 0, u64::wrapping_add)
}

/// Reads the files sequentially with `read()` in 8 MiB blocks, as
/// `dd bs=8M` does: the single-stream floor (one core, one copy).
pub fn sequential_read(paths: &[&std::path::Path]) -> std::io::Result<u64> {
    use std::io::Read;
    let mut buf = vec![0u8; 8 << 20];
    let mut total = 0u64;
    for p in paths {
        let mut f = std::fs::File::open(p)?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok(total)
}

/// Anonymous (non-file-backed) resident memory of this process in bytes
/// (`RssAnon` of /proc/self/status); `None` off Linux.
pub fn anon_resident() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A global allocator that counts live heap bytes and their peak, so a
/// benchmark can report exactly the extra memory a run needed. The `alpool`
/// binary installs it; it adds two relaxed atomic operations per
/// allocation.
pub struct CountingAlloc;

static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

// SAFETY: defers to the system allocator; only adds bookkeeping.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on unchanged.
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            let live =
                LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed) + layout.size() as u64;
            PEAK.fetch_max(live, Ordering::Relaxed);
            INSTALLED.store(true, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `System` through this allocator.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` through this allocator.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = (new_size - layout.size()) as u64;
                let live = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub((layout.size() - new_size) as u64, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Peak extra memory while `f` runs: heap bytes above the level before it
/// when [`CountingAlloc`] is installed (exact), otherwise the growth of
/// `RssAnon`, sampled every millisecond (coarse: the kernel updates it
/// lazily). Mapped pool files are never counted.
pub fn peak_extra_memory<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    if INSTALLED.load(Ordering::Relaxed) {
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let out = f();
        return (out, Some(PEAK.load(Ordering::Relaxed).saturating_sub(base)));
    }
    peak_anon_growth(f)
}

fn peak_anon_growth<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    let Some(base) = anon_resident() else {
        return (f(), None);
    };
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(base));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(m) = anon_resident() {
                    peak.fetch_max(m, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let out = f();
    if let Some(m) = anon_resident() {
        peak.fetch_max(m, Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    (out, Some(peak.load(Ordering::Relaxed).saturating_sub(base)))
}

/// The CPU's model name, from /proc/cpuinfo where there is one.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Whole-process timings of two commands, alternated run by run so drift
/// in the machine's state hits both alike (as hyperfine's `--warmup`
/// then interleaving would). `before` runs ahead of every run of either
/// (dropping the file from the cache for cold runs, for instance).
pub fn alternate(
    a: &mut std::process::Command,
    b: &mut std::process::Command,
    runs: usize,
    mut before: impl FnMut(),
) -> std::io::Result<(Timing, Timing)> {
    let mut time = |c: &mut std::process::Command| -> std::io::Result<Duration> {
        before();
        let t = std::time::Instant::now();
        let status = c
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        let d = t.elapsed();
        if !status.success() {
            return Err(std::io::Error::other(format!("{c:?} failed: {status}")));
        }
        Ok(d)
    };
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ta.push(time(a)?);
        tb.push(time(b)?);
    }
    Ok((Timing { runs: ta }, Timing { runs: tb }))
}

/// Drops a file's clean pages from the page cache (a cold start without
/// root); the data itself is untouched.
pub fn evict(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    f.sync_all()?;
    // SAFETY: a plain syscall on a descriptor we own.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    Ok(())
}

/// The page cache's size (`Cached` in /proc/meminfo), in bytes.
pub fn page_cache_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("Cached:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? << 10)
}

/// The largest peak RSS of any child process waited for so far, in bytes.
pub fn children_max_rss() -> u64 {
    // SAFETY: rusage is plain data; all zeros is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    u.ru_maxrss as u64 * 1024
}
