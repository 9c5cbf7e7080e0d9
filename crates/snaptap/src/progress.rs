//! Progress on a terminal while probe resolution reads large debug info (libc's or
//! python's can take a noticeable fraction of a second): shown only when stderr is a
//! terminal and only after 300 ms, on one line that is cleared afterwards.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

static SHOWN: AtomicBool = AtomicBool::new(false);

/// Starts reporting the planner's progress messages (no-op when stderr is not a terminal).
pub fn start() {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let t0 = Instant::now();
    planner::set_progress(Some(Arc::new(move |msg: &str| {
        if t0.elapsed() >= Duration::from_millis(300) {
            SHOWN.store(true, Ordering::Relaxed);
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[K{msg}");
            let _ = e.flush();
        }
    })));
}

/// Stops reporting and clears the progress line if one was shown.
pub fn finish() {
    planner::set_progress(None);
    if SHOWN.swap(false, Ordering::Relaxed) {
        eprint!("\r\x1b[K");
    }
}
