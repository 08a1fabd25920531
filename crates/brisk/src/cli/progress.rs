//! A spinner on stderr for slow operations, shown only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

const FRAMES: &[char] = &['|', '/', '-', '\\'];

/// Runs until dropped; clears its line when it has drawn anything.
pub struct Spinner {
    task: JoinHandle<()>,
    drawn: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Spinner {
    /// Starts after `delay`; `None` when stderr is not a terminal (scripts and tests see nothing).
    pub fn start(message: String, delay: Duration) -> Option<Self> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let drawn = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = drawn.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            tokio::time::sleep(delay).await;
            let mut frame = 0;
            loop {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                let mut err = std::io::stderr();
                let _ = write!(
                    err,
                    "\r{} {message} ({:.1}s)\x1b[K",
                    FRAMES[frame % FRAMES.len()],
                    started.elapsed().as_secs_f64()
                );
                let _ = err.flush();
                frame += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Some(Self { task, drawn })
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.task.abort();
        if self.drawn.load(std::sync::atomic::Ordering::SeqCst) {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}
