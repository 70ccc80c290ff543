//! The live queue: a Label Studio project that holds every item of the
//! workspace and is re-ranked after every training (`alpool serve
//! --label-studio URL --project ID`).
//!
//! [`Live::connect`] checks the project (the key, the project, every task
//! this workspace's) before anything is written, imports the items the
//! project lacks, and keeps the task id of each item. [`Live::register`]
//! adds `serve` as the project's ML backend (Label Studio then adds the
//! annotation webhook), a Data Manager tab ordered by prediction score, and
//! switches the project to uncertainty sampling. [`Live::push`] sends one
//! training's predictions of every unlabeled item.
//!
//! # The push
//! Each training gets its own `model_version`, `alpool-<token>-r<round>`.
//! Its predictions are planned once (every unlabeled item, in alpool's
//! order: the round's model, the same scores and tie rule as `next`) and
//! kept in the workspace; then sent in order, `batch` per request, and the
//! project's `model_version` is set to it only once all are in. Label
//! Studio's sampling and its prediction-score column read only the
//! project's `model_version`, so an older model's scores never mix with a
//! newer one's. The score of the prediction at rank `i` (from 0) of `n` is
//! `i / n`: Label Studio accepts scores in [0, 1] only, and serves the
//! lowest first; the rank keeps alpool's exact order, ties included.
//!
//! Resuming is idempotent without a record of what was acknowledged:
//! Label Studio stores a request's predictions in order, in one transaction
//! (its memory-efficient import: one per 500), and the requests go out in
//! plan order, one at a time, so the predictions of a version it holds are
//! always the first `m` of the plan. Each attempt
//! starts by asking for `m` and sends from there. (A count above the plan,
//! as a request that timed out but landed after the retry would leave, is
//! cleared and sent again.)
//!
//! # Tasks deleted while serving
//! The project holds the whole workspace. A task deleted in Label Studio
//! drops its predictions with it, and a request naming it is refused
//! whole, so the push re-lists the project when it holds fewer tasks than
//! the workspace has items, or after a failed attempt: the item comes back
//! as a new task, and a push in progress whose plan names the old task is
//! cleared and planned again (to keep an item out of the queue, skip it).
//!
//! # Old versions
//! Older trainings' predictions stay by default: only the project's
//! `model_version` counts, and Label Studio deletes predictions one by one
//! (a counter update each), holding its database meanwhile. With
//! `keep_versions` N > 0, once a training serves, the predictions of the
//! trainings before the last N are deleted
//! (`DELETE /api/projects/{id}/model-versions`).

use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

use super::export;
use super::studio::Studio;
use super::vocab::Vocab;
use super::{Workspace, checkpoint, db_err, now};
use crate::backend::Silent;
use crate::error::{Error, Result};
use crate::features::FeaturePool;
use crate::job::Job;
use crate::learner::Mlp;
use crate::pool::Exclusions;
use crate::query::{Query, Stochastic, Strategy, Use};
use crate::{Device, Inputs, Run};

/// The Data Manager tab `register` keeps.
pub const VIEW_TITLE: &str = "alpool: most informative first";

/// Tables of the live queue: each item's task in a project, each
/// version's push, and the planned predictions of a push in progress.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS studio_tasks(place TEXT NOT NULL, idx INTEGER NOT NULL, task INTEGER NOT NULL,
                       PRIMARY KEY(place, idx));
    CREATE TABLE IF NOT EXISTS studio_pushes(place TEXT NOT NULL, version TEXT NOT NULL, round INTEGER NOT NULL,
                       total INTEGER NOT NULL, pushed INTEGER NOT NULL, state TEXT NOT NULL,
                       started TEXT NOT NULL, finished TEXT, attempts INTEGER NOT NULL DEFAULT 0,
                       error TEXT, PRIMARY KEY(place, version));
    CREATE TABLE IF NOT EXISTS studio_plan(place TEXT NOT NULL, version TEXT NOT NULL, seq INTEGER NOT NULL,
                       task INTEGER NOT NULL, class INTEGER NOT NULL, PRIMARY KEY(place, version, seq));";

/// Where the live queue is.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Label Studio's address.
    pub url: String,
    /// An API key (legacy token or personal access token).
    pub key: String,
    /// The project's id.
    pub project: i64,
    /// Predictions per import request.
    pub batch: usize,
    /// Switch the project's sampling to uncertainty sampling.
    pub sampling: bool,
    /// Select items annotators skipped again.
    pub reselect_skipped: bool,
    /// Trainings whose predictions stay in the project (0: all); older
    /// ones are deleted once a newer one serves.
    pub keep_versions: usize,
    /// Longest wait for one request.
    pub timeout: Duration,
}

/// A connected project.
pub struct Live {
    studio: Studio,
    opts: LiveOptions,
    /// `URL#project`: the key of this project's rows in the workspace.
    place: String,
    token: String,
    vocab: Vocab,
}

/// One push, as the workspace records it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PushState {
    /// `alpool-<token>-r<round>`.
    pub version: String,
    /// The round whose model made it.
    pub round: i64,
    /// Predictions planned.
    pub total: u64,
    /// Predictions Label Studio holds (as last seen).
    pub pushed: u64,
    /// `pushing`, `done` or `superseded` (a newer training came first).
    pub state: String,
    /// Failed attempts so far.
    pub attempts: u64,
    /// The last failure, if any.
    pub error: Option<String>,
    /// When it started and finished (UTC, ISO 8601).
    pub started: String,
    /// `None` until done.
    pub finished: Option<String>,
}

/// The live queue as `status`, `GET /` and the report show it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LiveStatus {
    /// `URL#project`.
    #[serde(rename = "project")]
    pub place: String,
    /// Items with a task in the project.
    pub tasks: u64,
    /// The newest push.
    #[serde(rename = "last_push")]
    pub last: Option<PushState>,
    /// The newest finished push's version: what the project serves.
    pub serving: Option<String>,
}

/// The `model_version` of one training's predictions.
pub fn version(token: &str, round: i64) -> String {
    format!("{}-r{round}", export::model_version(token))
}

impl Workspace {
    /// Whether the workspace was ever served live (its tables are made then,
    /// so that a refused start writes nothing).
    fn has_live(&self) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'studio_tasks'",
                [],
                |r| r.get(0),
            )
            .map_err(db_err(&self.path()))?;
        Ok(n > 0)
    }

    /// The live queue's state, if the workspace was ever served live.
    pub fn live_status(&self) -> Result<Option<LiveStatus>> {
        if !self.has_live()? {
            return Ok(None);
        }
        let p = self.path();
        let place: Option<String> = self
            .conn
            .query_row(
                "SELECT place FROM studio_pushes ORDER BY rowid DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err(&p))?;
        let Some(place) = place.or(self
            .conn
            .query_row("SELECT place FROM studio_tasks LIMIT 1", [], |r| r.get(0))
            .optional()
            .map_err(db_err(&p))?)
        else {
            return Ok(None);
        };
        let tasks: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM studio_tasks WHERE place = ?1",
                [&place],
                |r| r.get(0),
            )
            .map_err(db_err(&p))?;
        let serving: Option<String> = self
            .conn
            .query_row(
                "SELECT version FROM studio_pushes WHERE place = ?1 AND state = 'done' ORDER BY round DESC LIMIT 1",
                [&place],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err(&p))?;
        let last = self.push_state(&place, None)?;
        Ok(Some(LiveStatus {
            tasks: tasks as u64,
            last,
            serving,
            place,
        }))
    }

    /// One version's push (`None`: the newest).
    fn push_state(&self, place: &str, version: Option<&str>) -> Result<Option<PushState>> {
        let sql = "SELECT version, round, total, pushed, state, attempts, error, started, finished
                   FROM studio_pushes WHERE place = ?1 AND (?2 IS NULL OR version = ?2)
                   ORDER BY round DESC, rowid DESC LIMIT 1";
        self.conn
            .query_row(sql, params![place, version], |r| {
                Ok(PushState {
                    version: r.get(0)?,
                    round: r.get(1)?,
                    total: r.get::<_, i64>(2)? as u64,
                    pushed: r.get::<_, i64>(3)? as u64,
                    state: r.get(4)?,
                    attempts: r.get::<_, i64>(5)? as u64,
                    error: r.get(6)?,
                    started: r.get(7)?,
                    finished: r.get(8)?,
                })
            })
            .optional()
            .map_err(db_err(&self.path()))
    }

    /// The model file and label sequence of a round.
    pub(super) fn round_model(&self, round: i64) -> Result<(String, i64)> {
        self.conn
            .query_row(
                "SELECT model, label_seq FROM rounds WHERE round = ?1",
                [round],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db_err(&self.path()))
    }

    /// The task of each item in a project, by row.
    fn task_map(&self, place: &str) -> Result<Vec<Option<i64>>> {
        let mut map = vec![None; self.items()?];
        if !self.has_live()? {
            return Ok(map);
        }
        let rows = self.query(
            "SELECT idx, task FROM studio_tasks WHERE place = ?1",
            [place],
            |r| Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)?)),
        )?;
        for (row, task) in rows {
            if let Some(slot) = map.get_mut(row) {
                *slot = Some(task);
            }
        }
        Ok(map)
    }

    /// Writes every item as a Label Studio task (`alpool tasks`), in
    /// chunks, atomically; returns how many.
    pub fn write_tasks(&self, out: &std::path::Path) -> Result<usize> {
        let items = self.items()?;
        crate::atomic::write(out, |w| {
            let io = |e: std::io::Error| Error::io(out, e);
            w.write_all(b"[").map_err(io)?;
            let rows: Vec<usize> = (0..items).collect();
            for chunk in rows.chunks(4096) {
                for (i, task) in self.tasks_json(chunk)?.iter().enumerate() {
                    let sep = if chunk[0] + i == 0 { "\n" } else { ",\n" };
                    write!(w, "{sep}{task}").map_err(io)?;
                }
            }
            w.write_all(b"\n]\n").map_err(io)
        })?;
        Ok(items)
    }

    /// Every item as a Label Studio task (`alpool tasks`): its data,
    /// alpool's id and index and the workspace token, in row order.
    pub fn tasks_json(&self, rows: &[usize]) -> Result<Vec<Value>> {
        let token = self.token()?;
        let ids = self.ids_of(rows)?;
        let data = self.item_data(rows)?;
        Ok(rows
            .iter()
            .zip(ids)
            .zip(data)
            .map(|((&row, id), data)| {
                let mut d = export::task_data(&id, &token, row);
                if let Some(extra) = data {
                    d.extend(extra);
                }
                json!({ "data": d })
            })
            .collect())
    }
}

impl Live {
    /// Checks the project and brings every item of the workspace into it.
    /// Every check runs before anything is written: a wrong key, a missing
    /// project, a labeling config without alpool's control, or a task that
    /// is not this workspace's stops it here, with nothing changed.
    pub fn connect(ws: &mut Workspace, opts: LiveOptions, say: &dyn Fn(&str)) -> Result<Live> {
        let studio = Studio::new(&opts.url, &opts.key, opts.timeout)?;
        let project = studio.project(opts.project)?;
        check_config(&studio, opts.project, &project, &ws.vocab()?)?;
        let live = Live {
            place: format!("{}#{}", studio.url(), opts.project),
            token: ws.token()?,
            vocab: ws.vocab()?,
            studio,
            opts,
        };
        let items = ws.items()?;
        let known = ws.task_map(&live.place)?;
        let in_project = project.get("task_number").and_then(Value::as_u64);
        if known.iter().all(Option::is_some) && in_project == Some(items as u64) {
            say(&format!(
                "project {}: all {items} items are tasks",
                live.opts.project
            ));
            return Ok(live);
        }
        live.bring_all(ws, say)?;
        Ok(live)
    }

    /// Lists the project's tasks, imports the items that have none (the
    /// project holds the whole workspace: an item whose task was deleted
    /// comes back as a new task) and records each item's task.
    fn bring_all(&self, ws: &mut Workspace, say: &dyn Fn(&str)) -> Result<Vec<i64>> {
        let items = ws.items()?;
        let mut map = self.listed(ws)?;
        let missing: Vec<usize> = (0..items).filter(|&r| map[r].is_none()).collect();
        if !missing.is_empty() {
            say(&format!(
                "project {}: importing {} of the workspace's {items} items as tasks",
                self.opts.project,
                missing.len()
            ));
            for chunk in missing.chunks(1000) {
                self.studio
                    .import_tasks(self.opts.project, &ws.tasks_json(chunk)?)?;
            }
            map = self.listed(ws)?;
        }
        let map: Vec<i64> = map
            .iter()
            .enumerate()
            .map(|(row, t)| {
                t.ok_or_else(|| self.fail(format!("item {row} has no task after the import")))
            })
            .collect::<Result<_>>()?;
        ws.store_tasks(&self.place, &map)?;
        Ok(map)
    }

    /// Lists the project again when tasks may have been deleted in Label
    /// Studio while serving: it holds fewer tasks than the workspace has
    /// items, or the last attempt failed (a request naming a deleted task
    /// is refused whole).
    fn resync(&self, ws: &mut Workspace, failed: bool, say: &dyn Fn(&str)) -> Result<()> {
        let items = ws.items()? as u64;
        let project = self.studio.project(self.opts.project)?;
        let held = project.get("task_number").and_then(Value::as_u64);
        if failed || held.is_none_or(|n| n < items) {
            self.bring_all(ws, say)?;
        }
        Ok(())
    }

    fn fail(&self, reason: String) -> Error {
        Error::LabelStudio {
            url: format!("{}/projects/{}", self.studio.url(), self.opts.project),
            reason,
        }
    }

    /// The project's tasks by item row; any task not of this workspace is
    /// refused by its id.
    fn listed(&self, ws: &Workspace) -> Result<Vec<Option<i64>>> {
        let items = ws.items()?;
        let mut map: Vec<Option<i64>> = vec![None; items];
        let mut ids: Vec<(usize, String, i64)> = Vec::new();
        let project = self.opts.project;
        self.studio.tasks(project, &mut |task, data| {
            let owner = data.get("alpool_workspace").and_then(Value::as_str);
            let row = data.get("alpool_index").and_then(Value::as_u64);
            let id = data.get("alpool_id").and_then(Value::as_str);
            let whose = match owner {
                None => "it carries no alpool_workspace".to_string(),
                Some(t) if t != self.token => format!("it belongs to workspace {t}"),
                Some(_) => match (row, id) {
                    (Some(r), Some(id)) if (r as usize) < items => {
                        ids.push((r as usize, id.to_string(), task));
                        return Ok(());
                    }
                    _ => "its alpool_index or alpool_id is not one of this workspace's items".into(),
                },
            };
            Err(self.fail(format!(
                "task {task} is not an item of this workspace ({whose}); serve a project that holds only this workspace's tasks, or an empty one"
            )))
        })?;
        let rows: Vec<usize> = ids.iter().map(|t| t.0).collect();
        for ((row, id, task), stored) in ids.iter().zip(ws.ids_of(&rows)?) {
            if *id != stored {
                return Err(self.fail(format!(
                    "task {task} says item {row} is {id:?}, but this workspace's item {row} is {stored:?}"
                )));
            }
            // Two tasks of one item (an import run twice): the first serves.
            let slot = &mut map[*row];
            *slot = Some(slot.map_or(*task, |t| t.min(*task)));
        }
        Ok(map)
    }

    /// Makes `serve` (reachable at `public`) the project's ML backend, which
    /// makes Label Studio add its annotation webhook; adds the webhook
    /// itself if it is still missing, the Data Manager tab, and, if asked,
    /// uncertainty sampling. Returns what it changed.
    pub fn register(&self, public: &str) -> Result<Vec<String>> {
        let (s, project) = (&self.studio, self.opts.project);
        let public = public.trim_end_matches('/');
        let same = |v: &Value, url: &str| {
            v.get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.trim_end_matches('/') == url)
        };
        let mut done = Vec::new();
        if !s.list("ml", project)?.iter().any(|m| same(m, public)) {
            s.create(
                "ml",
                &json!({"url": public, "project": project, "title": "alpool"}),
            )?;
            done.push(format!("added {public} as the project's ML backend"));
        }
        let hook = format!("{public}/webhook");
        if !s.list("webhooks", project)?.iter().any(|w| same(w, &hook)) {
            s.create(
                "webhooks",
                &json!({"project": project, "url": hook, "send_payload": true, "send_for_all_actions": true}),
            )?;
            done.push(format!("added the webhook {hook}"));
        }
        let has_view = s
            .views(project)?
            .iter()
            .any(|v| v.pointer("/data/title").and_then(Value::as_str) == Some(VIEW_TITLE));
        if !has_view {
            s.create(
                "dm/views",
                &json!({"project": project, "data": view_data()}),
            )?;
            done.push(format!("added the Data Manager tab \"{VIEW_TITLE}\""));
        }
        if self.opts.sampling {
            let now = s.update_project(project, &json!({"sampling": "Uncertainty sampling"}))?;
            match now.get("sampling").and_then(Value::as_str) {
                Some("Uncertainty sampling") => done.push("sampling: uncertainty sampling".into()),
                other => done.push(format!(
                    "the server kept its sampling ({}); annotators follow the queue through the \"{VIEW_TITLE}\" tab and \"Label Tasks As Displayed\"",
                    other.unwrap_or("?")
                )),
            }
        }
        Ok(done)
    }
}

/// The tab: unlabeled tasks with a current prediction, lowest score (most
/// informative) first.
fn view_data() -> Value {
    json!({
        "title": VIEW_TITLE,
        "ordering": ["tasks:predictions_score"],
        "filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0},
            {"filter": "filter:tasks:predictions_score", "operator": "empty", "type": "Number", "value": false},
        ]},
    })
}

/// Predictions only validate against a config with alpool's control.
fn check_config(studio: &Studio, id: i64, project: &Value, vocab: &Vocab) -> Result<()> {
    let config = project
        .get("label_config")
        .and_then(Value::as_str)
        .unwrap_or("");
    export::config_fits(vocab, config).map_err(|reason| Error::LabelStudio {
        url: format!("{}/projects/{id}", studio.url()),
        reason,
    })
}

/// What a push came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Every prediction is in and the project serves this version.
    Done {
        /// Predictions sent by this call (0: it was done before).
        sent: u64,
        /// Predictions of the version.
        total: u64,
        /// Seconds spent scoring and planning (0 when resumed), and
        /// sending; the slowest request's.
        timing: Timing,
    },
    /// A newer training came before it finished; it was dropped.
    Superseded,
}

/// Where a push's time went, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timing {
    /// Scoring every unlabeled item and recording the plan.
    pub plan: f64,
    /// Sending the predictions and switching the project's version.
    pub send: f64,
    /// The slowest request.
    pub slowest: f64,
}

impl Eq for Timing {}

/// How the push's plan is scored: as `next` scores its round.
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    /// The strategy (row-wise, or multi-label).
    pub strategy: Query,
    /// `next`'s seed.
    pub seed: u64,
    /// `next`'s MC-dropout passes, for the strategies that read samples.
    pub mc_samples: usize,
    /// `next`'s stochastic batch: the queue is then the draw's order, whose
    /// first k are the batch `next` draws.
    pub stochastic: Option<Stochastic>,
}

impl Live {
    /// The project's `URL#id`.
    pub fn place(&self) -> &str {
        &self.place
    }

    /// Sends round `round`'s predictions of every unlabeled item, makes
    /// them the project's current ones, then deletes the predictions of
    /// trainings before the last `keep_versions` (when not 0). Safe to
    /// call again after any failure or crash: it resumes where Label
    /// Studio stands (see the module docs). `newer` is asked between requests whether a newer
    /// training has come; then the push is dropped. `say` hears what
    /// changed in the project besides the push (tasks brought back, old
    /// versions deleted).
    pub fn push(
        &self,
        ws: &mut Workspace,
        round: i64,
        plan: PlanOptions,
        newer: &dyn Fn() -> bool,
        say: &dyn Fn(&str),
    ) -> Result<Pushed> {
        let v = version(&self.token, round);
        let mut timing = Timing::default();
        let clock = std::time::Instant::now();
        let before = ws.push_state(&self.place, Some(&v))?;
        if let Some(s) = before.as_ref().filter(|s| s.state == "done") {
            return Ok(Pushed::Done {
                sent: 0,
                total: s.total,
                timing,
            });
        }
        // Planned before Label Studio is asked anything, so that a failed
        // attempt is recorded against this push.
        let mut state = match before {
            Some(s) if s.state == "pushing" => s,
            _ => self.plan(ws, round, &v, plan)?,
        };
        self.resync(ws, state.attempts > 0, say)?;
        if ws.plan_is_stale(&self.place, &v)? {
            // Some of its tasks were deleted: what Label Studio holds is no
            // longer a prefix of any plan. Deleting first keeps a crash
            // between the two safe (the plan stays stale).
            self.studio.delete_version(self.opts.project, &v)?;
            state = self.plan(ws, round, &v, plan)?;
        }
        timing.plan = clock.elapsed().as_secs_f64();
        let (total, project) = (state.total, self.opts.project);
        let mut pushed = self.held(&v)?;
        if pushed > total {
            self.studio.delete_version(project, &v)?;
            pushed = 0;
        }
        let first = pushed;
        while pushed < total {
            if newer() {
                ws.set_push(&self.place, &v, pushed, "superseded")?;
                return Ok(Pushed::Superseded);
            }
            ws.set_push(&self.place, &v, pushed, "pushing")?;
            let batch = self.predictions(ws, &v, pushed, total)?;
            let n = batch.len() as u64;
            let sent = std::time::Instant::now();
            let created = self.studio.import_predictions(project, batch)?;
            timing.slowest = timing.slowest.max(sent.elapsed().as_secs_f64());
            if created != n {
                return Err(self.fail(format!(
                    "{created} of {n} predictions of {v} were stored (the project's labeling config must accept {} with the workspace's labels)",
                    export::control_tag(&self.vocab)
                )));
            }
            pushed += n;
            ws.set_push(&self.place, &v, pushed, "pushing")?;
            checkpoint("push-batch");
        }
        let held = self.held(&v)?;
        if held != total {
            // A request that timed out and landed later: clear, resend.
            self.studio.delete_version(project, &v)?;
            return Err(self.fail(format!(
                "the project held {held} predictions of {v} instead of {total}; cleared them to send again"
            )));
        }
        // Label Studio refuses a version without predictions; with every
        // item labeled there is no queue to serve.
        if total > 0 {
            self.studio
                .update_project(project, &json!({ "model_version": v }))?;
        }
        ws.finish_push(&self.place, &v)?;
        timing.send = clock.elapsed().as_secs_f64() - timing.plan;
        // Housekeeping: a failure leaves the push done, and the next
        // training's prune, which reads the project's versions, retries it.
        if let Err(e) = self.prune(round, say) {
            say(&format!(
                "project {}: older versions not deleted (retried after the next training): {e}",
                self.opts.project
            ));
        }
        Ok(Pushed::Done {
            sent: total - first,
            total,
            timing,
        })
    }

    /// Deletes the predictions of this workspace's trainings before the
    /// last `keep_versions` (round `round` now serves). Reading the
    /// project's versions, not the workspace's record, also clears what a
    /// crash or a superseded push left.
    fn prune(&self, round: i64, say: &dyn Fn(&str)) -> Result<()> {
        let keep = self.opts.keep_versions as i64;
        if keep == 0 {
            return Ok(());
        }
        let prefix = format!("{}-r", export::model_version(&self.token));
        for (v, n) in self.studio.version_counts(self.opts.project)? {
            let old = v.strip_prefix(&prefix).and_then(|r| r.parse::<i64>().ok());
            if old.is_some_and(|r| r <= round - keep) {
                let clock = std::time::Instant::now();
                self.studio.delete_version(self.opts.project, &v)?;
                say(&format!(
                    "project {}: deleted the {n} predictions of {v}, an older training's ({:.2} s)",
                    self.opts.project,
                    clock.elapsed().as_secs_f64()
                ));
            }
        }
        Ok(())
    }

    /// Predictions of `version` the project holds.
    fn held(&self, version: &str) -> Result<u64> {
        let counts = self.studio.version_counts(self.opts.project)?;
        Ok(counts.get(version).and_then(Value::as_u64).unwrap_or(0))
    }

    /// Records a failed attempt.
    pub fn failed(&self, ws: &Workspace, round: i64, reason: &str) -> Result<()> {
        let v = version(&self.token, round);
        ws.conn
            .execute(
                "UPDATE studio_pushes SET attempts = attempts + 1, error = ?3 WHERE place = ?1 AND version = ?2",
                params![self.place, v, reason],
            )
            .map_err(db_err(&ws.path()))?;
        Ok(())
    }

    /// The next request's predictions, from the plan.
    fn predictions(&self, ws: &Workspace, v: &str, from: u64, total: u64) -> Result<Vec<Value>> {
        let rows = ws.query(
            "SELECT seq, task, class FROM studio_plan WHERE place = ?1 AND version = ?2 AND seq >= ?3 ORDER BY seq LIMIT ?4",
            params![self.place, v, from as i64, self.opts.batch.max(1) as i64],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)? as usize)),
        )?;
        Ok(rows
            .into_iter()
            .map(|(seq, task, class)| {
                json!({
                    "task": task,
                    "model_version": v,
                    "score": seq as f64 / total as f64,
                    "result": export::choice_result(&self.vocab, class),
                })
            })
            .collect())
    }

    /// Scores every unlabeled item with the round's model and records the
    /// push's plan, in one transaction.
    fn plan(
        &self,
        ws: &mut Workspace,
        round: i64,
        v: &str,
        plan: PlanOptions,
    ) -> Result<PushState> {
        let ranked = ranking(ws, round, plan, self.opts.reselect_skipped)?;
        let tasks = ws.task_map(&self.place)?;
        let p = ws.path();
        let tx = ws.conn.transaction().map_err(db_err(&p))?;
        tx.execute(
            "DELETE FROM studio_plan WHERE place = ?1 AND version = ?2",
            params![self.place, v],
        )
        .map_err(db_err(&p))?;
        {
            let mut ins = tx
                .prepare("INSERT INTO studio_plan VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(db_err(&p))?;
            for (seq, &(row, class)) in ranked.iter().enumerate() {
                let task =
                    tasks[row].ok_or_else(|| self.fail(format!("item {row} has no task")))?;
                ins.execute(params![self.place, v, seq as i64, task, class as i64])
                    .map_err(db_err(&p))?;
            }
        }
        tx.execute(
            "INSERT INTO studio_pushes(place, version, round, total, pushed, state, started)
             VALUES (?1, ?2, ?3, ?4, 0, 'pushing', ?5)
             ON CONFLICT(place, version) DO UPDATE SET total = excluded.total, pushed = 0,
             state = 'pushing', started = excluded.started",
            params![self.place, v, round, ranked.len() as i64, now()],
        )
        .map_err(db_err(&p))?;
        tx.commit().map_err(db_err(&p))?;
        checkpoint("push-after-plan");
        ws.push_state(&self.place, Some(v))?
            .ok_or_else(|| self.fail(format!("the plan of {v} was not recorded")))
    }
}

impl Workspace {
    /// Records the task of every item, replacing what was known.
    fn store_tasks(&mut self, place: &str, tasks: &[i64]) -> Result<()> {
        let p = self.path();
        let tx = self.conn.transaction().map_err(db_err(&p))?;
        tx.execute_batch(SCHEMA).map_err(db_err(&p))?;
        tx.execute("DELETE FROM studio_tasks WHERE place = ?1", [place])
            .map_err(db_err(&p))?;
        {
            let mut ins = tx
                .prepare("INSERT INTO studio_tasks VALUES (?1, ?2, ?3)")
                .map_err(db_err(&p))?;
            for (row, task) in tasks.iter().enumerate() {
                ins.execute(params![place, row as i64, task])
                    .map_err(db_err(&p))?;
            }
        }
        tx.commit().map_err(db_err(&p))
    }

    /// Whether a push's plan names a task the project no longer holds.
    fn plan_is_stale(&self, place: &str, v: &str) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM studio_plan WHERE place = ?1 AND version = ?2
                 AND task NOT IN (SELECT task FROM studio_tasks WHERE place = ?1)",
                params![place, v],
                |r| r.get(0),
            )
            .map_err(db_err(&self.path()))?;
        Ok(n > 0)
    }

    fn set_push(&self, place: &str, v: &str, pushed: u64, state: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE studio_pushes SET pushed = ?3, state = ?4 WHERE place = ?1 AND version = ?2",
                params![place, v, pushed as i64, state],
            )
            .map_err(db_err(&self.path()))?;
        Ok(())
    }

    /// Marks a push done and drops its plan.
    fn finish_push(&mut self, place: &str, v: &str) -> Result<()> {
        let p = self.path();
        let tx = self.conn.transaction().map_err(db_err(&p))?;
        tx.execute(
            "UPDATE studio_pushes SET state = 'done', pushed = total, finished = ?3, error = NULL
             WHERE place = ?1 AND version = ?2",
            params![place, v, now()],
        )
        .map_err(db_err(&p))?;
        tx.execute(
            "DELETE FROM studio_plan WHERE place = ?1 AND version = ?2",
            params![place, v],
        )
        .map_err(db_err(&p))?;
        tx.commit().map_err(db_err(&p))
    }
}

/// Every unlabeled item (skipped ones left out unless `reselect`) in
/// alpool's order under round `round`'s model, with the model's class:
/// the door `next` goes through, with k = all of them, so the first k are
/// `next`'s batch.
pub fn ranking(
    ws: &Workspace,
    round: i64,
    plan: PlanOptions,
    reselect: bool,
) -> Result<Vec<(usize, usize)>> {
    let (model_rel, seq) = ws.round_model(round)?;
    let model = Mlp::load(&ws.dir.join(model_rel))?;
    let features = FeaturePool::open(&[std::path::PathBuf::from(ws.meta("features")?)])?;
    let mut excluded: Vec<u64> = ws.labels()?.iter().map(|l| l.index as u64).collect();
    if !reselect {
        excluded.extend(ws.skipped()?.iter().map(|&r| r as u64));
    }
    let exclusions = Exclusions::new(excluded);
    let left = features.rows().saturating_sub(exclusions.len() as u64) as usize;
    if left == 0 {
        return Ok(Vec::new());
    }
    let vocab = ws.vocab()?;
    let seed = plan.seed ^ seq as u64;
    let rows: Vec<u64> = if vocab.numeric() && plan.strategy == Strategy::Random.into() {
        // A regressor's number is no probability row: the round's draw.
        let n = features.rows() as usize;
        let picks = crate::al::measured::random_picks(n, &exclusions, left, seed);
        picks.into_iter().map(|r| r as u64).collect()
    } else {
        let mut job = Job::new(plan.strategy, super::round::output_form(&vocab), left)
            .seed(seed)
            .exclude(exclusions);
        job.label_cardinality = ws.label_cardinality(&vocab)?;
        // Gumbel-top-k keys each row once, whatever k: a draw of every row
        // is the order whose first k are any k's draw.
        job.stochastic = plan.stochastic;
        let run = Run {
            device: Device::Cpu,
            adapter: None,
            progress: &Silent,
            gpu: None,
        };
        let inputs = match plan.strategy.needs().samples == Use::Required {
            true => Inputs::mc_dropout(&model, &features, plan.mc_samples, seed),
            false => Inputs::model(&model, &features),
        };
        let sel = crate::select(inputs, &job, &run)?.selection;
        sel.entries.iter().map(|e| e.index).collect()
    };
    let c = model.classes();
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(8192) {
        let p = features.probabilities_of(&model, chunk)?;
        out.extend(
            chunk
                .iter()
                .zip(p.chunks_exact(c))
                .map(|(&r, p)| (r as usize, vocab.predicted(p))),
        );
    }
    Ok(out)
}
