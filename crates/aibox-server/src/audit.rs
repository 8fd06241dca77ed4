//! The audit log's writer. Requests hand their events to a queue; one
//! thread writes whatever has queued up in a single transaction, so a
//! request never waits on SQLite for its audit entry, and a flood of
//! events costs one transaction per batch, not one per event (the
//! review's M7).
//!
//! Floods of refusals collapse: an `auth.failure` (or `policy.denied`)
//! equal in actor, reason and peer to one written in the last [`WINDOW`]
//! is counted, not written, and the count is written as one entry
//! (`"repeated": N`) when the window closes; a sandbox's `egress.deny`
//! and `egress.allow` entries are written one by one up to
//! [`EGRESS_DENIALS`] of each per window, then counted the same way. So a client hammering the API with a bad
//! key, or a sandbox trying random names, grows the log by a few entries
//! every ten seconds, not by one per attempt.
//!
//! Order is kept: entries are written in the order they were recorded, and
//! [`Auditor::flush`] returns once everything recorded before it is on
//! disk (readers of the log flush first).

use crate::store::{AuditEvent, Store};
use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long equal refusals are counted rather than written.
pub const WINDOW: Duration = Duration::from_secs(10);
/// A sandbox's egress decisions (of each kind) written one by one per
/// window.
pub const EGRESS_DENIALS: u32 = 20;
/// Events queued before `record` waits for the writer (backpressure).
const QUEUE: usize = 16_384;
/// Most events in one transaction.
const BATCH: usize = 4096;

enum Msg {
    Event(AuditEvent),
    Flush(SyncSender<()>),
}

/// The handle requests use; cheap to share.
pub struct Auditor {
    tx: SyncSender<Msg>,
}

impl Auditor {
    /// Start the writer thread for `store`. It ends when the last handle
    /// is dropped, after writing what was queued.
    pub fn start(store: Arc<Store>) -> Auditor {
        let (tx, rx) = sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("aibox-audit".into())
            .spawn(move || Writer::new(store).run(rx));
        if let Err(e) = spawned {
            // Without the thread nothing would ever be written: a server
            // that cannot audit must not run.
            tracing::error!(error = %e, "cannot start the audit writer");
            std::process::abort();
        }
        Auditor { tx }
    }

    /// Queue an event. Waits only while the queue is full.
    pub fn record(&self, event: AuditEvent) {
        if self.tx.send(Msg::Event(event)).is_err() {
            tracing::error!("the audit writer has stopped: an event was not recorded");
        }
    }

    /// Wait until everything recorded so far is written (counted floods
    /// included).
    pub fn flush(&self) {
        let (done, wait) = sync_channel(1);
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }
}

/// A collapsed flood: how many were written and how many more counted,
/// since when.
struct Counted {
    first: AuditEvent,
    since: Instant,
    written: u32,
    more: u64,
}

struct Writer {
    store: Arc<Store>,
    pending: Vec<AuditEvent>,
    counted: HashMap<String, Counted>,
}

/// Refusals that collapse: the fields that make two of them "the same",
/// and how many of them a window writes one by one.
fn flood_key(e: &AuditEvent) -> Option<(String, u32)> {
    let sandbox = e.sandbox.as_deref().unwrap_or("");
    match e.action.as_str() {
        // Equal in every detail: different refusals never hide each other.
        "auth.failure" | "policy.denied" => Some((
            format!(
                "{}\u{0}{}\u{0}{sandbox}\u{0}{}",
                e.action, e.actor, e.detail
            ),
            1,
        )),
        "egress.deny" | "egress.allow" => {
            Some((format!("{}\u{0}{sandbox}", e.action), EGRESS_DENIALS))
        }
        _ => None,
    }
}

impl Writer {
    fn new(store: Arc<Store>) -> Writer {
        Writer {
            store,
            pending: Vec::new(),
            counted: HashMap::new(),
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(msg) => {
                    let mut flushes = Vec::new();
                    self.take(msg, &mut flushes);
                    // Everything else already queued joins this batch.
                    while self.pending.len() < BATCH {
                        match rx.try_recv() {
                            Ok(m) => self.take(m, &mut flushes),
                            Err(_) => break,
                        }
                    }
                    if !flushes.is_empty() {
                        self.close_windows(true);
                    }
                    self.write();
                    for f in flushes {
                        let _ = f.send(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.close_windows(true);
                    self.write();
                    return;
                }
            }
            self.close_windows(false);
            self.write();
        }
    }

    fn take(&mut self, msg: Msg, flushes: &mut Vec<SyncSender<()>>) {
        match msg {
            Msg::Flush(done) => flushes.push(done),
            Msg::Event(e) => match flood_key(&e) {
                None => self.pending.push(e),
                Some((k, budget)) => match self.counted.get_mut(&k) {
                    Some(c) if c.written < budget => {
                        c.written += 1;
                        self.pending.push(e);
                    }
                    Some(c) => c.more += 1,
                    None => {
                        self.counted.insert(
                            k,
                            Counted {
                                first: e.clone(),
                                since: Instant::now(),
                                written: 1,
                                more: 0,
                            },
                        );
                        self.pending.push(e);
                    }
                },
            },
        }
    }

    /// Write the count of each flood whose window has closed (all of them
    /// with `all`).
    fn close_windows(&mut self, all: bool) {
        let now = Instant::now();
        let closed: Vec<String> = self
            .counted
            .iter()
            .filter(|(_, c)| all || now.duration_since(c.since) >= WINDOW)
            .map(|(k, _)| k.clone())
            .collect();
        for k in closed {
            if let Some(c) = self.counted.remove(&k) {
                if c.more > 0 {
                    let mut e = c.first;
                    e.at_ms = crate::now_ms();
                    if e.action.starts_with("egress.") {
                        // Not one destination's: a count of the rest.
                        e.detail = serde_json::json!({"reason": "further refusals, not listed one by one"});
                    }
                    e.detail["repeated"] = serde_json::json!(c.more);
                    e.detail["window_s"] = serde_json::json!(WINDOW.as_secs());
                    self.pending.push(e);
                }
            }
        }
    }

    fn write(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        if let Err(e) = self.store.audit_batch(&batch) {
            tracing::error!(error = %e, events = batch.len(), "cannot write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str, reason: &str) -> AuditEvent {
        AuditEvent {
            at_ms: 1,
            actor: "anonymous".into(),
            action: action.into(),
            sandbox: None,
            detail: serde_json::json!({ "reason": reason }),
        }
    }

    #[test]
    fn floods_collapse_and_order_and_the_chain_hold() {
        let store = Arc::new(Store::in_memory().unwrap());
        let a = Auditor::start(store.clone());
        a.record(ev("key.create", ""));
        for _ in 0..1000 {
            a.record(ev("auth.failure", "unknown or revoked key"));
        }
        a.record(ev("auth.failure", "missing key"));
        a.record(ev("sandbox.create", ""));
        a.flush();
        let all = store.audit_entries(0, 100).unwrap();
        let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "key.create",
                "auth.failure",
                "auth.failure",
                "sandbox.create",
                "auth.failure"
            ],
            "{all:?}"
        );
        assert_eq!(all[4].detail["repeated"], 999);
        // A sandbox's egress refusals: a budget one by one, then a count.
        for i in 0..100 {
            let mut e = ev("egress.deny", "no rule allows it");
            e.sandbox = Some("sb".into());
            e.detail["destination"] = serde_json::json!(format!("{i}.example:443"));
            a.record(e);
        }
        a.flush();
        let all = store.audit_entries(5, 100).unwrap();
        assert_eq!(all.len(), EGRESS_DENIALS as usize + 1, "{all:?}");
        assert_eq!(all.last().unwrap().detail["repeated"], 100 - EGRESS_DENIALS);
        assert_eq!(store.audit_verify().unwrap(), None);
    }
}
