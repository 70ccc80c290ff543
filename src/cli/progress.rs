//! A progress bar on stderr, shown only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use alpool::backend::Progress;

pub struct Bar(Option<ProgressBar>);

impl Bar {
    /// A byte-counting bar for `total` bytes, or nothing when `quiet`, when
    /// stderr is not a terminal, or when the work is too small to notice.
    pub fn bytes(total: u64, quiet: bool, label: &str) -> Bar {
        if quiet || total < (64 << 20) {
            return Bar(None);
        }
        Bar::shown(
            total,
            label,
            "{prefix} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
    }

    /// An item-counting bar for `total` items, or nothing when stderr is not
    /// a terminal or the work is too small to notice.
    pub fn items(total: u64, label: &str) -> Bar {
        if total < 1_000_000 {
            return Bar(None);
        }
        Bar::shown(
            total,
            label,
            "{prefix} [{bar:40}] {human_pos}/{human_len} items eta {eta}",
        )
    }

    /// A bar counting `total` runs of a simulation, when stderr is a
    /// terminal.
    pub fn runs(total: u64, label: &str) -> Bar {
        Bar::shown(
            total,
            label,
            "{prefix} [{bar:40}] {pos}/{len} runs eta {eta}",
        )
    }

    /// A bar in `template`, when stderr is a terminal.
    fn shown(total: u64, label: &str, template: &str) -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let pb = ProgressBar::new(total);
        pb.set_style(
            ProgressStyle::with_template(template)
                .expect("static template")
                .progress_chars("=> "),
        );
        pb.set_prefix(label.to_string());
        Bar(Some(pb))
    }

    pub fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn advance(&self, bytes: u64) {
        if let Some(pb) = &self.0 {
            pb.inc(bytes);
        }
    }
}
