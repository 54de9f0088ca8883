//! The bounded line queue between the threads that log and the one thread
//! that writes: [`QueueWriter::write`] never blocks (a full queue drops the
//! line and counts it), and the writer thread reports the count as
//! "N log lines dropped" once it catches up.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// How often the writer reports drops while no line arrives.
const REPORT_EVERY: Duration = Duration::from_secs(1);

enum Entry {
    Line(Vec<u8>),
    /// Everything queued before this is written; then the sender is told.
    Flush(SyncSender<()>),
}

/// The sending side of the queue, shared by every logging thread.
pub struct LogQueue {
    tx: SyncSender<Entry>,
    dropped: Arc<AtomicU64>,
}

impl LogQueue {
    /// Starts the writer thread draining into `out`, with room for
    /// `capacity` lines.
    pub fn start(capacity: usize, out: Box<dyn Write + Send>) -> LogQueue {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_lines(rx, out, &counted))
            .expect("spawn the log writer thread");
        LogQueue { tx, dropped }
    }

    /// A writer for one logger: each `write` call is one line.
    pub fn writer(&self) -> QueueWriter {
        QueueWriter {
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
        }
    }

    /// Waits (at most `wait`) until every line queued so far is written.
    pub fn flush(&self, wait: Duration) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.tx.send(Entry::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(wait);
        }
    }
}

/// [`Write`] into the queue, never blocking.
pub struct QueueWriter {
    tx: SyncSender<Entry>,
    dropped: Arc<AtomicU64>,
}

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.tx.try_send(Entry::Line(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer is gone (it panicked): nothing left to log to.
            Err(TrySendError::Disconnected(_)) => {}
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The writer thread: lines in order, drop reports between them.
fn write_lines(rx: mpsc::Receiver<Entry>, mut out: Box<dyn Write + Send>, dropped: &AtomicU64) {
    let report = |out: &mut Box<dyn Write + Send>| {
        let n = dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            let _ = writeln!(
                out,
                "shardcast: {n} log lines dropped (the log queue was full)"
            );
        }
    };
    loop {
        match rx.recv_timeout(REPORT_EVERY) {
            Ok(Entry::Line(line)) => {
                let _ = out.write_all(&line);
                report(&mut out);
            }
            Ok(Entry::Flush(ack)) => {
                report(&mut out);
                let _ = out.flush();
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => report(&mut out),
            Err(RecvTimeoutError::Disconnected) => {
                report(&mut out);
                let _ = out.flush();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Receiver;
    use std::sync::Mutex;

    /// A sink that tells when a write starts and waits for leave to finish it.
    struct Gate {
        written: Arc<Mutex<Vec<u8>>>,
        started: SyncSender<()>,
        leave: Receiver<()>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.started.send(());
            let _ = self.leave.recv();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_lines_and_the_writer_reports_how_many() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, started) = mpsc::sync_channel(64);
        let (leave, leave_rx) = mpsc::sync_channel(64);
        let gate = Gate {
            written: written.clone(),
            started: started_tx,
            leave: leave_rx,
        };
        let queue = LogQueue::start(2, Box::new(gate));
        let mut w = queue.writer();
        w.write_all(b"first\n").unwrap();
        // The writer holds "first" in a blocked write: the queue is empty.
        started.recv().unwrap();
        for line in ["second\n", "third\n", "x\n", "y\n", "z\n"] {
            w.write_all(line.as_bytes()).unwrap(); // never blocks
        }
        for _ in 0..64 {
            let _ = leave.send(());
        }
        queue.flush(Duration::from_secs(5));
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let (reports, kept): (Vec<&str>, Vec<&str>) =
            text.lines().partition(|l| l.contains("dropped"));
        assert_eq!(kept, ["first", "second", "third"], "{text:?}");
        assert_eq!(
            reports,
            ["shardcast: 3 log lines dropped (the log queue was full)"]
        );
    }

    #[test]
    fn flush_waits_for_every_queued_line() {
        let written = Arc::new(Mutex::new(Vec::new()));
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let queue = LogQueue::start(100, Box::new(Shared(written.clone())));
        let mut w = queue.writer();
        for i in 0..50 {
            // One write a line, as env_logger's pipe target does.
            w.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        queue.flush(Duration::from_secs(5));
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 50, "{text}");
        assert!(text.ends_with("line 49\n"));
    }
}
