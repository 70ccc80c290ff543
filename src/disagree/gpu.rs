//! The disagreement strategies with a GPU kernel, and regression's spread
//! (`std`), over T samples: the
//! chunked select of [`crate::backend::gpu`], with each chunk's T planes
//! uploaded and the kernel's f32 score (`shaders/select.wgsl`,
//! `score_samples`) filtering rows inside the interval
//! [`gpu_samples_bound`] proves. Every candidate,
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
use crate::score::fast::gpu_samples_bound;
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
    if samples.has_f64() {
        return Err(Error::Config(format!(
            "{}: float64 samples are scored on the CPU (WGSL has no float64): use --device cpu or auto, or store them as float32",
            samples.path().display()
        )));
    }
    let (t, c) = (samples.samples(), samples.classes());
    let bound = match (rule, job.input) {
        (
            Rule::Disagree(d),
            InputForm::Probs {
                sum_tol,
                renormalize: false,
            },
        ) => gpu_samples_bound(d, c, t, sum_tol, job.log_base.ln()),
        (Rule::Disagree(d), _) => {
            return Err(Error::Config(format!(
                "{d} on the GPU reads plain probabilities; renormalized samples are scored on the CPU (--device cpu)"
            )));
        }
        // The kernel makes each row's interval from its own values (as
        // for mean-std); this covers the canonical f64 spread's rounding.
        (Rule::Spread, _) => (1e-30, 1e-8),
    };
    let k = job.k.min(samples.rows() as usize);
    let max_rows = chunk_rows(gpu, t * c, job.chunk_rows);
    let r_max = max_rows.min(samples.rows());
    let mut run = Chunked::samples(gpu, job, k, (t, c, 0), r_max, bound)?;
    let step = max_rows.max(1);
    let mut src = SampleRows {
        samples,
        job,
        rule,
        chunks: (0..samples.rows().div_ceil(step))
            .map(|i| (i * step, ((i + 1) * step).min(samples.rows())))
            .collect(),
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
        let scratch = (&mut self.bufs, &mut self.planes);
        upload_planes(self.samples, self.chunks[i], run, slot, scratch).map(|_| ())
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
