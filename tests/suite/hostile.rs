//! Hostile inputs, as a new user or a broken client sends them: devices
//! given as files, a 300 MB line, JSON nested 100,000 deep, damaged models
//! and parts, a 2 GB Content-Length, stalled and concurrent connections.
//! Each must end in a clear error naming the file (or a 4xx answer) and a
//! process, or a server, that is still well. (The fuzz targets search the
//! same ground at random; `fuzz_regressions.rs` replays what they found.)

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::{Served, alpool, save_f32, stderr};

/// Runs `alpool` and expects exit code 1, no panic, and an error of one
/// line that contains each of `needles`.
fn refused(args: &[&str], needles: &[&str]) -> String {
    let o: Output = alpool(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{args:?}: {}",
        &err[..err.len().min(2000)]
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(
        err.len() < 2000,
        "{args:?}: an error of {} bytes",
        err.len()
    );
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
    }
    err
}

/// A pool of 30 rows, 4 features; a workspace over it with two classes.
fn workspace(dir: &Path) -> PathBuf {
    let x: Vec<Vec<f32>> = (0..30)
        .map(|i| {
            (0..4)
                .map(|j| ((i * 7 + j * 3) % 10) as f32 / 10.0)
                .collect()
        })
        .collect();
    save_f32(&dir.join("x.npy"), &x, 4);
    std::fs::write(dir.join("seed.csv"), "id,label\n0,a\n1,b\n2,a\n3,b\n").unwrap();
    let ws = dir.join("ws");
    let o = alpool(&[
        "init",
        ws.to_str().unwrap(),
        "--features",
        dir.join("x.npy").to_str().unwrap(),
        "--classes",
        "a,b",
        "--labels",
        dir.join("seed.csv").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    ws
}

#[test]
fn devices_as_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.npy");
    save_f32(&p, &[vec![0.2, 0.8], vec![0.6, 0.4]], 2);
    let p = p.to_str().unwrap();
    refused(&["select", "/dev/zero", "-k", "1"], &["/dev/zero", "empty"]);
    // No newline for ever: the line bound refuses it before memory fills.
    refused(
        &["select", p, "-k", "1", "--exclude", "/dev/zero"],
        &["/dev/zero", "line 1", "longer than"],
    );
    refused(
        &["select", p, "-k", "1", "--exclude", "/dev/urandom"],
        &["/dev/urandom", "line 1"],
    );
    let ws = workspace(dir.path());
    let ws = ws.to_str().unwrap();
    refused(
        &["ingest", ws, "/dev/zero"],
        &["/dev/zero", "not a regular file"],
    );
    refused(
        &[
            "init",
            dir.path().join("ws2").to_str().unwrap(),
            "--features",
            dir.path().join("x.npy").to_str().unwrap(),
            "--classes",
            "a,b",
            "--ids",
            "/dev/zero",
        ],
        &["/dev/zero", "line 1"],
    );
    assert!(
        !dir.path().join("ws2").exists(),
        "a failed init left a workspace"
    );
}

#[test]
fn a_300_mb_line_gives_a_short_error() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let big = dir.path().join("big.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
    f.write_all(b"id,label\n").unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..300 {
        f.write_all(&chunk).unwrap();
    }
    f.write_all(b",a\n").unwrap();
    drop(f);
    refused(
        &["ingest", ws.to_str().unwrap(), big.to_str().unwrap()],
        &[
            "big.csv",
            "line 2",
            "unknown item id",
            "314572800 bytes in all",
        ],
    );
}

#[test]
fn json_nested_100k_deep_is_refused_without_overflowing_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let deep = dir.path().join("deep.json");
    let depth = 100_000;
    let text = "[".repeat(depth) + &"]".repeat(depth);
    std::fs::write(&deep, &text).unwrap();
    refused(
        &["ingest", ws.to_str().unwrap(), deep.to_str().unwrap()],
        &["deep.json", "line 1", "invalid JSON", "recursion limit"],
    );
    // The same body to the server: a 400, and the server answers after it.
    let server = &start(&ws);
    let (status, body) = request(server, "POST", "/webhook", text.as_bytes(), None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not valid JSON"), "{body}");
    assert_eq!(request(server, "GET", "/health", b"", None).0, 200);
}

#[test]
fn damaged_models_and_parts_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let x: Vec<Vec<f32>> = (0..40)
        .map(|i| vec![(i % 5) as f32, (i % 3) as f32, (i % 2) as f32])
        .collect();
    save_f32(Path::new(&d("x.npy")), &x, 3);
    let y: Vec<i64> = (0..40).map(|i| (i % 2) as i64).collect();
    alpool::pool::npy::save(Path::new(&d("y.npy")), &[40], &y).unwrap();
    let o = alpool(&[
        "train",
        "--features",
        &d("x.npy"),
        "--labels",
        &d("y.npy"),
        "--hidden",
        "4",
        "--epochs",
        "1",
        "--out",
        &d("m.safetensors"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let weights = std::fs::read(d("m.safetensors")).unwrap();
    let predict = |model: &str| {
        vec![
            "predict".to_string(),
            "--model".into(),
            model.into(),
            "--features".into(),
            d("x.npy"),
            "--out".into(),
            d("p.npy"),
        ]
    };
    let run = |args: Vec<String>, needles: &[&str]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, needles)
    };
    // Truncated, every byte flipped in the header's length, all zeros.
    std::fs::write(d("cut.safetensors"), &weights[..weights.len() / 2]).unwrap();
    std::fs::copy(d("m.json"), d("cut.json")).unwrap();
    run(
        predict(&d("cut.safetensors")),
        &["cut.safetensors", "not a usable model"],
    );
    let mut flipped = weights.clone();
    flipped[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(d("flip.safetensors"), &flipped).unwrap();
    std::fs::copy(d("m.json"), d("flip.json")).unwrap();
    run(
        predict(&d("flip.safetensors")),
        &["flip.safetensors", "not a usable model"],
    );
    // A config that claims a trillion inputs: refused before allocating.
    let config = std::fs::read_to_string(d("m.json")).unwrap();
    let huge = config.replacen("\"inputs\":3", "\"inputs\":1000000000000", 1);
    assert_ne!(huge, config, "the config's inputs field: {config}");
    std::fs::write(d("huge.json"), huge).unwrap();
    std::fs::copy(d("m.safetensors"), d("huge.safetensors")).unwrap();
    run(predict(&d("huge.safetensors")), &["huge"]);

    // Parts: a good one, then truncated and with a damaged header.
    let probs: Vec<Vec<f32>> = (0..20)
        .map(|i| vec![i as f32 / 20.0, 1.0 - i as f32 / 20.0])
        .collect();
    save_f32(Path::new(&d("p2.npy")), &probs, 2);
    let o = alpool(&["select", &d("p2.npy"), "-k", "3", "--out", &d("a.alpart")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let part = std::fs::read(d("a.alpart")).unwrap();
    std::fs::write(d("cut.alpart"), &part[..part.len() - 5]).unwrap();
    refused(
        &["merge", &d("cut.alpart"), "-k", "3"],
        &["cut.alpart", "truncated or damaged"],
    );
    let mut bad = part.clone();
    bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(d("bad.alpart"), &bad).unwrap();
    refused(
        &["merge", &d("bad.alpart"), "-k", "3"],
        &["bad.alpart", "header claims"],
    );
    let mut json = part.clone();
    json[12] = b'!';
    std::fs::write(d("json.alpart"), &json).unwrap();
    refused(
        &["merge", &d("json.alpart"), "-k", "3"],
        &["json.alpart", "not JSON"],
    );
}

/// Lifts this process's soft limit on open files (inherited by the server
/// it starts) toward `want`: a machine's default of 1,024 would make a test
/// of 1,000 connections a test of the limit.
fn raise_open_file_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[test]
fn a_burst_of_stalled_connections_strands_no_connection() {
    // tiny_http 0.12.0's thread pool queued a burst's connections for
    // workers already claimed, and a connection queued beyond them waited
    // for a stalled one to end (vendor/README.md). Threads left idle by
    // answered connections, then a burst of stalled ones, then a health
    // check: before the fix, lost in most rounds.
    raise_open_file_limit(4096);
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let server = &start(&ws);
    for round in 0..6 {
        for _ in 0..3 {
            assert!(
                health_within(server, Duration::from_secs(20)),
                "round {round}"
            );
        }
        let stalled = stall(server, 100);
        let t = Instant::now();
        assert!(
            health_within(server, Duration::from_secs(20)),
            "round {round}: no health answer in {:?} behind a burst of stalled connections",
            t.elapsed()
        );
        drop(stalled);
    }
}

/// `n` connections that send a request's head and 5 of its 100 body bytes,
/// then nothing.
fn stall(server: &Served, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"POST /webhook HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"act")
                .unwrap();
            s
        })
        .collect()
}

/// The server the attacks are made on.
fn start(ws: &Path) -> Served {
    Served::start(ws, &["--threads", "4"])
}

/// Whether `GET /health` on a new connection is answered 200 within
/// `wait`.
fn health_within(server: &Served, wait: Duration) -> bool {
    use std::io::Read;
    let mut c = TcpStream::connect(server.addr).unwrap();
    c.set_read_timeout(Some(wait)).unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// One request without a body check: the status and the body.
fn request(
    server: &Served,
    method: &str,
    path: &str,
    body: &[u8],
    length: Option<u64>,
) -> (u16, String) {
    let (status, _, body) = server.request((method, path, "*/*"), body, length);
    (status, body)
}

#[test]
fn the_server_survives_huge_claims_stalled_and_concurrent_connections() {
    raise_open_file_limit(4096);
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let server = &start(&ws);

    // A 2 GB Content-Length, with none of it sent: refused at once.
    let (status, body) = request(server, "POST", "/webhook", b"", Some(2 << 30));
    assert_eq!(status, 413, "{body}");

    // 200 connections that send half a request and stall; meanwhile the
    // server answers others.
    let stalled = stall(server, 200);
    let t = Instant::now();
    assert!(
        health_within(server, Duration::from_secs(20)),
        "no health answer in {:?} behind stalled connections",
        t.elapsed()
    );
    drop(stalled);

    // 1,000 concurrent requests, each answered.
    let answered: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..1000)
            .map(|i| {
                scope.spawn(move || {
                    if i % 2 == 0 {
                        request(server, "GET", "/health", b"", None).0
                    } else {
                        request(server, "POST", "/predict", b"{\"tasks\": []}", None).0
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answered.iter().all(|&s| s == 200), "{:?}", {
        let mut odd: Vec<u16> = answered.iter().copied().filter(|&s| s != 200).collect();
        odd.dedup();
        odd
    });
    assert_eq!(request(server, "GET", "/health", b"", None).0, 200);
}
