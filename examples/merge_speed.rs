//! `alpool merge`'s speed on the case: 1,000 part files of k =
//! 10,000 rows each (shards of 100,000 rows), merged into the global top
//! 10,000. Prints the merge time and the bytes it read.
//!
//! `cargo run --release --example merge_speed [PARTS] [K]`

use std::time::Instant;

use alpool::bench::synth;
use alpool::part::{self, PartHeader};
use alpool::score::Ranked;
use alpool::select::{Selection, TopK};
use alpool::{InputForm, Job, Strategy, report};

fn main() -> alpool::Result<()> {
    let mut args = std::env::args().skip(1);
    let parts: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let k: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let shard_rows = 100_000u64;
    let dir = tempfile::tempdir().map_err(|e| alpool::Error::io("<tempdir>", e))?;
    let job = Job::new(Strategy::Margin, InputForm::probs(), k);
    let noise = synth::uniform(parts as usize * k, 1);
    let mut paths = Vec::new();
    let t = Instant::now();
    for p in 0..parts {
        let mut top = TopK::new(k);
        let first = p * shard_rows;
        for i in 0..k as u64 {
            // Margins in (-1, 0], a shard's k best, in any order.
            top.offer(Ranked {
                priority: -(noise[p as usize * k + i as usize] as f64),
                index: first + i * (shard_rows / k as u64),
            });
        }
        let mut sel = Selection::from_topk(Strategy::Margin, top, shard_rows, 0, 0);
        sel.rows = shard_rows;
        let header = PartHeader::of(&job, first, &sel, k)?;
        let path = dir.path().join(format!("part-{p:04}.alpart"));
        report::save_part(&sel, &header, &path)?;
        paths.push(path);
    }
    let written = t.elapsed().as_secs_f64();
    let bytes: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let mut times = Vec::new();
    let mut sel = None;
    for _ in 0..3 {
        let t = Instant::now();
        sel = Some(part::merge(&paths, k)?);
        times.push(t.elapsed().as_secs_f64());
    }
    let sel = sel.expect("three runs");
    times.sort_by(f64::total_cmp);
    println!(
        "merge of {parts} parts of k = {k} ({:.0} MB, written in {written:.1} s): {:.3} s median of 3 ({:.3} … {:.3}); selected {} rows of {}",
        bytes as f64 / 1e6,
        times[1],
        times[0],
        times[2],
        sel.entries.len(),
        sel.rows
    );
    Ok(())
}
