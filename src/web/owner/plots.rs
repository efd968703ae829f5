//! The owner's page plots: stacked bar charts as inline SVG made on the server (no script,
//! no chart library), each bar with a `<title>` tooltip and the chart with a text summary
//! for screen readers.

use maud::{Markup, html};

use crate::backup::human_bytes;
use crate::metrics::HourFigures;

const W: f64 = 720.0;
const H: f64 = 120.0;
/// Room above the bars for the scale's label.
const TOP: f64 = 14.0;

/// One bar: its stacked values (bottom first) and its tooltip.
pub struct Bar {
    pub values: Vec<u64>,
    pub title: String,
}

/// A stacked bar chart: `classes[i]` colours the i-th value of every bar; `scale` words
/// the largest total.
fn stacked(bars: &[Bar], classes: &[&str], scale: &dyn Fn(u64) -> String, label: &str) -> Markup {
    let max = bars
        .iter()
        .map(|b| b.values.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let step = W / bars.len().max(1) as f64;
    let width = (step * 0.8).max(1.0);
    let y = |v: u64| (H - TOP) * v as f64 / max as f64;
    html! {
        div class="chart" {
        span class="scale" { (scale(max)) }
        svg viewBox=(format!("0 0 {W} {}", H + 2.0)) role="img" aria-label=(label) preserveAspectRatio="none" {
            line class="axis" x1="0" y1=(H) x2=(W) y2=(H) {}
            @for (i, bar) in bars.iter().enumerate() {
                @let x = i as f64 * step + (step - width) / 2.0;
                @let mut base = H;
                g {
                    title { (bar.title) }
                    @for (j, v) in bar.values.iter().enumerate() {
                        @if *v > 0 {
                            @let h = y(*v).max(1.0);
                            @let top = { base -= h; base };
                            rect class=(classes.get(j).copied().unwrap_or("s0"))
                                x=(format!("{x:.1}")) y=(format!("{top:.1}"))
                                width=(format!("{width:.1}")) height=(format!("{h:.1}")) {}
                        }
                    }
                }
            }
        }
        }
    }
}

fn figure(title: &str, summary: &str, chart: Markup, legend: &[(&str, String)]) -> Markup {
    html! {
        figure class="plot" {
            figcaption { strong { (title) } " " span class="hint" { (summary) } }
            (chart)
            @if !legend.is_empty() {
                p class="legend" {
                    @for (class, text) in legend {
                        span { span class=(format!("key {class}")) {} (text) }
                    }
                }
            }
        }
    }
}

/// Records created per day over `days` (oldest first), by kind: post, like, follow, other.
pub fn writes(days: &[(String, [u64; 4])]) -> Markup {
    const KINDS: [&str; 4] = ["posts", "likes", "follows", "other"];
    let mut totals = [0u64; 4];
    let bars: Vec<Bar> = days
        .iter()
        .map(|(day, n)| {
            for k in 0..4 {
                totals[k] += n[k];
            }
            Bar {
                values: n.to_vec(),
                title: format!(
                    "{day}: {} posts, {} likes, {} follows, {} other",
                    n[0], n[1], n[2], n[3]
                ),
            }
        })
        .collect();
    let summary = format!(
        "{} records in {} days",
        totals.iter().sum::<u64>(),
        days.len()
    );
    let legend: Vec<(&str, String)> = ["s0", "s1", "s2", "s3"]
        .into_iter()
        .zip(KINDS)
        .zip(totals)
        .map(|((c, k), n)| (c, format!("{n} {k}")))
        .collect();
    figure(
        "Records written per day",
        &summary,
        stacked(
            &bars,
            &["s0", "s1", "s2", "s3"],
            &|m| format!("{m} a day"),
            &summary,
        ),
        &legend,
    )
}

/// Storage per day: the database and the blobs (days without a sample are empty).
pub fn storage(days: &[(String, Option<(u64, u64)>)]) -> Markup {
    let bars: Vec<Bar> = days
        .iter()
        .map(|(day, s)| {
            let (db, blobs) = s.unwrap_or((0, 0));
            Bar {
                values: vec![db, blobs],
                title: match s {
                    Some(_) => format!(
                        "{day}: database {}, blobs {}",
                        human_bytes(db),
                        human_bytes(blobs)
                    ),
                    None => format!("{day}: not measured"),
                },
            }
        })
        .collect();
    let latest = days.iter().rev().find_map(|(_, s)| *s);
    let summary = match latest {
        Some((db, blobs)) => format!(
            "now {} (database {}, blobs {})",
            human_bytes(db + blobs),
            human_bytes(db),
            human_bytes(blobs)
        ),
        None => "not measured yet".to_owned(),
    };
    figure(
        "Storage",
        &summary,
        stacked(&bars, &["s0", "s3"], &|m| human_bytes(m), &summary),
        &[("s0", "database".into()), ("s3", "blobs".into())],
    )
}

fn hour_of(start: i64) -> String {
    let t = crate::syntax::format_datetime_millis(start.saturating_mul(1000));
    format!("{} UTC", t.get(11..16).unwrap_or("?"))
}

/// Requests and server errors per hour over the last day.
pub fn requests(hours: &[HourFigures]) -> Markup {
    let bars: Vec<Bar> = hours
        .iter()
        .map(|h| Bar {
            values: vec![
                h.requests - h.errors.min(h.requests),
                h.errors.min(h.requests),
            ],
            title: format!(
                "{}: {} requests, {} server errors",
                hour_of(h.start),
                h.requests,
                h.errors
            ),
        })
        .collect();
    let (n, e) = hours
        .iter()
        .fold((0, 0), |(n, e), h| (n + h.requests, e + h.errors));
    let summary = format!("{n} requests, {e} server errors in the last 24 hours");
    figure(
        "Requests per hour",
        &summary,
        stacked(&bars, &["s0", "err"], &|m| format!("{m} an hour"), &summary),
        &[("s0", "answered".into()), ("err", "server errors".into())],
    )
}

/// The most firehose subscribers per hour over the last day.
pub fn subscribers(hours: &[HourFigures]) -> Markup {
    let bars: Vec<Bar> = hours
        .iter()
        .map(|h| Bar {
            values: vec![h.subscribers],
            title: format!("{}: {} subscribers", hour_of(h.start), h.subscribers),
        })
        .collect();
    let most = hours.iter().map(|h| h.subscribers).max().unwrap_or(0);
    let summary = format!("at most {most} at once in the last 24 hours (relays follow this way)");
    figure(
        "Firehose subscribers",
        &summary,
        stacked(&bars, &["s2"], &|m| format!("{m}"), &summary),
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_stack_to_scale_and_carry_their_titles() {
        let days = vec![
            ("2026-12-01".to_owned(), [2, 0, 1, 0]),
            ("2026-12-02".to_owned(), [0, 0, 0, 0]),
            ("2026-12-03".to_owned(), [6, 3, 0, 1]),
        ];
        let svg = writes(&days).into_string();
        assert!(svg.contains("<title>2026-12-03: 6 posts, 3 likes, 0 follows, 1 other</title>"));
        assert!(svg.contains("13 records in 3 days"));
        // The tallest bar (10) fills the height under the scale; an empty day draws nothing.
        let heights: Vec<f64> = svg
            .split("height=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(heights.len(), 2 + 3, "{svg}");
        let total: f64 = heights[2..].iter().sum();
        assert!((total - (H - TOP)).abs() < 0.5, "{heights:?}");
        assert!(svg.contains(">10 a day<"));
    }

    #[test]
    fn hours_read_in_utc_and_errors_stack_on_answers() {
        let hours = [HourFigures {
            start: 1_796_403_600,
            requests: 10,
            errors: 4,
            subscribers: 2,
        }];
        let svg = requests(&hours).into_string();
        assert!(svg.contains("10 requests, 4 server errors"), "{svg}");
        assert!(svg.contains("class=\"err\""));
        let subs = subscribers(&hours).into_string();
        assert!(subs.contains("at most 2 at once"));
        let none = storage(&[("2026-12-03".into(), None)]).into_string();
        assert!(none.contains("not measured yet") && !none.contains("<rect"));
    }
}
