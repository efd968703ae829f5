//! Log lines the systemd journal understands. Under systemd, stdout is a stream to the
//! journal, which stamps every line itself and reads a leading `<N>` as its syslog priority:
//! so there, lines carry the priority (`journalctl -p warning` finds warnings) and no
//! timestamp of their own. Anywhere else the usual format stays.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether file descriptor `fd` (1 or 2) is the journal stream systemd names in
/// `JOURNAL_STREAM` (`device:inode` of the stream; a child that inherited the variable but
/// writes elsewhere must not match).
pub fn fd_is_journal(fd: u8) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(named) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|m| names_stream(&named, m.dev(), m.ino()))
}

fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// The syslog priority of a level: err, warning, info, debug.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// `<N>target: message fields`, one line per event.
pub struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write!(writer, "<{}>{}: ", priority(meta.level()), meta.target())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::prelude::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_carry_the_priority_and_no_timestamp() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(JournalFormat)
                .with_writer(move || out.clone())
                .with_ansi(false),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("disk gone");
            tracing::warn!(client = "192.0.2.7", "login failed");
            tracing::info!("listening");
            tracing::debug!("detail");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let me = module_path!();
        assert_eq!(
            text,
            format!(
                "<3>{me}: disk gone\n<4>{me}: login failed client=\"192.0.2.7\"\n\
                 <6>{me}: listening\n<7>{me}: detail\n"
            )
        );
    }

    #[test]
    fn only_the_named_stream_is_the_journal() {
        assert!(names_stream("2049:123456", 2049, 123456));
        assert!(!names_stream("2049:123456", 2049, 123457));
        assert!(!names_stream("2049", 2049, 123456));
        assert!(!names_stream("", 0, 0));
        assert!(!names_stream("x:y", 0, 0));
    }
}
