//! BADGE (Ash et al., ICLR 2020): k-means++ seeding on gradient embeddings.
//!
//! Row `i`'s gradient embedding is `g_i = a_i ⊗ e_i` with
//! `a_i = onehot(ŷ_i) − p_i` (ŷ the arg-max class, ties to the lower class)
//! and `e_i` its embedding. It is never formed: the squared distance
//! factorizes,
//!
//! `‖g_i − g_c‖² = ‖a_i‖²‖e_i‖² − 2 (a_i·a_c)(e_i·e_c) + ‖a_c‖²‖e_c‖²`,
//!
//! so each pick costs one pass reading C + D values a row, and memory is
//! one small record per row. The first pick is the row with the largest
//! `‖g‖` (as in the authors' code); each later pick `t` is k-means++'s D²
//! sample, drawn by the exponential race of [`super::rng`]: the largest
//! `w_i / E_i(t)`, `w_i` the squared distance to the nearest picked centre.
//! Excluded (labeled) rows are never picked and, as in the paper, are not
//! centres.
//!
//! # Canonical values and the bound
//! Canonically `p` are the f64 probabilities of [`crate::score::input`],
//! dot products are [`super::dist`]'s canonical sums, and
//! `w = max(0, ‖a_i‖²‖e_i‖² − 2·(a_i·a_c)(e_i·e_c) + ‖a_c‖²‖e_c‖²)` in f64.
//! The fast pass uses float32 probabilities (the stored ones, or the
//! canonical ones rounded once into a temporary file) and float32 dot
//! products. With `u = 2⁻²⁴`:
//! - `|fl(a_i·a_c) − a_i·a_c| ≤ γ(C + 16)`: the products sum to at most 1,
//!   each probability is within `u` relative, and three more additions of
//!   magnitude at most 3 each round once;
//! - `|fl(e_i·e_c) − e_i·e_c| ≤ γ(D + 2)·R + underflow`, `R = ‖e_i‖‖e_c‖`
//!   (Cauchy–Schwarz bounds `Σ|e_i e_c|`);
//! - `|a·a'| ≤ 2`, the product of the two float32 values is exact in f64,
//!   and the f64 combination rounds a few times at the magnitude of its
//!   terms.
//!
//! Taking `‖e_c‖` and `‖g_c‖²` as the largest over the centres so far
//! bounds every centre, hence the nearest-centre minimum.

use std::os::unix::fs::FileExt;

use super::dist::{Simd, dot_f32, dot_f64, dot_f64_wide, gamma32, underflow32};
use super::gpu::{Resident, Side};
use super::lazy::{self, Key, Lazy, Space, round_up};
use super::rng::{EXP_REL, bits, exp_canonical};
use super::{Bufs, Clock, Nearest, arg_max, canonical_prob_rows};
use super::{Terms, Update};
use super::{check_embedding_rows, par_pass, read_rows};
use crate::backend::Progress;
use crate::backend::gpu::Gpu;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::Pool;
use crate::pool::npy::{self, DType};
use crate::query::InputForm;

/// What BADGE keeps per row beside its bound.
#[derive(Clone, Copy)]
struct Row {
    /// Canonical `‖a‖²‖e‖²` and `‖e‖²`.
    gnorm: f64,
    enorm: f64,
    yhat: u32,
}

/// A picked centre: float32 parts for the fast pass, f64 for re-checks.
struct Centre {
    p32: Vec<f32>,
    yhat: usize,
    a64: Vec<f64>,
    e: Vec<f32>,
    gnorm: f64,
}

/// Where non-plain probabilities go, rounded once to float32: a temporary
/// file the per-pick passes map, instead of redoing a softmax per row and
/// pick. `None` for plain probabilities, read as stored.
type Rounded = Option<(tempfile::NamedTempFile, u64)>;

fn rounded_copy(probs: &Pool, job: &Job) -> Result<Rounded> {
    let plain = matches!(
        job.input,
        InputForm::Probs {
            renormalize: false,
            ..
        }
    ) && !probs.has_f64();
    if plain {
        return Ok(None);
    }
    let (n, c) = (probs.rows(), probs.classes());
    let t = tempfile::NamedTempFile::new().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let header = npy::encode_header(DType::F32, &[n as usize, c]);
    let f = t.as_file();
    f.write_all_at(&header, 0)
        .and_then(|_| f.set_len(header.len() as u64 + n * c as u64 * 4))
        .map_err(|e| Error::io(t.path(), e))?;
    Ok(Some((t, header.len() as u64)))
}

/// One canonical pass: validate, ŷ, the norms, each chunk's first-pick
/// candidate (largest gradient norm); the rounded copy written.
fn first_pass(
    (probs, emb): (&Pool, &Pool),
    job: &Job,
    rows: &mut [Row],
    tmp: &Rounded,
    progress: &dyn Progress,
) -> Result<Option<(u64, f64)>> {
    let (c, d) = (probs.classes(), emb.classes());
    let excluded = job.exclusions.as_slice();
    let firsts = par_pass(
        rows,
        super::rows_per_chunk(job, emb),
        || (Bufs::default(), Bufs::default(), Vec::new(), Vec::new()),
        |(pb, eb, p, a), start, state| {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let end = start + state.len() as u64;
            canonical_prob_rows(probs, &job.input, start, end, pb, p)?;
            let e = read_rows(emb, start, end, eb)?;
            check_embedding_rows(emb, start, &e)?;
            let mut best = None;
            for (i, ((pr, er), s)) in p
                .chunks_exact(c)
                .zip(e.chunks_exact(d))
                .zip(state.iter_mut())
                .enumerate()
            {
                let yhat = arg_max_class(pr);
                gradient_part(pr, yhat, a);
                s.yhat = yhat as u32;
                s.enorm = dot_f64(er, er);
                s.gnorm = dot_f64_wide(a, a) * s.enorm;
                let row = start + i as u64;
                if excluded.binary_search(&row).is_err() {
                    best = arg_max(best.into_iter().chain([(row, s.gnorm)]));
                }
            }
            if let Some((t, offset)) = tmp {
                let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
                t.as_file()
                    .write_all_at(bytemuck::cast_slice(&p32), offset + start * c as u64 * 4)
                    .map_err(|e| Error::io(t.path(), e))?;
            }
            progress.advance(e.len() as u64 * 4);
            Ok(best)
        },
    )?;
    Ok(arg_max(firsts.into_iter().flatten()))
}

/// The rows' state and the fast probabilities, uploaded to the GPU.
fn upload<'g>(
    g: &'g Gpu,
    (emb, fast): (&Pool, &Pool),
    rows: &[Row],
    taken: &[u64],
    k: usize,
) -> Result<Resident<'g>> {
    let info: Vec<[f32; 4]> = rows
        .iter()
        .map(|s| [s.gnorm as f32, s.enorm as f32, f32::from_bits(s.yhat), 0.0])
        .collect();
    let mut mind = vec![f32::MAX; rows.len()];
    super::mark(&mut mind, taken, -1.0);
    Resident::new(g, Some(emb), Side::Badge(fast, &info), &mind, k)
}

pub(crate) fn pick(
    probs: &Pool,
    emb: &Pool,
    job: &Job,
    gpu: Option<&Gpu>,
    progress: &dyn Progress,
    clock: &mut Clock,
) -> Result<(Vec<(u64, f64)>, u64)> {
    let (n, c, d) = (probs.rows(), probs.classes(), emb.classes());
    let tmp = rounded_copy(probs, job)?;
    let empty = Row {
        gnorm: 0.0,
        enorm: 0.0,
        yhat: 0,
    };
    let mut rows = vec![empty; n as usize];
    let first = first_pass((probs, emb), job, &mut rows, &tmp, progress)?;
    clock.lap("canonical norms");
    let mut picks = Vec::with_capacity(job.k);
    if job.k == 0 {
        return Ok((picks, 0));
    }
    let Some(first) = first else {
        return Err(Error::Config("no row left to pick".into()));
    };
    let fast_pool;
    let fast: &Pool = match &tmp {
        Some((t, _)) => {
            fast_pool = Pool::open(&[t.path()])?;
            &fast_pool
        }
        None => probs,
    };
    let resident = match gpu {
        Some(g) => {
            let r = upload(g, (emb, fast), &rows, job.exclusions.as_slice(), job.k)?;
            clock.lap("upload");
            Some(r)
        }
        None => None,
    };
    let mut run = Run {
        resident,
        probs,
        fast,
        emb,
        input: &job.input,
        seed: job.seed,
        simd: Simd::detect(),
        eta_a: gamma32(c + 16),
        eta_e: gamma32(d + 2),
        under: underflow32(d),
        emax: 0.0,
        gmax: 0.0,
        rows,
        chunk: super::rows_per_chunk(job, emb),
        progress,
        centres: Vec::new(),
    };
    picks.push(first);
    run.add_centre(first.0)?;
    if run.resident.is_some() {
        let refined = on_gpu(&mut run, &mut picks, job.k, clock)?;
        return Ok((picks, refined));
    }
    let mut lazy = Lazy::new(n, job.exclusions.as_slice());
    lazy.take(first.0);
    while picks.len() < job.k {
        let key = Key::Race {
            seed: job.seed,
            t: picks.len() as u32,
        };
        let (r, w) = lazy
            .pick(&mut run, key, progress)?
            .ok_or_else(|| Error::Config("no row left to pick".into()))?;
        // A pick stands for the pass over the pool it replaces.
        progress.advance(emb.data_bytes() + probs.data_bytes());
        picks.push((r, w));
        if picks.len() < job.k {
            run.add_centre(r)?;
            lazy.take(r);
        }
    }
    clock.lap("picks");
    Ok((picks, lazy.refined))
}

/// The picks after the first on the GPU: one pass over the resident rows
/// per pick, the contenders re-checked canonically; returns how many were.
fn on_gpu(run: &mut Run, picks: &mut Vec<(u64, f64)>, k: usize, clock: &mut Clock) -> Result<u64> {
    let mut nearest = Nearest::default();
    let mut refined = 0;
    while picks.len() < k {
        let t = picks.len() as u32;
        let contenders = run.update_on_gpu(t)?;
        clock.lap("distance updates");
        refined += contenders.len() as u64;
        let (r, w) = run.resolve(&mut nearest, &contenders, t)?;
        clock.lap("canonical re-check");
        picks.push((r, w));
        if picks.len() < k {
            run.add_centre(r)?;
        }
    }
    Ok(refined)
}

/// The arg-max class, ties to the lower class.
fn arg_max_class(p: &[f64]) -> usize {
    let mut best = 0;
    for (j, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = j;
        }
    }
    best
}

/// `a = onehot(ŷ) − p`, canonically.
fn gradient_part(p: &[f64], yhat: usize, a: &mut Vec<f64>) {
    a.clear();
    a.extend(p.iter().map(|&v| -v));
    a[yhat] = 1.0 - p[yhat];
}

struct Run<'a> {
    /// The GPU's copy of the rows and state, when it runs there.
    resident: Option<Resident<'a>>,
    probs: &'a Pool<'a>,
    fast: &'a Pool<'a>,
    emb: &'a Pool<'a>,
    input: &'a InputForm,
    seed: u64,
    simd: Simd,
    eta_a: f64,
    eta_e: f64,
    under: f64,
    /// Largest `‖e_c‖²` and `‖g_c‖²` over the centres.
    emax: f64,
    gmax: f64,
    rows: Vec<Row>,
    chunk: u64,
    progress: &'a dyn Progress,
    centres: Vec<Centre>,
}

impl Run<'_> {
    fn add_centre(&mut self, row: u64) -> Result<()> {
        let (c, d) = (self.probs.classes(), self.emb.classes());
        let mut p32 = vec![0f32; c];
        self.fast.row_f32(row, &mut p32)?;
        let mut e = vec![0f32; d];
        self.emb.row_f32(row, &mut e)?;
        let (mut b, mut p, mut a64) = (Bufs::default(), Vec::new(), Vec::new());
        canonical_prob_rows(self.probs, self.input, row, row + 1, &mut b, &mut p)?;
        let s = self.rows[row as usize];
        gradient_part(&p, s.yhat as usize, &mut a64);
        if let Some(r) = &self.resident {
            r.add_centre(self.centres.len(), row);
        }
        self.emax = self.emax.max(s.enorm);
        self.gmax = self.gmax.max(s.gnorm);
        self.centres.push(Centre {
            p32,
            yhat: s.yhat as usize,
            a64,
            e,
            gnorm: s.gnorm,
        });
        Ok(())
    }

    /// Folds the newest centre into the GPU's distances and returns the
    /// rows whose race key for pick `t` could be the largest.
    fn update_on_gpu(&self, t: u32) -> Result<Vec<u64>> {
        let terms = Terms {
            eta_a: self.eta_a,
            eta_e: self.eta_e,
            under: self.under,
            emax: self.emax,
            gmax: self.gmax,
            exp_rel: EXP_REL,
            seed: self.seed,
            t,
            ..Terms::default()
        };
        let r = self.resident.as_ref().expect("on the GPU");
        r.update(Update::Badge, self.centres.len() - 1, 1, &terms)
    }

    /// The contender with the largest canonical race key for pick `t`, and
    /// its canonical D² weight.
    fn resolve(&self, nearest: &mut Nearest, contenders: &[u64], t: u32) -> Result<(u64, f64)> {
        let mut keys = Vec::with_capacity(contenders.len());
        let mut weights = Vec::with_capacity(contenders.len());
        for &r in contenders {
            let w = nearest.get(r, self.centres.len(), |from| self.canonical(r, from))?;
            keys.push((r, w / exp_canonical(bits(self.seed, t, r))));
            weights.push(w);
        }
        let (row, _) = arg_max(keys).ok_or_else(|| Error::Config("no row left to pick".into()))?;
        let at = contenders.iter().position(|&r| r == row).unwrap_or(0);
        Ok((row, weights[at]))
    }
}

impl Space for Run<'_> {
    fn centres(&self) -> usize {
        self.centres.len()
    }

    /// One pass over the fast probabilities and the embeddings for all the
    /// new centres. Each row's float32 weight to a centre is within `b` of
    /// the canonical one (module docs), `b` taken with the largest norms
    /// over every centre so far.
    fn sync(&mut self, from: usize, hi: &mut [f32]) -> Result<()> {
        let (c, d) = (self.probs.classes(), self.emb.classes());
        let centres = &self.centres[from..];
        let (fast, emb, simd, rows, progress) =
            (self.fast, self.emb, self.simd, &self.rows, self.progress);
        let (eta_a, eta_e, under, emax, gmax) =
            (self.eta_a, self.eta_e, self.under, self.emax, self.gmax);
        par_pass(
            hi,
            self.chunk,
            || (Bufs::default(), Bufs::default()),
            |(pb, eb), start, hi| {
                if progress.cancelled() {
                    return Err(Error::Cancelled);
                }
                let end = start + hi.len() as u64;
                let p = read_rows(fast, start, end, pb)?;
                let e = read_rows(emb, start, end, eb)?;
                let state = &rows[start as usize..end as usize];
                simd.run(|| {
                    for (((pr, er), s), h) in p
                        .chunks_exact(c)
                        .zip(e.chunks_exact(d))
                        .zip(state)
                        .zip(hi.iter_mut())
                    {
                        if *h == lazy::TAKEN {
                            continue;
                        }
                        let y = s.yhat as usize;
                        let mut m = f64::INFINITY;
                        for centre in centres {
                            let same = if y == centre.yhat { 1.0 } else { 0.0 };
                            let ab =
                                dot_f32(pr, &centre.p32) - pr[centre.yhat] - centre.p32[y] + same;
                            let ef = dot_f32(er, &centre.e);
                            let w =
                                (s.gnorm - 2.0 * (ab as f64 * ef as f64) + centre.gnorm).max(0.0);
                            m = m.min(w);
                        }
                        let r = (s.enorm * emax).sqrt();
                        let def = eta_e * r + under;
                        let b = 2.0 * (eta_a * (r + def) + 2.0 * def)
                            + (s.gnorm + gmax + 6.0 * (r + def)) * (1.0 / (1u64 << 46) as f64);
                        *h = h.min(round_up((m + b) * (1.0 + 1e-15)));
                    }
                });
                progress.advance((e.len() + p.len()) as u64 * 4);
                Ok(())
            },
        )?;
        Ok(())
    }

    fn canonical(&self, row: u64, from: usize) -> Result<f64> {
        let d = self.emb.classes();
        let (mut b, mut p, mut a) = (Bufs::default(), Vec::new(), Vec::new());
        canonical_prob_rows(self.probs, self.input, row, row + 1, &mut b, &mut p)?;
        gradient_part(&p, arg_max_class(&p), &mut a);
        let mut e = vec![0f32; d];
        self.emb.row_f32(row, &mut e)?;
        let gnorm = dot_f64_wide(&a, &a) * dot_f64(&e, &e);
        Ok(self.centres[from..]
            .iter()
            .map(|c| {
                let ab = dot_f64_wide(&a, &c.a64);
                let ef = dot_f64(&e, &c.e);
                (gnorm - 2.0 * (ab * ef) + c.gnorm).max(0.0)
            })
            .fold(f64::INFINITY, f64::min))
    }
}
