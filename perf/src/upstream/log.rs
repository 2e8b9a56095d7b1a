//! The request log: every request head the simulator parsed, kept in memory for
//! [`super::UpstreamHandle::requests`] and optionally appended to a JSON-lines file.
//!
//! Written once per request under a Mutex (test tooling); nothing here is touched per event.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::http::RequestHead;
use super::query::ChaosKind;

/// One request as the simulator received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// Method as sent.
    pub method: String,
    /// Request target as sent, query included.
    pub path: String,
    /// The `Last-Event-ID` header, when sent.
    pub last_event_id: Option<String>,
    /// Every header field in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Which TCP connection carried it (1, 2, ... in accept order across all threads).
    pub conn_id: u64,
}

impl RequestRecord {
    pub(crate) fn from_head(head: &RequestHead, conn_id: u64) -> Self {
        Self {
            method: head.method.clone(),
            path: head.target.clone(),
            last_event_id: head.last_event_id.clone(),
            headers: head.headers.clone(),
            conn_id,
        }
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The log file's line for this record (without the newline):
    /// `{"method":"GET","path":"/sse?...","last_event_id":"7","conn":3}`
    /// (`"last_event_id":null` when absent).
    pub fn json_line(&self) -> String {
        let mut s = String::with_capacity(64 + self.path.len());
        s.push_str("{\"method\":");
        push_json_str(&mut s, &self.method);
        s.push_str(",\"path\":");
        push_json_str(&mut s, &self.path);
        s.push_str(",\"last_event_id\":");
        match &self.last_event_id {
            Some(id) => push_json_str(&mut s, id),
            None => s.push_str("null"),
        }
        s.push_str(",\"conn\":");
        s.push_str(&self.conn_id.to_string());
        s.push('}');
        s
    }
}

/// Appends `v` as a JSON string literal (RFC 8259 escaping).
pub(crate) fn push_json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// State shared by all worker threads of one simulator and its handle.
pub(crate) struct Shared {
    /// Every request so far (when `keep_requests`).
    requests: Mutex<Vec<RequestRecord>>,
    /// Keep records in memory (the binary does not: nobody could read them).
    keep_requests: bool,
    /// `--log FILE`, opened for append; one `write` per line.
    log: Option<Mutex<File>>,
    /// Next connection id.
    next_conn: AtomicU64,
    /// `resume_status_times` bookkeeping: resume requests answered with the status, by target.
    resume_status_counts: Mutex<HashMap<String, u64>>,
    /// Faults injected by `chaos=N`, by kind (indexed like [`ChaosKind::ALL`]).
    faults: [AtomicU64; 4],
    /// Times the listener was paused (connections refused meanwhile).
    refusals: AtomicU64,
}

/// What the simulator injected so far (see [`super::UpstreamHandle::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Connections accepted.
    pub connections: u64,
    /// `chaos` faults injected, by kind: FIN, RST, stall, half an event then FIN.
    pub fin: u64,
    pub rst: u64,
    pub stall: u64,
    pub half: u64,
    /// Listener pauses ([`super::UpstreamHandle::pause_listening`], SIGUSR1 for the binary).
    pub refusal_windows: u64,
}

impl FaultStats {
    /// Every injected connection fault (the refusal windows not included).
    pub fn faults(&self) -> u64 {
        self.fin + self.rst + self.stall + self.half
    }

    /// One JSON object: `{"connections":N,"fin":N,"rst":N,"stall":N,"half":N,"refusal_windows":N}`.
    pub fn json(&self) -> String {
        format!(
            "{{\"connections\":{},\"fin\":{},\"rst\":{},\"stall\":{},\"half\":{},\"refusal_windows\":{}}}",
            self.connections, self.fin, self.rst, self.stall, self.half, self.refusal_windows
        )
    }
}

impl Shared {
    pub(crate) fn new(keep_requests: bool, log: Option<File>) -> Self {
        Self {
            requests: Mutex::new(Vec::new()),
            keep_requests,
            log: log.map(Mutex::new),
            next_conn: AtomicU64::new(1),
            resume_status_counts: Mutex::new(HashMap::new()),
            faults: Default::default(),
            refusals: AtomicU64::new(0),
        }
    }

    /// Counts one injected `chaos` fault.
    pub(crate) fn count_fault(&self, kind: ChaosKind) {
        self.faults[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one listener pause.
    pub(crate) fn count_refusal_window(&self) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> FaultStats {
        let f = |k: ChaosKind| self.faults[k as usize].load(Ordering::Relaxed);
        FaultStats {
            connections: self.next_conn.load(Ordering::Relaxed) - 1,
            fin: f(ChaosKind::Fin),
            rst: f(ChaosKind::Rst),
            stall: f(ChaosKind::Stall),
            half: f(ChaosKind::Half),
            refusal_windows: self.refusals.load(Ordering::Relaxed),
        }
    }

    /// A fresh connection id.
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a request: in memory and in the log file (flushed: one write per line).
    pub(crate) fn record(&self, head: &RequestHead, conn_id: u64) {
        if !self.keep_requests && self.log.is_none() {
            return;
        }
        let rec = RequestRecord::from_head(head, conn_id);
        if let Some(log) = &self.log {
            let mut line = rec.json_line();
            line.push('\n');
            let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
            // A failing log write must not take the server down; the test will notice.
            let _ = f.write_all(line.as_bytes());
        }
        if self.keep_requests {
            self.requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(rec);
        }
    }

    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts one more resume request for `target` and returns the new count (1 for the first).
    pub(crate) fn bump_resume_status(&self, target: &str) -> u64 {
        let mut m = self
            .resume_status_counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = m.entry(target.to_string()).or_insert(0);
        *n += 1;
        *n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escaping() {
        let rec = RequestRecord {
            method: "GET".into(),
            path: "/sse?a=\"b\"&c=\\".into(),
            last_event_id: Some("x\ny\u{1}\t".into()),
            headers: vec![],
            conn_id: 3,
        };
        assert_eq!(
            rec.json_line(),
            r#"{"method":"GET","path":"/sse?a=\"b\"&c=\\","last_event_id":"x\ny\u0001\t","conn":3}"#
        );
        let rec = RequestRecord {
            last_event_id: None,
            path: "/é".into(),
            ..rec
        };
        assert_eq!(
            rec.json_line(),
            r#"{"method":"GET","path":"/é","last_event_id":null,"conn":3}"#
        );
    }
}
