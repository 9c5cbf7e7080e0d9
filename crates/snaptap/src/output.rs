//! `--format json`: the script's output as JSON lines, one object per output line, with
//! the probe point and context of the handler that printed it, for log pipelines.
//!
//! The runtime writes text into a shared buffer; after every handler the driver calls
//! [`JsonLines::emit`], which turns the complete lines written so far into objects
//! `{"time_ns":…,"probe":"…","pid":…,"tid":…,"line":"…"}`.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// A `Write` the runtime prints into; shared with [`JsonLines`].
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Context of the handler whose output is being emitted.
pub struct Origin<'a> {
    /// `pp()` of the probe (or `begin`, `end`, `timer`).
    pub probe: &'a str,
    /// Process id (0 outside process probes).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Time of the hit, ns since the epoch.
    pub time_ns: u64,
}

/// Turns captured text into JSON lines on the real output.
pub struct JsonLines {
    captured: Captured,
    out: Box<dyn Write>,
}

impl JsonLines {
    /// A converter writing to `out`; the runtime must print into the returned `Captured`.
    pub fn new(out: Box<dyn Write>) -> (JsonLines, Captured) {
        let captured = Captured::default();
        (
            JsonLines {
                captured: captured.clone(),
                out,
            },
            captured,
        )
    }

    /// Emits every complete line captured so far as one JSON object each; a partial
    /// last line stays until a later handler completes it (or [`JsonLines::finish`]).
    pub fn emit(&mut self, origin: &Origin<'_>) {
        let mut buf = self.captured.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let text: Vec<u8> = buf.drain(..=end).collect();
        drop(buf);
        // `text` ends with the newline: every piece before it is one output line.
        for line in text[..text.len() - 1].split(|&b| b == b'\n') {
            self.line(origin, line);
        }
        let _ = self.out.flush();
    }

    fn line(&mut self, origin: &Origin<'_>, line: &[u8]) {
        let obj = serde_json::json!({
            "time_ns": origin.time_ns,
            "probe": origin.probe,
            "pid": origin.pid,
            "tid": origin.tid,
            "line": String::from_utf8_lossy(line),
        });
        let _ = writeln!(self.out, "{obj}");
    }

    /// Emits whatever is left, complete line or not.
    pub fn finish(&mut self, origin: &Origin<'_>) {
        self.emit(origin);
        let rest: Vec<u8> =
            std::mem::take(&mut *self.captured.0.lock().unwrap_or_else(|e| e.into_inner()));
        if !rest.is_empty() {
            self.line(origin, &rest);
        }
        let _ = self.out.flush();
    }
}
