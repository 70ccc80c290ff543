//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use alpool::pool::npy;

/// Writes an f32 N x C pool.
pub fn save_f32(path: &Path, rows: &[Vec<f32>], classes: usize) {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    npy::save(path, &[rows.len(), classes], &flat).unwrap();
}

/// Writes an f16 N x C pool.
pub fn save_f16(path: &Path, rows: &[Vec<f32>], classes: usize) {
    let flat: Vec<u16> = rows
        .iter()
        .flatten()
        .map(|&x| half::f16::from_f32(x).to_bits())
        .collect();
    let mut bytes = npy::encode_header(npy::DType::F16, &[rows.len(), classes]);
    bytes.extend(flat.iter().flat_map(|h| h.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// Writes a file with a hand-written header dict and raw data bytes.
pub fn save_raw(path: &Path, dict: &str, data: &[u8]) {
    let mut header = dict.to_string();
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    while 10 + header.len() + 1 < total {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn alpool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alpool"))
        .args(args)
        .output()
        .expect("run alpool")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Files in `dir` (to check that a failed run left nothing behind).
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// A folder of ../shared/data, or None (loudly) when ../shared is absent;
/// in CI (ALPOOL_REQUIRE_SHARED=1) its absence fails the test.
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name);
    if dir.join("X.npy").exists() {
        return Some(dir);
    }
    if std::env::var("ALPOOL_REQUIRE_SHARED").is_ok_and(|v| v == "1") {
        panic!("ALPOOL_REQUIRE_SHARED=1 but {} is missing", dir.display());
    }
    eprintln!(
        "\n!!!!!! SKIPPING: {} not found (../shared is absent) !!!!!!\n",
        dir.display()
    );
    None
}

/// The GPU for a parity test: in CI (ALPOOL_REQUIRE_GPU=1) a missing
/// adapter fails; elsewhere the test skips loudly.
#[allow(dead_code)]
pub fn gpu() -> Option<alpool::backend::gpu::Gpu> {
    match alpool::backend::gpu::Gpu::new(None) {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("ALPOOL_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("ALPOOL_REQUIRE_GPU=1 but no usable GPU adapter: {e}");
            }
            eprintln!(
                "\n!!!!!! SKIPPING GPU TEST: {e} (set ALPOOL_REQUIRE_GPU=1 to fail instead) !!!!!!\n"
            );
            None
        }
    }
}

/// The door on the CPU: the selection alone.
pub fn select_cpu<'a>(
    inputs: impl Into<alpool::Inputs<'a>>,
    job: &alpool::Job,
) -> alpool::Result<alpool::Selection> {
    alpool::select(inputs, job, &alpool::Run::on(alpool::Device::Cpu)).map(|o| o.selection)
}

/// The door on an opened GPU: the selection and the GPU's phases.
pub fn select_gpu<'a>(
    gpu: &alpool::backend::gpu::Gpu,
    inputs: impl Into<alpool::Inputs<'a>>,
    job: &alpool::Job,
) -> alpool::Result<(alpool::Selection, alpool::backend::Phases)> {
    let run = alpool::Run {
        device: alpool::Device::Gpu,
        adapter: None,
        progress: &alpool::Silent,
        gpu: Some(gpu),
    };
    let out = alpool::select(inputs, job, &run)?;
    Ok((out.selection, out.gpu_phases.unwrap_or_default()))
}

/// The documented canonical probabilities of a stored float32 row, written
/// here from the definition (not the library's code): widened as stored,
/// or divided by their f64 sum (renormalize), or a stable softmax of
/// `z / T` in f64.
pub fn reference_probs(row: &[f32], form: alpool::InputForm) -> Vec<f64> {
    match form {
        alpool::InputForm::Probs { renormalize, .. } => {
            let s: f64 = row.iter().map(|&x| x as f64).sum();
            row.iter()
                .map(|&x| if renormalize { x as f64 / s } else { x as f64 })
                .collect()
        }
        alpool::InputForm::Logits { temperature } => {
            let m = row
                .iter()
                .map(|&x| x as f64)
                .fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = row
                .iter()
                .map(|&z| ((z as f64 - m) / temperature).exp())
                .collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|x| x / s).collect()
        }
        alpool::InputForm::MultiLabel { logits: false } | alpool::InputForm::Regression(_) => {
            row.iter().map(|&x| x as f64).collect()
        }
        // σ(z) as written, for the moderate logits the tests draw.
        alpool::InputForm::MultiLabel { logits: true } => row
            .iter()
            .map(|&z| 1.0 / (1.0 + (-(z as f64)).exp()))
            .collect(),
    }
}

/// `alpool serve WS --port 0 EXTRA…` started, and the address it printed
/// once it accepts requests. The caller stops it by its process id.
#[allow(dead_code)]
pub fn serve(ws: &Path, extra: &[&str]) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_alpool"))
        .args(["serve", ws.to_str().unwrap(), "--port", "0"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

/// `alpool serve` on a port of its own, stopped by its process id on drop.
#[allow(dead_code)]
pub struct Served {
    child: std::process::Child,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

#[allow(dead_code)]
impl Served {
    pub fn start(ws: &Path, extra: &[&str]) -> Served {
        let (child, addr) = serve(ws, extra);
        Served { child, addr }
    }

    /// One request on a connection of its own, with `accept` as its Accept
    /// header and `length` overriding its Content-Length: the status, the
    /// Content-Type and the body.
    pub fn request(
        &self,
        (method, path, accept): (&str, &str, &str),
        body: &[u8],
        length: Option<u64>,
    ) -> (u16, String, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(120)))
            .unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            length.unwrap_or(body.len() as u64)
        );
        s.write_all(head.as_bytes()).unwrap();
        // A server that answers before reading everything may close early.
        let _ = s.write_all(body);
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {answer:?}"));
        let kind = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Type: "))
            .unwrap_or("")
            .to_string();
        (status, kind, body.to_string())
    }

    /// POST `path` with a JSON body: the status and the JSON answer.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let text = body.to_string();
        let (status, _, answer) = self.request(("POST", path, "*/*"), text.as_bytes(), None);
        let json = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
        (status, json)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The error of `alpool serve WS --port 0 EXTRA…`, which must refuse to
/// start: a server that starts instead is stopped by its process id after
/// 60 s and fails the test, rather than hanging it.
#[allow(dead_code)]
pub fn serve_refused(ws: &str, extra: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_alpool"))
        .args(["serve", ws, "--port", "0"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("alpool serve {ws} {extra:?} started instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success(), "serve {extra:?} exited 0");
    stderr(&o)
}
