//! Every fuzz seed and every input a fuzzer ever made fail, replayed
//! through the same entry points (`alpool::fuzz`) on each test run:
//! `fuzz/seeds/T/*` and `fuzz/regressions/T/*` for target T. Built with
//! the `fuzz` feature, as `scripts/test.sh` builds the suite.

#[cfg(feature = "fuzz")]
use std::path::Path;

#[cfg(feature = "fuzz")]
#[test]
fn every_fuzz_seed_and_finding_is_handled() {
    type Target = fn(&[u8]);
    let targets: [(&str, Target); 9] = [
        ("npy", alpool::fuzz::npy),
        ("labels", alpool::fuzz::labels),
        ("init", alpool::fuzz::init),
        ("model", alpool::fuzz::model),
        ("part", alpool::fuzz::part),
        ("exclusions", alpool::fuzz::exclusions),
        ("server", alpool::fuzz::server),
        ("exact", alpool::fuzz::exact),
        ("coldstart", alpool::fuzz::coldstart),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for (name, target) in targets {
        let mut seeds = 0;
        for kind in ["seeds", "regressions"] {
            let Ok(dir) = std::fs::read_dir(root.join(kind).join(name)) else {
                continue;
            };
            for entry in dir {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let r = std::panic::catch_unwind(|| target(&data));
                assert!(r.is_ok(), "{} fails its target", path.display());
                replayed += 1;
                seeds += usize::from(kind == "seeds");
            }
        }
        assert!(
            seeds > 0,
            "no seeds for the {name} target in fuzz/seeds/{name}"
        );
    }
    assert!(replayed >= 30, "only {replayed} inputs replayed");
}

#[cfg(not(feature = "fuzz"))]
#[test]
fn every_fuzz_seed_and_finding_is_handled() {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI builds the suite with --features fuzz (scripts/test.sh)"
    );
    eprintln!("!!!!!! SKIPPING the fuzz regressions: build with --features fuzz !!!!!!");
}
