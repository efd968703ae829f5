//! The `log` key (and `RUST_LOG`): a default level and per-target levels, such as
//! `info` or `perch=debug,hyper=warn,info`.
//!
//! Parsed here rather than by `tracing-subscriber`'s `EnvFilter`, whose span and field
//! matching brings a regex engine (~390 KB, 5% of the arm64 binary) that perch never
//! needs. It is also stricter: a bare word must be a level, because `EnvFilter` reads
//! `warning` as "everything from a target named warning" and silently logs nothing.

use tracing_subscriber::filter::{LevelFilter, Targets};

const LEVELS: &str = "error, warn, info, debug, trace or off";

/// The filter `s` describes, or why it is not one.
pub fn parse(s: &str) -> Result<Targets, String> {
    let mut targets = Targets::new();
    let mut any = false;
    for directive in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        any = true;
        match directive.split_once('=') {
            Some((target, level)) => {
                let target = target.trim();
                if target.is_empty() || !target.chars().all(target_char) {
                    return Err(format!(
                        "{target:?} in {directive:?} is not a module path like perch::http"
                    ));
                }
                targets = targets.with_target(target, level_named(level.trim())?);
            }
            None => targets = targets.with_default(level_named(directive)?),
        }
    }
    if !any {
        return Err(format!("is empty; use a level: {LEVELS}"));
    }
    Ok(targets)
}

fn level_named(s: &str) -> Result<LevelFilter, String> {
    const NAMED: [(&str, LevelFilter); 6] = [
        ("error", LevelFilter::ERROR),
        ("warn", LevelFilter::WARN),
        ("info", LevelFilter::INFO),
        ("debug", LevelFilter::DEBUG),
        ("trace", LevelFilter::TRACE),
        ("off", LevelFilter::OFF),
    ];
    NAMED
        .iter()
        .find(|(name, _)| s.eq_ignore_ascii_case(name))
        .map(|(_, level)| *level)
        .ok_or_else(|| format!("{s:?} is not a log level; use {LEVELS}"))
}

fn target_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn levels_and_targets() {
        let t = parse("perch=debug, hyper=warn,info").unwrap();
        assert!(t.would_enable("perch::http", &tracing::Level::DEBUG));
        assert!(!t.would_enable("hyper::proto", &tracing::Level::INFO));
        assert!(t.would_enable("rustls", &tracing::Level::INFO));
        assert!(!t.would_enable("rustls", &tracing::Level::DEBUG));
        assert_eq!(
            parse("WARN").unwrap().default_level(),
            Some(LevelFilter::WARN)
        );
        assert_eq!(
            parse("off").unwrap().default_level(),
            Some(LevelFilter::OFF)
        );
    }

    #[test]
    fn typos_are_refused_not_silent() {
        for bad in [
            "warning",
            "verbose",
            "errors",
            "",
            " , ",
            "perch=loud",
            "perch=[",
            "=info",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad:?}");
        }
        assert!(parse("warning").unwrap_err().contains("not a log level"));
    }
}
