//! `alpool serve`: a Label Studio ML backend over a workspace.
//!
//! It speaks the protocol of `label-studio-ml-backend`: `GET /health` (and
//! `/`), `POST /setup`, `POST /predict`, `POST /webhook` and `POST /train`.
//! Label Studio asks `/predict` for predictions with scores (oriented so its
//! ascending order serves the most informative task first, as in the files
//! `next` exports) and sends every annotation to `/webhook`, where it is
//! validated and applied exactly as `alpool ingest` applies a file: one
//! SQLite transaction per webhook, answered only after it commits, so a
//! server killed at any moment has stored every annotation it acknowledged
//! and nothing half-applied. After every `retrain_every` new labels the
//! model is retrained in the background (a round of `next`, its batch
//! written to `batches/next.json` in the workspace); predictions use the
//! newest model.
//!
//! Bad requests get a 4xx answer with a JSON `{"error": reason}`; the
//! server never panics on a request. It binds 127.0.0.1 unless told
//! otherwise and, with a token, accepts only requests that carry it
//! (`Authorization: Token T`, `Bearer T`, or HTTP basic auth with T as the
//! password, which is how Label Studio authenticates to ML backends).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::export::{self, BatchInfo};
use super::ingest::{Expect, read_webhook};
use super::live::{Live, LiveOptions, PlanOptions, Pushed};
use super::round::{NextOptions, next_round};
use super::vocab::Vocab;
use super::{IngestOptions, Workspace};
use crate::Device;
use crate::backend::Silent;
use crate::error::{Error, Result};
use crate::features::{FeaturePool, Members};
use crate::job::Job;
use crate::learner::{Mlp, MlpConfig};
use crate::pool::Pool;
#[cfg(feature = "fuzz")]
use crate::query::Strategy;
use crate::query::{Query, Stochastic, Use};
use crate::score::random_priority;
use crate::{Inputs, score};

/// How `alpool serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Address to bind (`127.0.0.1:9090`).
    pub addr: String,
    /// Required from every request when set.
    pub token: Option<String>,
    /// The strategy behind the prediction scores: one that scores each
    /// item on its own (row-wise, disagreement, or the workspace kind's:
    /// multi-label, or a regression workspace's `std`).
    pub strategy: Query,
    /// T MC-dropout passes of the newest model per item, for the
    /// strategies that read samples (bald, …, and a regression's `std`):
    /// the masks `next` draws for the round, so a task's score is the one
    /// its round gave it.
    pub mc_samples: usize,
    /// Retrain after this many new labels (0: only on `/train`).
    pub retrain_every: usize,
    /// Batch size of the rounds retraining runs.
    pub k: usize,
    /// Draw each retrain's batch instead of taking its k best, as `next
    /// --stochastic` does (the same draw for the same labels and seed). A
    /// live queue is then the draw's order, the batch first; `/predict`
    /// still answers each task's plain score.
    pub stochastic: Option<Stochastic>,
    /// How annotations become labels.
    pub ingest: IngestOptions,
    /// The model retrained on them.
    pub learner: MlpConfig,
    /// Seeds the random strategy.
    pub seed: u64,
    /// Worker threads answering requests.
    pub threads: usize,
    /// How long a request waits for the workspace's lock.
    pub wait: Duration,
    /// The largest request body accepted.
    pub max_body: usize,
    /// Select items annotators skipped again.
    pub reselect_skipped: bool,
    /// A Label Studio project kept re-ranked ([`super::live`]).
    pub live: Option<LiveOptions>,
    /// How Label Studio reaches this server (default: the bound address).
    pub public_url: Option<String>,
}

impl ServeOptions {
    /// The round a retrain runs: its batch goes to `batches/next.json` in
    /// the workspace `dir`.
    fn next_options(&self, dir: &Path) -> NextOptions {
        NextOptions {
            k: self.k,
            strategy: self.strategy,
            seed: self.seed,
            learner: self.learner.clone(),
            device: Device::Cpu,
            out: dir.join("batches").join("next.json"),
            reselect_skipped: self.reselect_skipped,
            mc_samples: self.mc_samples,
            committee: 0,
            stochastic: self.stochastic,
        }
    }
}

struct Shared {
    dir: PathBuf,
    opts: ServeOptions,
    vocab: Vocab,
    token: String,
    features: FeaturePool,
    /// The newest model and its file, loaded on first use.
    model: Mutex<Option<(String, Arc<Mlp>)>>,
    training: AtomicBool,
    /// A retrain asked for while one ran (forced, or on new labels): the
    /// running one checks again once done, so no label's trigger is lost.
    asked: AtomicBool,
    forced: AtomicBool,
    /// The live queue, when serving a project live.
    live: Option<Queue>,
}

/// The live queue and the bell that wakes its pusher after a training.
struct Queue {
    live: Live,
    rung: Mutex<u64>,
    bell: Condvar,
}

impl Queue {
    fn ring(&self) {
        *self.rung.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.bell.notify_all();
    }

    /// Waits for the bell (rung since `seen`) or `timeout`; returns the
    /// count now.
    fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let guard = self.rung.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .bell
            .wait_timeout_while(guard, timeout, |n| *n == seen)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

/// An HTTP answer: status and JSON body; a bare JSON string is an HTML page
/// (the report), sent as text/html.
struct Reply(u16, Value);

fn bad(status: u16, reason: impl Into<String>) -> Reply {
    Reply(status, json!({ "error": reason.into() }))
}

/// Serves until the process is stopped. `ready` is called with the bound
/// address once the server accepts requests.
pub fn serve(
    dir: &Path,
    opts: ServeOptions,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<()> {
    let mut ws = Workspace::open(dir, opts.wait)?;
    let vocab = ws.vocab()?;
    super::round::check_kind(&vocab, opts.strategy)?;
    if !opts.strategy.scores_rows() {
        let serves = match vocab.numeric() {
            true => "std (with --mc-samples T of a model trained with --dropout P) or random",
            false => {
                "a row-wise strategy (margin, entropy, …), a disagreement one with --mc-samples T, or a multi-label one"
            }
        };
        return Err(Error::Config(format!(
            "alpool serve orders every task by its own score: {} picks batches; serve with {serves}",
            opts.strategy
        )));
    }
    if opts.strategy.needs().samples == Use::Required && opts.mc_samples < 2 {
        return Err(Error::Config(format!(
            "{} reads T samples of each item: serve with --mc-samples T (T ≥ 2), and each round's model, trained with --dropout P, makes them by MC dropout",
            opts.strategy
        )));
    }
    let round = opts.next_options(dir);
    super::round::check_samples(&round)?;
    round.method().check().map_err(Error::Config)?;
    // Every check of the project runs before the server listens: a refusal
    // leaves nothing behind.
    let live = match &opts.live {
        Some(l) => Some(Live::connect(&mut ws, l.clone(), &|m| eprintln!("{m}"))?),
        None => None,
    };
    let shared = Arc::new(Shared {
        dir: dir.into(),
        vocab: ws.vocab()?,
        token: ws.token()?,
        features: FeaturePool::open(&[PathBuf::from(ws.meta("features")?)])?,
        model: Mutex::new(None),
        training: AtomicBool::new(false),
        asked: AtomicBool::new(false),
        forced: AtomicBool::new(false),
        live: live.map(|live| Queue {
            live,
            rung: Mutex::new(0),
            bell: Condvar::new(),
        }),
        opts,
    });
    drop(ws);
    let cannot = |e: &dyn std::fmt::Display| {
        Error::Config(format!("cannot listen on {}: {e}", shared.opts.addr))
    };
    let listener = std::net::TcpListener::bind(&shared.opts.addr).map_err(|e| cannot(&e))?;
    deepen_backlog(&listener);
    let server = tiny_http::Server::from_listener(listener, None).map_err(|e| cannot(&e))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| Error::Config("the server has no IP address".into()))?;
    let server = Arc::new(server);
    let workers: Vec<_> = (0..shared.opts.threads.max(1))
        .map(|_| {
            let (server, shared) = (server.clone(), shared.clone());
            std::thread::spawn(move || worker(&server, &shared))
        })
        .collect();
    if shared.live.is_some() {
        go_live(&shared, addr)?;
    }
    ready(addr);
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

/// Connections the kernel queues for accept. The standard library listens
/// with 128; a burst beyond it while the accept thread waits for a core
/// (a labeling tool's parallel requests on a busy machine) was dropped or
/// reset by the kernel, so the server asks for more. Linux caps it at
/// `net.core.somaxconn`.
const BACKLOG: libc::c_int = 4096;

/// Raises a listening socket's queue to [`BACKLOG`]: a second `listen` on a
/// listening socket only changes its backlog. Best effort: the default
/// stays if the call fails.
fn deepen_backlog(listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor this process owns; it reads
    // no memory of ours.
    unsafe {
        libc::listen(listener.as_raw_fd(), BACKLOG);
    }
}

fn worker(server: &tiny_http::Server, shared: &Arc<Shared>) {
    // Each worker has its own connection: SQLite serializes the writers,
    // and a reader never waits for a writer (WAL).
    let mut ws = Workspace::open(&shared.dir, shared.opts.wait).ok();
    loop {
        let Ok(mut req) = server.recv() else { return };
        let reply = match ws.as_mut() {
            Some(ws) => {
                let (method, url) = (req.method().as_str().to_string(), req.url().to_string());
                let authorization: Vec<String> = req
                    .headers()
                    .iter()
                    .filter(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.as_str().to_string())
                    .collect();
                let body_length = req.body_length();
                let wants_html = req
                    .headers()
                    .iter()
                    .any(|h| h.field.equiv("Accept") && h.value.as_str().contains("text/html"));
                let incoming = Incoming {
                    method: &method,
                    url: &url,
                    authorization: &authorization,
                    wants_html,
                    body_length,
                    body: req.as_reader(),
                };
                handle(incoming, ws, shared)
            }
            None => bad(503, "the workspace could not be opened"),
        };
        let (body, kind) = match reply.1 {
            Value::String(page) => (page, "text/html; charset=utf-8"),
            json => (json.to_string(), "application/json"),
        };
        let header = tiny_http::Header::from_bytes("Content-Type", kind)
            .expect("a constant header is valid");
        let _ = req.respond(
            tiny_http::Response::from_string(body)
                .with_status_code(reply.0)
                .with_header(header),
        );
    }
}

/// A request as the handler sees it: what tiny_http parsed from the
/// connection (or a fuzz target from its input).
struct Incoming<'r> {
    method: &'r str,
    url: &'r str,
    /// The values of every `Authorization` header.
    authorization: &'r [String],
    /// Whether `Accept` asks for HTML (a browser): `/` is then the report
    /// page; Label Studio's health check gets JSON.
    wants_html: bool,
    /// What `Content-Length` claims.
    body_length: Option<usize>,
    body: &'r mut dyn Read,
}

fn handle(req: Incoming, ws: &mut Workspace, shared: &Arc<Shared>) -> Reply {
    if let Some(token) = &shared.opts.token
        && !authorized(req.authorization, token)
    {
        return bad(
            401,
            "missing or wrong token (Authorization: Token …, Bearer … or basic auth)",
        );
    }
    let path = req
        .url
        .split('?')
        .next()
        .unwrap_or("")
        .trim_end_matches('/');
    match (req.method, path) {
        ("GET", "") if req.wants_html => report_page(ws),
        ("GET", "/report") => report_page(ws),
        ("GET", "" | "/health") => health(ws, shared),
        ("GET", "/metrics") => Reply(200, json!({})),
        ("POST", route @ ("/setup" | "/predict" | "/webhook" | "/train")) => {
            let body = match read_body(req.body, req.body_length, shared.opts.max_body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            match route {
                "/setup" => setup(&body, ws, shared),
                "/predict" => predict(&body, ws, shared),
                "/webhook" => webhook(&body, ws, shared),
                _ => {
                    retrain(shared, true);
                    Reply(201, json!({"status": "training started"}))
                }
            }
        }
        (m, p) => bad(
            404,
            format!(
                "no route {m} {p}; this is an alpool ML backend (health, setup, predict, webhook, train; report: the workspace's page)"
            ),
        ),
    }
}

/// What Label Studio's health check reads, and the live queue's state.
fn health(ws: &Workspace, shared: &Shared) -> Reply {
    let mut body = json!({"status": "UP", "model_class": "alpool", "model_version": serving_version(ws, shared)});
    if shared.live.is_some() {
        body["live"] = match ws.live_status() {
            Ok(s) => json!(s),
            Err(e) => json!({ "error": e.to_string() }),
        };
    }
    Reply(200, body)
}

/// The workspace's report (`alpool report`'s page), built from its state now.
fn report_page(ws: &Workspace) -> Reply {
    match ws.report_page() {
        Ok(html) => Reply(200, Value::String(html)),
        Err(e) => bad(500, format!("cannot build the report: {e}")),
    }
}

fn authorized(authorization: &[String], token: &str) -> bool {
    authorization.iter().any(|v| {
        let v = v.trim();
        if let Some(t) = v
            .strip_prefix("Token ")
            .or_else(|| v.strip_prefix("Bearer "))
        {
            return t.trim() == token;
        }
        v.strip_prefix("Basic ")
            .and_then(|b| base64_decode(b.trim()))
            .and_then(|d| String::from_utf8(d).ok())
            .is_some_and(|d| d.split_once(':').is_some_and(|(_, pass)| pass == token))
    })
}

/// Standard base64 (RFC 4648, with padding), for HTTP basic auth.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = acc << 6 | val(c)?;
        }
        let bits = chunk.len() * 6;
        acc <<= 24 - bits;
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + bits / 8]);
    }
    Some(out)
}

fn read_body(
    body: &mut dyn Read,
    claimed: Option<usize>,
    max: usize,
) -> std::result::Result<Value, Reply> {
    if claimed.is_some_and(|n| n > max) {
        return Err(bad(
            413,
            format!("the request body is larger than {max} bytes"),
        ));
    }
    let mut buf = Vec::new();
    let read = body.take(max as u64 + 1).read_to_end(&mut buf);
    if read.is_err() {
        return Err(bad(400, "the request body could not be read"));
    }
    if buf.len() > max {
        return Err(bad(
            413,
            format!("the request body is larger than {max} bytes"),
        ));
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&buf).map_err(|e| bad(400, format!("the body is not valid JSON: {e}")))
}

fn setup(body: &Value, ws: &Workspace, shared: &Shared) -> Reply {
    if let Some(schema) = body.get("schema").and_then(Value::as_str)
        && let Err(reason) = export::config_fits(&shared.vocab, schema)
    {
        return bad(400, reason);
    }
    Reply(200, json!({"model_version": serving_version(ws, shared)}))
}

/// What requests are checked against: ids are looked up in the worker's
/// own connection to the workspace.
fn expect<'a>(shared: &'a Shared, ws: &'a Workspace) -> Expect<'a> {
    Expect {
        ids: ws,
        vocab: &shared.vocab,
        token: &shared.token,
    }
}

/// The newest model of the workspace, loaded once per file, and the
/// label sequence it was trained at (which seeds its round).
fn model(ws: &Workspace, shared: &Shared) -> Result<Option<(Arc<Mlp>, i64)>> {
    let Some((round, _)) = ws.last_round()? else {
        return Ok(None);
    };
    let (newest, seq) = ws.round_model(round)?;
    let mut cached = shared.model.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((file, m)) = cached.as_ref()
        && *file == newest
    {
        return Ok(Some((m.clone(), seq)));
    }
    let m = Arc::new(Mlp::load(&shared.dir.join(&newest))?);
    *cached = Some((newest, m.clone()));
    Ok(Some((m, seq)))
}

fn predict(body: &Value, ws: &Workspace, shared: &Shared) -> Reply {
    let Some(tasks) = body.get("tasks").and_then(Value::as_array) else {
        return bad(400, "the body has no tasks list");
    };
    let ex = expect(shared, ws);
    let mut rows = Vec::with_capacity(tasks.len());
    for (n, task) in tasks.iter().enumerate() {
        let Some(data) = task.get("data").and_then(Value::as_object) else {
            return bad(400, format!("task #{}: no data object", n + 1));
        };
        match ex.task_item(data) {
            Ok((row, _)) => rows.push(row),
            Err(r) => {
                let id = task.get("id").map_or("?".to_string(), |i| i.to_string());
                return bad(422, format!("Label Studio task {id}: {r}"));
            }
        }
    }
    // Never the live queue's version: a prediction Label Studio asks for
    // one task has no rank among the whole pool's.
    let version = export::model_version(&shared.token);
    let (model, seq) = match model(ws, shared) {
        Ok(Some(m)) => m,
        Ok(None) => return Reply(200, json!({"results": [], "model_version": version})),
        Err(e) => return bad(500, e.to_string()),
    };
    let listed: Vec<u64> = rows.iter().map(|&r| r as u64).collect();
    let scored = shared
        .features
        .gather(&rows)
        .and_then(|x| model.predict_proba(&x))
        .and_then(|probs| {
            let scores = task_scores(ws, shared, (&model, seq), &listed, &probs)?;
            Ok((probs, scores))
        });
    let (probs, scores) = match scored {
        Ok(s) => s,
        Err(e) => return bad(500, e.to_string()),
    };
    let c = shared.vocab.width();
    let info = BatchInfo {
        vocab: &shared.vocab,
        round: 0,
        strategy: shared.opts.strategy,
        token: &shared.token,
        model: true,
    };
    let results: Vec<Value> = probs
        .chunks_exact(c)
        .zip(scores)
        .map(|(out, score)| export::prediction(&info, shared.vocab.predicted(out), score, 0))
        .collect();
    Reply(200, json!({"results": results, "model_version": version}))
}

/// The strategy's score of each listed row, as the round of the model
/// trained at label sequence `seq` scored it: over its MC-dropout passes
/// (the round's masks), its outputs `probs`, or the seeded draw.
fn task_scores(
    ws: &Workspace,
    shared: &Shared,
    (model, seq): (&Mlp, i64),
    listed: &[u64],
    probs: &[f32],
) -> Result<Vec<f64>> {
    let (strategy, vocab) = (shared.opts.strategy, &shared.vocab);
    let seed = shared.opts.seed ^ seq as u64;
    let mut job = Job::new(strategy, super::round::output_form(vocab), 0).seed(seed);
    job.label_cardinality = ws.label_cardinality(vocab)?;
    if strategy.needs().samples == Use::Required {
        let t = shared.opts.mc_samples;
        let members = Members::Dropout {
            model,
            passes: t,
            seed,
        };
        let s = shared.features.samples_of(members, listed)?;
        let samples = crate::features::block_samples(&s, t, listed.len(), 0)?;
        return score(Inputs::samples(&samples), &job);
    }
    if vocab.numeric() {
        // A regressor's number is no probability row: the random draw
        // alone, as the round draws it.
        return Ok(listed.iter().map(|&r| random_priority(seed, r)).collect());
    }
    let pool = Pool::from_f32(probs, vocab.width())?.named("<the model's output>");
    score(Inputs::probs(&pool).at_rows(listed), &job)
}

fn webhook(body: &Value, ws: &mut Workspace, shared: &Arc<Shared>) -> Reply {
    let action = body.get("action").and_then(Value::as_str).unwrap_or("");
    match action {
        "ANNOTATION_CREATED" | "ANNOTATION_UPDATED" => {}
        "START_TRAINING" => {
            retrain(shared, true);
            return Reply(201, json!({"status": "training started"}));
        }
        "" => return bad(400, "the webhook has no action"),
        other => return Reply(200, json!({"status": "ignored", "action": other})),
    }
    let file = match read_webhook(body, &expect(shared, ws)) {
        Ok(f) => f,
        Err(r) => return bad(422, r),
    };
    let ann = body
        .pointer("/annotation/id")
        .map_or("?".to_string(), |v| v.to_string());
    let source = format!("label-studio webhook (annotation {ann})");
    match ws.ingest(&file, &source, shared.opts.ingest) {
        Ok(rep) => {
            retrain(shared, false);
            Reply(
                201,
                json!({"status": "ok", "labeled": rep.labeled, "unchanged": rep.unchanged,
                       "overwritten": rep.overwritten, "conflicts": rep.conflicts,
                       "skipped": rep.skipped + rep.empty, "ignored_results": rep.ignored_results}),
            )
        }
        Err(e @ Error::Workspace { .. }) => bad(503, e.to_string()),
        Err(e) => bad(422, e.to_string()),
    }
}

/// Starts a retrain in the background when `retrain_every` labels arrived
/// since the last round (or when `force`d), unless one is running; then
/// the running one checks again when it is done (a label that arrived
/// while it counted would otherwise wait for the next one).
fn retrain(shared: &Arc<Shared>, force: bool) {
    let every = shared.opts.retrain_every;
    if !force && every == 0 {
        return;
    }
    if force {
        shared.forced.store(true, Ordering::Release);
    }
    shared.asked.store(true, Ordering::Release);
    if shared
        .training
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    let shared = shared.clone();
    std::thread::spawn(move || {
        loop {
            shared.asked.store(false, Ordering::Release);
            let force = shared.forced.swap(false, Ordering::AcqRel);
            if let Err(e) = train_once(&shared, force, every) {
                eprintln!("retraining failed: {e}");
            }
            shared.training.store(false, Ordering::Release);
            if let Some(q) = &shared.live {
                q.ring();
            }
            // Asked again meanwhile: run again, unless a newer call
            // already took the flag (it then runs).
            let again = shared.asked.load(Ordering::Acquire)
                && shared
                    .training
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
            if !again {
                break;
            }
        }
    });
}

/// One retrain: a round of `next` on the labels so far, when `every` new
/// labels came since the last (or when `force`d).
fn train_once(shared: &Shared, force: bool, every: usize) -> Result<()> {
    let mut ws = Workspace::open(&shared.dir, shared.opts.wait)?;
    let labels = ws.labels()?.len() as i64;
    let last = ws.last_round()?.map_or(0, |(_, n)| n);
    if !force && labels - last < every as i64 {
        return Ok(());
    }
    let opts = shared.opts.next_options(&shared.dir);
    std::fs::create_dir_all(shared.dir.join("batches")).map_err(|e| Error::io(&shared.dir, e))?;
    let r = next_round(&mut ws, &shared.dir, &opts, &Silent)?;
    eprintln!(
        "retrained on {} labels: round {}, {} items in {}",
        r.labels,
        r.round,
        r.picked,
        opts.out.display()
    );
    Ok(())
}

/// Connects the live queue once the server answers (Label Studio calls it
/// back while the ML backend is added), then starts the pusher, and trains
/// the first model if the workspace has labels but no round yet.
fn go_live(shared: &Arc<Shared>, addr: std::net::SocketAddr) -> Result<()> {
    let Some(q) = &shared.live else {
        return Ok(());
    };
    let public = shared
        .opts
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    for change in q.live.register(&public)? {
        eprintln!("{}: {change}", q.live.place());
    }
    let ws = Workspace::open(&shared.dir, shared.opts.wait)?;
    let trained = ws.last_round()?.is_some();
    drop(ws);
    let pusher = shared.clone();
    std::thread::spawn(move || push_forever(&pusher));
    // The first model, or the labels that came while the server was away.
    retrain(shared, !trained);
    Ok(())
}

/// Said when Label Studio takes long over one request of predictions.
const SLOW_IMPORT: &str = "Label Studio took over 10 s for one request of predictions: its default import (1.23) refreshes the counters of every task of the project on each request, so the cost grows with the project. Start it with fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short=true in its environment, which refreshes only the tasks imported (docs/workspaces.md, \"The live queue\").";

/// Pushes the newest round's predictions whenever one is not in the
/// project yet; a failure (Label Studio down, slow, refusing) is recorded
/// and retried with backoff (1 s doubling to a minute), and never touches
/// the webhooks, which the workers answer from the workspace alone.
fn push_forever(shared: &Arc<Shared>) {
    let Some(q) = &shared.live else { return };
    let plan = PlanOptions {
        strategy: shared.opts.strategy,
        seed: shared.opts.seed,
        mc_samples: shared.opts.mc_samples,
        stochastic: shared.opts.stochastic,
    };
    let (mut seen, mut backoff) = (0, Duration::from_secs(1));
    loop {
        let attempt = || -> Result<Option<(i64, Pushed)>> {
            let mut ws = Workspace::open(&shared.dir, shared.opts.wait)?;
            let check = Workspace::open(&shared.dir, shared.opts.wait)?;
            let Some((round, _)) = ws.last_round()? else {
                return Ok(None);
            };
            let newer = || {
                check
                    .last_round()
                    .ok()
                    .flatten()
                    .is_some_and(|(r, _)| r > round)
            };
            match q
                .live
                .push(&mut ws, round, plan, &newer, &|m| eprintln!("{m}"))
            {
                Ok(p) => Ok(Some((round, p))),
                Err(e) => {
                    let _ = q.live.failed(&ws, round, &e.to_string());
                    Err(e)
                }
            }
        };
        let wait = match attempt() {
            Ok(Some((
                round,
                Pushed::Done {
                    sent,
                    total,
                    timing,
                },
            ))) => {
                if sent > 0 {
                    eprintln!(
                        "round {round}: {total} predictions in the project, which now serves them (scored in {:.2} s, sent {sent} in {:.2} s, slowest request {:.2} s)",
                        timing.plan, timing.send, timing.slowest
                    );
                    if timing.slowest > 10.0 {
                        eprintln!("{SLOW_IMPORT}");
                    }
                }
                backoff = Duration::from_secs(1);
                Duration::from_secs(3600)
            }
            Ok(Some((_, Pushed::Superseded))) => continue,
            Ok(None) => Duration::from_secs(3600),
            Err(e) => {
                eprintln!(
                    "pushing to Label Studio failed (retrying in {} s): {e}",
                    backoff.as_secs()
                );
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                w
            }
        };
        seen = q.wait(seen, wait);
    }
}

/// The model version the project serves: the last finished push's, or
/// the workspace's one version without a live queue.
fn serving_version(ws: &Workspace, shared: &Shared) -> String {
    shared
        .live
        .as_ref()
        .and_then(|_| ws.live_status().ok().flatten())
        .and_then(|s| s.serving)
        .unwrap_or_else(|| export::model_version(&shared.token))
}

/// A server without a socket, for `crate::fuzz::server`: requests go
/// straight to [`handle`], over a small workspace with seed labels and a
/// trained model. Its `training` flag is held up, as while a retrain runs,
/// so that `/train` and every label answer as usual but start no thread.
#[cfg(feature = "fuzz")]
pub(crate) struct Unplugged {
    shared: Arc<Shared>,
    ws: Mutex<Workspace>,
}

#[cfg(feature = "fuzz")]
impl Unplugged {
    /// Builds the workspace in `dir`: 16 items (`i0`…`i15`) of 4 features,
    /// classes cat, dog and bird, 6 seed labels, one round's model. Tasks
    /// must carry `token`; requests, the server token `s3cret`.
    pub(crate) fn new(dir: &Path, token: &str) -> Result<Unplugged> {
        let features = dir.join("features.npy");
        let x: Vec<f32> = (0..64).map(|i| ((i * 37) % 11) as f32 / 11.0).collect();
        crate::pool::npy::save(&features, &[16, 4], &x)?;
        let ids: String = (0..16).map(|i| format!("i{i}\n")).collect();
        let seed = "id,label\ni0,cat\ni1,dog\ni2,bird\ni3,cat\ni4,dog\ni5,bird\n";
        std::fs::write(dir.join("ids.txt"), ids).map_err(|e| Error::io(dir, e))?;
        std::fs::write(dir.join("seed.csv"), seed).map_err(|e| Error::io(dir, e))?;
        let spec = super::InitSpec {
            features: features.clone(),
            rows: 16,
            dim: 4,
            classes: vec!["cat".into(), "dog".into(), "bird".into()],
            ids: Some(dir.join("ids.txt")),
            labels: Some(dir.join("seed.csv")),
            kind: Default::default(),
            data: None,
        };
        let ws_dir = dir.join("ws");
        let mut ws = Workspace::init(&ws_dir, &spec, &Silent)?;
        let learner = MlpConfig {
            hidden: vec![8],
            epochs: 2,
            min_steps: 1,
            ..MlpConfig::default()
        };
        let next = NextOptions {
            k: 2,
            strategy: Strategy::Margin.into(),
            seed: 0,
            learner: learner.clone(),
            device: Device::Cpu,
            out: dir.join("next.json"),
            reselect_skipped: false,
            mc_samples: 0,
            committee: 0,
            stochastic: None,
        };
        next_round(&mut ws, &ws_dir, &next, &Silent)?;
        let opts = ServeOptions {
            addr: String::new(),
            token: Some("s3cret".into()),
            strategy: Strategy::Margin.into(),
            mc_samples: 0,
            retrain_every: 1,
            k: 2,
            stochastic: None,
            ingest: IngestOptions::default(),
            learner,
            seed: 0,
            threads: 1,
            wait: Duration::from_secs(5),
            max_body: 1 << 16,
            reselect_skipped: false,
            live: None,
            public_url: None,
        };
        let shared = Shared {
            dir: ws_dir,
            vocab: ws.vocab()?,
            // In place of the random token `init` drew.
            token: token.into(),
            features: FeaturePool::open(&[&features])?,
            model: Mutex::new(None),
            training: AtomicBool::new(true),
            asked: AtomicBool::new(false),
            forced: AtomicBool::new(false),
            live: None,
            opts,
        };
        Ok(Unplugged {
            shared: Arc::new(shared),
            ws: Mutex::new(ws),
        })
    }

    /// The status and JSON body of one request.
    pub(crate) fn handle(
        &self,
        method: &str,
        url: &str,
        authorization: &[String],
        body_length: Option<usize>,
        body: &mut dyn Read,
    ) -> (u16, Value) {
        let mut ws = self.ws.lock().unwrap_or_else(|p| p.into_inner());
        let req = Incoming {
            method,
            url,
            authorization,
            wants_html: false,
            body_length,
            body,
        };
        let Reply(status, answer) = handle(req, &mut ws, &self.shared);
        (status, answer)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes_basic_auth() {
        assert_eq!(
            super::base64_decode("dXNlcjpzM2NyZXQ=").unwrap(),
            b"user:s3cret"
        );
        assert_eq!(super::base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(super::base64_decode("YWI=").unwrap(), b"ab");
        assert!(super::base64_decode("a*b=").is_none());
    }
}
