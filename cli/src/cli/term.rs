//! How the commands talk to the terminal: standard output that a closed pipe ends
//! quietly (`cordon simulate … | head -1`), and progress on standard error only when a
//! person is watching it.

use std::io::{BufWriter, IsTerminal, StdoutLock, Write};
use std::time::{Duration, Instant};

/// Standard output, buffered. Write with `writeln!(out, …)?`: when the reader has gone
/// away the write fails with [`std::io::ErrorKind::BrokenPipe`], the command returns the
/// error, and `main` ends quietly with exit 0 (see [`is_broken_pipe`]).
pub fn stdout() -> BufWriter<StdoutLock<'static>> {
    BufWriter::new(std::io::stdout().lock())
}

/// Writes `text` to standard output and flushes (for commands that print one document).
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = stdout();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Whether the command failed only because standard output was closed under it: the
/// reader (`head`, a pager) has what it wanted, which is no error.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether progress may be shown: standard error is a terminal, not a pipe, a file or
/// a CI log (`CI` set), and the terminal can return to the start of a line.
pub fn shows_progress() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("CI").is_none()
        && std::env::var_os("TERM").is_none_or(|term| term != "dumb")
}

/// A one-line counter on standard error, redrawn at most ten times a second, and only
/// when [`shows_progress`].
pub struct Progress {
    enabled: bool,
    what: &'static str,
    total: Option<usize>,
    last: Option<Instant>,
}

impl Progress {
    /// A counter of `what` (`records`, `cases`), out of `total` when known.
    pub fn new(what: &'static str, total: Option<usize>) -> Progress {
        Progress {
            enabled: shows_progress(),
            what,
            total,
            last: None,
        }
    }

    /// No counter when `quiet` (say, when the lines it would interleave with go to the same
    /// terminal).
    pub fn unless(mut self, quiet: bool) -> Progress {
        self.enabled &= !quiet;
        self
    }

    /// `done` of them are done.
    pub fn tick(&mut self, done: usize) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        let mut err = std::io::stderr().lock();
        // Progress is a courtesy: a failing terminal write is not the command's failure.
        let _ = match self.total {
            Some(total) => write!(err, "\r  {} {done}/{total}", self.what),
            None => write!(err, "\r  {} {done}", self.what),
        };
        let _ = err.flush();
    }

    /// Clears the line, before the command prints its result.
    pub fn finish(&mut self) {
        if self.last.take().is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// For a long step that reports no count (`audit`, `discover` reading their traffic): the
/// seconds it has run, redrawn twice a second on standard error while the ticker lives,
/// and only when [`shows_progress`]. Dropping it clears the line.
pub struct Ticker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Starts ticking `what` (`auditing`, `discovering`).
    pub fn start(what: &'static str) -> Ticker {
        if !shows_progress() {
            return Ticker {
                stop: None,
                thread: None,
            };
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            loop {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r  {what}… {} s", started.elapsed().as_secs());
                let _ = err.flush();
                drop(err);
                match stopped.recv_timeout(Duration::from_millis(500)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        });
        Ticker {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread, which clears its line and ends.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
