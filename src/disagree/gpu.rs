//! The disagreement strategies with a GPU kernel, and regression's spread
//! (`std`), over T samples: the
//! chunked select of [`crate::backend::gpu`], with each chunk's T planes
//! uploaded and the kernel's f32 score (`shaders/select.wgsl`,
//! `score_samples`) filtering rows inside the interval
//! [`gpu_samples_bound`] proves. Float64, renormalized and logit samples
//! go up as their canonical values rounded to f32 ([`round_planes`]), the
//! interval widened by what that rounding moves a score
//! ([`gpu_rounded_samples_bound`]). Every candidate,
//! and every row the kernel cannot decide, is read back from the files and
//! scored canonically, so the picks are the CPU's.

use super::{Rule, read_canonical};
use crate::backend::Progress;
use crate::backend::gpu::{Chunked, Gpu, Phases, Rescore, Source, chunk_rows, drive};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::Samples;
use crate::pool::samples::ReadBufs;
use crate::query::InputForm;
use crate::score::Ranked;
use crate::score::fast::{ROUNDING, gpu_rounded_samples_bound, gpu_samples_bound};
use crate::select::Selection;

/// The k rows of most disagreement (ties to the lower row) on the GPU.
pub(crate) fn select(
    gpu: &Gpu,
    samples: &Samples,
    job: &Job,
    progress: &dyn Progress,
) -> Result<(Selection, Phases)> {
    // The CPU's checks first (T large enough, the input form), so that
    // both refuse alike.
    let rule = super::check(samples, job)?;
    let (t, c) = (samples.samples(), samples.classes());
    let ln_b = job.log_base.ln();
    // Float64 samples, and renormalized ones, go up as their canonical
    // values rounded to float32 (`round_planes`); the kernel then reads
    // them as plain probabilities within the rounding's own bound.
    let (rounded, bound, input) = match (rule, job.input) {
        (Rule::Disagree(d), InputForm::Probs { .. } | InputForm::Logits { .. }) => {
            // Plain probabilities go up as stored, the rest rounded; `base`
            // is how far the canonical rows' sums may be from 1.
            let (stored, base) = match job.input {
                InputForm::Probs {
                    sum_tol,
                    renormalize: false,
                } => (true, sum_tol),
                _ => (false, 0.0),
            };
            let rounded = !stored || samples.has_f64();
            // The rounded rows' sums may move by 2ρ, and the kernel's sum
            // check leaves room for its own f32 sum (4C·2⁻²⁴ of s + 1):
            // a tolerance without that room would leave every rounded row
            // undecided, to the host.
            let tol = if rounded {
                let u = 1.0 / 16_777_216.0;
                base + (2.0 * ROUNDING + 16.0 * c as f64 * u) * (1.0 + base) + 1e-12
            } else {
                base
            };
            let (mut half, rel) = gpu_samples_bound(d, c, t, tol, ln_b);
            if rounded {
                half += gpu_rounded_samples_bound(d, c, t, base, ln_b);
            }
            let input = InputForm::Probs {
                renormalize: false,
                sum_tol: tol,
            };
            (rounded, (half, rel), input)
        }
        (Rule::Disagree(d), _) => {
            return Err(Error::Config(format!(
                "{d} reads samples of probabilities or logits"
            )));
        }
        // The kernel makes each row's interval from its own values (as
        // for mean-std); this covers the canonical f64 spread's rounding.
        (Rule::Spread, input) => {
            if samples.has_f64() {
                return Err(Error::Config(format!(
                    "{}: float64 predictions are scored on the CPU (WGSL has no float64): use --device cpu or auto, or store them as float32",
                    samples.path().display()
                )));
            }
            (false, (1e-30, 1e-8), input)
        }
    };
    // The kernel reads the form the values are uploaded in.
    let kernel_job = Job {
        input,
        ..job.clone()
    };
    let k = job.k.min(samples.rows() as usize);
    let mut max_rows = chunk_rows(gpu, t * c, job.chunk_rows);
    if rounded {
        // The host holds a chunk's stored and canonical values as f64:
        // about 64 MiB of them at most, whatever the adapter's bindings.
        max_rows = max_rows.min((ROUNDED_CHUNK_VALUES / (t * c).max(1)).max(1) as u64);
    }
    let r_max = max_rows.min(samples.rows());
    let mut run = Chunked::samples(gpu, &kernel_job, k, (t, c, 0), r_max, bound)?;
    let step = max_rows.max(1);
    let mut src = SampleRows {
        samples,
        job,
        rule,
        chunks: (0..samples.rows().div_ceil(step))
            .map(|i| (i * step, ((i + 1) * step).min(samples.rows())))
            .collect(),
        rounded,
        bufs: ReadBufs::default(),
        planes: Vec::new(),
        stored: Vec::new(),
        probs: Vec::new(),
        mean: Vec::new(),
    };
    drive(&mut run, k, &mut src, progress)?;
    Ok(run.finish(samples.rows()))
}

/// The samples' chunks (local rows), and the scratch that reads them.
struct SampleRows<'s> {
    samples: &'s Samples<'s>,
    job: &'s Job,
    rule: Rule,
    /// Upload the canonical values rounded to float32 (`round_planes`)
    /// rather than the stored ones.
    rounded: bool,
    chunks: Vec<(u64, u64)>,
    bufs: ReadBufs,
    planes: Vec<f32>,
    stored: Vec<f64>,
    probs: Vec<f64>,
    mean: Vec<f64>,
}

impl Rescore for SampleRows<'_> {
    fn ranked(&mut self, rows: &[u64]) -> Result<Vec<Ranked>> {
        let (g0, c) = (self.samples.first_row(), self.samples.classes());
        let mut out = Vec::with_capacity(rows.len());
        for &index in rows {
            let r = index - g0;
            let scratch = (&mut self.bufs, &mut self.stored);
            read_canonical(self.samples, self.job, (r, r + 1), scratch, &mut self.probs)?;
            let score = self.rule.score(self.job, &self.probs, c, &mut self.mean);
            out.push(Ranked {
                priority: self.job.query.priority(score),
                index,
            });
        }
        Ok(out)
    }
}

impl Source for SampleRows<'_> {
    fn chunks(&self) -> usize {
        self.chunks.len()
    }

    fn enter(&mut self, i: usize) -> (u64, u64, u64) {
        let (start, end) = self.chunks[i];
        let row_bytes = self.samples.data_bytes() / self.samples.rows().max(1);
        (
            self.samples.first_row() + start,
            end - start,
            (end - start) * row_bytes,
        )
    }

    fn upload(&mut self, run: &Chunked, slot: usize, i: usize) -> Result<()> {
        if self.rounded {
            let span = self.chunks[i];
            let scratch = (&mut self.bufs, &mut self.stored);
            read_canonical(self.samples, self.job, span, scratch, &mut self.probs)?;
            let (t, c) = (self.samples.samples(), self.samples.classes());
            round_planes(&self.probs, t, c, &mut self.planes);
            let q = &run.gpu.queue;
            q.write_buffer(&run.bufs.rows[slot], 0, bytemuck::cast_slice(&self.planes));
            return Ok(());
        }
        let scratch = (&mut self.bufs, &mut self.planes);
        upload_planes(self.samples, self.chunks[i], run, slot, scratch).map(|_| ())
    }
}

/// The values a chunk of rounded samples holds at most.
const ROUNDED_CHUNK_VALUES: usize = 1 << 22;

/// Canonical probabilities (row after row, T samples of C each) rounded
/// to float32 into planes (sample after sample, rows of C each). Where
/// rounding ties a sample's first largest value with a value before it,
/// that value goes up one ulp, so the kernel's argmax (ties to the lower
/// class) is the canonical one and the votes are exact.
fn round_planes(probs: &[f64], t: usize, c: usize, planes: &mut Vec<f32>) {
    let rows = probs.len() / (t * c).max(1);
    planes.resize(probs.len(), 0.0);
    for (r, row) in probs.chunks_exact(t * c).enumerate() {
        for (s, p) in row.chunks_exact(c).enumerate() {
            let out = &mut planes[(s * rows + r) * c..(s * rows + r + 1) * c];
            let mut best = 0;
            for (j, (o, &x)) in out.iter_mut().zip(p).enumerate() {
                *o = x as f32;
                if x > p[best] {
                    best = j;
                }
            }
            if out[..best].contains(&out[best]) {
                out[best] = out[best].next_up();
            }
        }
    }
}

/// Sample t's rows of `span` go to plane t of row buffer `slot`,
/// `(end − start) · C` values from the buffer's start each: straight from
/// the map of a float32 T x N x C file, else read into planes first.
/// Returns the bytes of one plane.
pub(crate) fn upload_planes(
    samples: &Samples,
    span: (u64, u64),
    run: &Chunked,
    slot: usize,
    (bufs, planes): (&mut ReadBufs, &mut Vec<f32>),
) -> Result<u64> {
    let (buf, q) = (&run.bufs.rows[slot], &run.gpu.queue);
    let plane = (span.1 - span.0) * samples.classes() as u64 * 4;
    match samples.mapped_planes(span)? {
        Some(mapped) => {
            for (t, p) in mapped.iter().enumerate() {
                q.write_buffer(buf, t as u64 * plane, bytemuck::cast_slice(p));
            }
        }
        None => {
            samples.read_planes(span, bufs, planes)?;
            q.write_buffer(buf, 0, bytemuck::cast_slice(planes));
        }
    }
    Ok(plane)
}

#[cfg(test)]
mod tests {
    use super::round_planes;
    use crate::query::{Disagreement, LogBase};
    use crate::rng::Rng;
    use crate::score::disagree::disagreement;
    use crate::score::fast::gpu_rounded_samples_bound;

    /// A canonical row of T samples of C: peaked, flat, near ties that
    /// float32 cannot tell apart (the larger value later), values below
    /// float32's normal range, sums off 1 by up to `tol`.
    fn row(rng: &mut Rng, t: usize, c: usize, kind: u64, tol: f64) -> Vec<f64> {
        let mut out = Vec::with_capacity(t * c);
        for _ in 0..t {
            let mut w: Vec<f64> = (0..c)
                .map(|_| match kind {
                    0 => rng.uniform().powi(8) + 1e-300,
                    1 => 1.0 + 1e-9 * rng.uniform(),
                    2 => rng.uniform() * 1e-40,
                    _ => rng.uniform(),
                })
                .collect();
            if kind == 2 {
                w[rng.below(c as u64) as usize] = 1.0;
            }
            if kind == 3 && c > 1 {
                // The largest two a hair apart, the larger one later.
                let j = 1 + rng.below(c as u64 - 1) as usize;
                w[j - 1] = 2.0;
                w[j] = 2.0 * (1.0 + 1e-12);
            }
            let scale = (1.0 + tol * (2.0 * rng.uniform() - 1.0)) / w.iter().sum::<f64>();
            out.extend(w.iter().map(|x| x * scale));
        }
        out
    }

    #[test]
    fn rounding_to_float32_moves_each_score_within_its_bound() {
        let mut rng = Rng::new(77);
        let mut worst = 0f64;
        let (mut m64, mut m32) = (Vec::new(), Vec::new());
        for (t, c, tol) in [(2, 2, 0.0), (5, 3, 1e-3), (20, 10, 1e-6), (64, 50, 0.0)] {
            for trial in 0..200u64 {
                let p = row(&mut rng, t, c, trial % 4, tol);
                let mut planes = Vec::new();
                round_planes(&p, t, c, &mut planes);
                let q: Vec<f64> = planes.iter().map(|&x| x as f64).collect();
                for (a, b) in p.chunks_exact(c).zip(q.chunks_exact(c)) {
                    let first_max =
                        |v: &[f64]| (0..c).fold(0, |best, j| if v[j] > v[best] { j } else { best });
                    assert_eq!(first_max(a), first_max(b), "{a:?} -> {b:?}");
                }
                for d in Disagreement::ALL {
                    for base in [LogBase::E, LogBase::Two] {
                        let exact = disagreement(d, base, &p, c, &mut m64);
                        let got = disagreement(d, base, &q, c, &mut m32);
                        let bound = gpu_rounded_samples_bound(d, c, t, tol, base.ln());
                        let diff = (exact - got).abs();
                        assert!(diff <= bound, "{d} T={t} C={c}: {diff:e} > {bound:e}");
                        if bound > 0.0 {
                            worst = worst.max(diff / bound);
                        }
                    }
                }
            }
        }
        // The bound is not vacuous: the rounding reaches a fair part of it.
        assert!(worst > 1e-3, "{worst}");
    }
}
