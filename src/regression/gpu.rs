//! EMCM on the GPU: the chunked select of [`crate::backend::gpu`], each
//! chunk's rows uploaded as T planes of ensemble predictions, a plane of
//! the model's predictions and the rows' features, and the kernel's f32
//! score (`shaders/select.wgsl`, `score_emcm`) filtering rows inside the
//! interval it proves for each. Every candidate, and every row the kernel
//! cannot decide, is read back from the files and scored canonically
//! ([`super::score_chunk`]), so the picks and scores are the CPU's.

use super::{EmcmInputs, Scratch, check, score_chunk};
use crate::backend::Progress;
use crate::backend::gpu::{Chunked, Gpu, Phases, Rescore, Source, chunk_rows, drive};
use crate::batch::{Bufs, read_rows};
use crate::disagree::gpu::upload_planes;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::samples::ReadBufs;
use crate::score::Ranked;
use crate::select::Selection;

/// The k rows of largest EMCM (ties to the lower row) on the GPU.
pub(crate) fn select(
    gpu: &Gpu,
    inp: &EmcmInputs,
    job: &Job,
    progress: &dyn Progress,
) -> Result<(Selection, Phases)> {
    check(inp, job)?;
    let float64 = [
        (inp.samples.has_f64(), inp.samples.path()),
        (inp.preds.has_f64(), inp.preds.path()),
        (inp.emb.has_f64(), inp.emb.path()),
    ];
    if let Some((_, path)) = float64.iter().find(|f| f.0) {
        return Err(Error::Config(format!(
            "{}: float64 values are scored on the CPU (WGSL has no float64): use --device cpu or auto, or store them as float32",
            path.display()
        )));
    }
    let (t, d, n) = (inp.samples.samples(), inp.emb.classes(), inp.samples.rows());
    let k = job.k.min(n as usize);
    let step = chunk_rows(gpu, t + 1 + d, job.chunk_rows).max(1);
    // The kernel bounds each row from its own values; this covers the
    // canonical f64 score's rounding.
    let mut run = Chunked::samples(gpu, job, k, (t, 1, 1 + d), step.min(n), (1e-30, 1e-8))?;
    let mut src = EmcmRows {
        inp,
        job,
        chunks: (0..n.div_ceil(step))
            .map(|i| (i * step, ((i + 1) * step).min(n)))
            .collect(),
        scratch: Scratch::default(),
        read: ReadBufs::default(),
        bufs: Bufs::default(),
        planes: Vec::new(),
    };
    drive(&mut run, k, &mut src, progress)?;
    Ok(run.finish(n))
}

/// The chunks (local rows) and the scratch that reads them.
struct EmcmRows<'s> {
    inp: &'s EmcmInputs<'s>,
    job: &'s Job,
    chunks: Vec<(u64, u64)>,
    scratch: Scratch,
    read: ReadBufs,
    bufs: Bufs,
    planes: Vec<f32>,
}

impl Rescore for EmcmRows<'_> {
    fn ranked(&mut self, rows: &[u64]) -> Result<Vec<Ranked>> {
        let g0 = self.inp.samples.first_row();
        let mut out = Vec::with_capacity(rows.len());
        for &index in rows {
            let r = index - g0;
            let mut priority = f64::NAN;
            let each = &mut |_, v| priority = v;
            score_chunk(self.inp, self.job, (r, r + 1), &mut self.scratch, each)?;
            out.push(Ranked { priority, index });
        }
        Ok(out)
    }
}

impl Source for EmcmRows<'_> {
    fn chunks(&self) -> usize {
        self.chunks.len()
    }

    fn enter(&mut self, i: usize) -> (u64, u64, u64) {
        let (start, end) = self.chunks[i];
        let n = self.inp.samples.rows().max(1);
        let bytes = self.inp.samples.data_bytes() + self.inp.preds.data_bytes();
        let row_bytes = (bytes + self.inp.emb.data_bytes()) / n;
        (
            self.inp.samples.first_row() + start,
            end - start,
            (end - start) * row_bytes,
        )
    }

    /// Sample t's rows go to plane t, the model's predictions to plane T,
    /// the features after them, row by row.
    fn upload(&mut self, run: &Chunked, slot: usize, i: usize) -> Result<()> {
        let span = self.chunks[i];
        let samples = self.inp.samples;
        let scratch = (&mut self.read, &mut self.planes);
        let plane = upload_planes(samples, span, run, slot, scratch)?;
        let (buf, q) = (&run.bufs.rows[slot], &run.gpu.queue);
        let at = samples.samples() as u64 * plane;
        let preds = read_rows(self.inp.preds, span.0, span.1, &mut self.bufs)?;
        q.write_buffer(buf, at, bytemuck::cast_slice(&preds));
        let x = read_rows(self.inp.emb, span.0, span.1, &mut self.bufs)?;
        q.write_buffer(buf, at + plane, bytemuck::cast_slice(&x));
        Ok(())
    }
}
