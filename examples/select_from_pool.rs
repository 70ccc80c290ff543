//! Using alpool as a library: open a (sharded) pool, select the 10 most
//! informative rows by margin while excluding labeled rows, and print them
//! with where the selection ran and why.
//!
//!     cargo run --release --example select_from_pool

use alpool::bench::synth;
use alpool::{Exclusions, InputForm, Job, Pool, Run, Strategy};

fn main() -> alpool::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    // Two shards of a synthetic 10-class pool; row indices run across them.
    let a = dir.path().join("shard-0.npy");
    let b = dir.path().join("shard-1.npy");
    synth::write_softmax_pool(&a, 50_000, 10, 1)?;
    synth::write_softmax_pool(&b, 50_000, 10, 2)?;
    let pool = Pool::open(&[&a, &b])?;

    let job =
        Job::new(Strategy::Margin, InputForm::probs(), 10).exclude(Exclusions::new(vec![0, 1, 2]));
    let out = alpool::select(&pool, &job, &Run::default())?;
    println!("{}", out.reason);
    println!("rank  row     margin");
    for e in &out.selection.entries {
        println!("{:>4}  {:>6}  {:.6}", e.rank, e.index, e.score);
    }
    Ok(())
}
