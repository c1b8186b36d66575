//! Progress bars for large transfers, on stderr, only when stderr is a terminal: scripts and
//! logs see nothing but the outcome. Labels carry the bundle id only.

use std::io::IsTerminal;
use std::sync::Mutex;

use dossier_node::relay_client::TransferProgress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Transfers smaller than this finish before a bar is worth drawing.
const MIN_BYTES_FOR_BAR: u64 = 8 * 1024 * 1024;

pub struct TerminalProgress {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl TerminalProgress {
    pub fn new() -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }
}

impl TransferProgress for TerminalProgress {
    fn start(&self, label: &str, total: u64, done: u64) {
        if !self.enabled || total < MIN_BYTES_FOR_BAR {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.chars().take(48).collect::<String>());
        bar.set_position(done);
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.inc(n);
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }
}
