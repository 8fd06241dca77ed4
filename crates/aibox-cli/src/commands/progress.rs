//! A progress line for long operations.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// "what… 1.2s" on stderr while a long operation runs (when stderr is a
/// terminal), cleared when it ends.
pub struct Progress {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(what: String) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress {
                stop: None,
                thread: None,
            };
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let t = Instant::now();
            // Quick operations show nothing.
            if rx.recv_timeout(Duration::from_millis(300)).is_ok() {
                return;
            }
            loop {
                eprint!("\r{what}… {:.1}s ", t.elapsed().as_secs_f64());
                let _ = std::io::stderr().flush();
                if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                    eprint!("\r\x1b[K");
                    return;
                }
            }
        });
        Progress {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
