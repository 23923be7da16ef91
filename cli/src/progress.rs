//! Progress bars: a thread samples the engine's live counters and draws them with
//! indicatif (bytes, files, throughput, ETA). Totals grow while the walk discovers work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use blit_core::Stats;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A running progress display; stops and clears itself on `finish`.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn start(stats: Arc<Stats>) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}\n  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let s = stats.snapshot();
                    bar.set_length(s.bytes_planned);
                    bar.set_position(s.bytes_done);
                    bar.set_message(format!(
                        "files {}/{} · {} entries checked",
                        s.files_done, s.files_planned, s.entries_seen
                    ));
                    std::thread::sleep(Duration::from_millis(100));
                }
                bar.finish_and_clear();
            })
        };
        Progress {
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
