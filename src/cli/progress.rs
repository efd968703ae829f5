//! The command line's [`Progress`]: on a terminal, one line on stderr redrawn up to ten
//! times a second (`backup: 1,204/5,310 blobs, 1.2/4.8 GiB, 25%, 38 MiB/s`); elsewhere (the
//! journal, a pipe) a plain line when the work is known and then every ten seconds.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backup::human_bytes as human;
use crate::progress::Progress;

pub struct Reporter {
    what: &'static str,
    unit: &'static str,
    tty: bool,
    state: Mutex<State>,
}

struct State {
    items: (u64, u64),
    bytes: (u64, u64),
    started: Instant,
    drawn: Option<Instant>,
    /// A terminal line is drawn and not yet ended.
    open: bool,
}

impl Reporter {
    /// A reporter for `what` (e.g. "backup"), counting `unit`s (e.g. "blobs").
    pub fn new(what: &'static str, unit: &'static str) -> Reporter {
        Reporter {
            what,
            unit,
            tty: std::io::stderr().is_terminal(),
            state: Mutex::new(State {
                items: (0, 0),
                bytes: (0, 0),
                started: Instant::now(),
                drawn: None,
                open: false,
            }),
        }
    }

    fn line(&self, s: &State) -> String {
        let (done, total) = s.items;
        let (bdone, btotal) = s.bytes;
        // By bytes when they are known, else by items; nothing to do is done.
        let pct = bdone
            .saturating_mul(100)
            .checked_div(btotal)
            .or_else(|| done.saturating_mul(100).checked_div(total))
            .unwrap_or(100);
        let secs = s.started.elapsed().as_secs_f64().max(0.001);
        let size = if btotal > 0 {
            format!("{} of {}", human(bdone), human(btotal))
        } else {
            human(bdone)
        };
        let rate = human((bdone as f64 / secs) as u64);
        if total == 0 {
            // The amount of work was never told (or is none): counts only.
            return format!("{}: {done} {}, {size}, {rate}/s", self.what, self.unit);
        }
        format!(
            "{}: {done}/{total} {}, {size}, {pct}%, {rate}/s",
            self.what, self.unit
        )
    }

    fn draw(&self, s: &mut State, force: bool, last: bool) {
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(10)
        };
        if !force && s.drawn.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        s.drawn = Some(Instant::now());
        let line = self.line(s);
        let mut err = std::io::stderr().lock();
        let _ = if !self.tty {
            writeln!(err, "{line}")
        } else if last {
            // The finished line stays, and what the command prints next starts below it.
            s.open = false;
            writeln!(err, "\r{line}\x1b[K")
        } else {
            s.open = true;
            write!(err, "\r{line}\x1b[K")
        };
        let _ = err.flush();
    }

    /// Ends an unfinished bar (the command prints its own summary or error next).
    pub fn finish(&self) {
        if self.tty
            && let Ok(mut s) = self.state.lock()
            && s.open
        {
            s.open = false;
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

impl Progress for Reporter {
    fn total(&self, items: u64, bytes: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.items = (0, items);
            s.bytes = (0, bytes);
            let nothing = items == 0;
            self.draw(&mut s, true, nothing);
        }
    }

    fn step(&self, bytes: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.items.0 += 1;
            s.bytes.0 += bytes;
            let last = s.items.0 == s.items.1;
            self.draw(&mut s, last, last);
        }
    }
}
