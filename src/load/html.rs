//! The HTML report (`--html`): one self-contained page (inline CSS and SVG, no script, nothing
//! fetched from anywhere) with the run's parameters, its figures, its checks, charts of the
//! per-second series (streams open, frames per second, and in hub mode publishes and
//! deliveries per second), and histograms of connect time, time to headers, frame interval,
//! delivery lateness, and in hub mode publish-to-deliver latency and publish answer time.
//!
//! Each chart is an `<svg>` with `data-chart="NAME"` and `data-points="N"` (the number of
//! points or non-empty bars drawn), so a test or a script can check that the charts are there
//! and not empty without rendering them.
//!
//! **Invariant:** no IO; formatting only; every text from the run (URLs, topics) is escaped.

use super::histogram::Histogram;
use super::report::{hist_text, Report, Sample};
use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 240.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;
/// Bars per histogram.
const BINS: usize = 40;

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = format!("sse-load: {} streams to {}", r.connections, r.url);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let failed = r.failed_checks();
    if failed.is_empty() {
        out.push_str("<p class=\"pass\">Every check passed.</p>\n");
    } else {
        out.push_str("<div class=\"fail\"><p>Checks failed:</p>\n<ul>\n");
        for f in &failed {
            let _ = writeln!(out, "<li>{}</li>", esc(f));
        }
        out.push_str("</ul></div>\n");
    }
    params(&mut out, r);
    out.push_str("<h2>Over time</h2>\n<div class=\"charts\">\n");
    // The series starts from nothing at 0 s.
    let s: Vec<Sample> = std::iter::once(Sample::default())
        .chain(r.series.iter().cloned())
        .collect();
    let s = &s[..];
    let open: Vec<(f64, f64)> = s.iter().map(|x| (x.t_s, x.open as f64)).collect();
    let opening: Vec<(f64, f64)> = s.iter().map(|x| (x.t_s, x.opening as f64)).collect();
    let lost: Vec<(f64, f64)> = s
        .iter()
        .map(|x| (x.t_s, (x.failed + x.dropped) as f64))
        .collect();
    out.push_str(&line_chart(
        "streams",
        "Streams open",
        &[
            ("open", "#2563eb", &open),
            ("opening", "#9ca3af", &opening),
            ("failed + dropped", "#dc2626", &lost),
        ],
    ));
    // Over whole intervals (see `Sample::rates`), so streams that tick together do not make
    // the line jump between 0 and a burst.
    let frames = whole_rate(s, 1);
    let frames5 = whole_rate(s, 5);
    out.push_str(&line_chart(
        "frames",
        "Frames per second",
        &[
            ("each second", "#93c5fd", &frames),
            ("5 s mean", "#1d4ed8", &frames5),
        ],
    ));
    if r.publish.is_some() {
        let published = rate(s, |x| x.published, 1);
        let ok = rate(s, |x| x.published_ok, 1);
        out.push_str(&line_chart(
            "publishes",
            "Publishes per second",
            &[
                ("sent", "#6ee7b7", &published),
                ("answered 2xx", "#047857", &ok),
            ],
        ));
        // Expected is counted when a publish is answered, delivered when an event arrives.
        let expected = rate(s, |x| x.expected, 1);
        let delivered = rate(s, |x| x.delivered, 1);
        out.push_str(&line_chart(
            "deliveries",
            "Deliveries per second",
            &[
                ("expected", "#fcd34d", &expected),
                ("received", "#1d4ed8", &delivered),
            ],
        ));
    }
    out.push_str("</div>\n<h2>Distributions</h2>\n<div class=\"charts\">\n");
    let st = &r.stats;
    let mut hists: Vec<(&str, &str, &Histogram)> = vec![
        ("connect", "Connect time", &st.connect_us),
        ("headers", "Time to headers", &st.headers_us),
        ("interval", "Frame interval", &st.interval_us),
    ];
    // Lateness needs the seed's `content` timestamps; a hub's events carry the publisher's
    // send time instead, so hub runs draw publish-to-deliver in its place (and lateness too
    // only if some frame did carry a timestamp).
    if r.publish.is_none() || st.lateness_us.count() > 0 {
        hists.push(("lateness", "Delivery lateness", &st.lateness_us));
    }
    if let Some(p) = &r.publish {
        hists.push(("deliver", "Publish to deliver", &st.deliveries.latency_us));
        hists.push(("answer", "Publish answer time", &p.answer_us));
    }
    for (id, name, h) in hists {
        out.push_str(&histogram_chart(id, name, h));
    }
    out.push_str("</div>\n<h2>Report</h2>\n<pre>");
    out.push_str(&esc(&r.human()));
    out.push_str("</pre>\n</body>\n</html>\n");
    out
}

const CSS: &str =
    "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#111;max-width:1340px}\
h1{font-size:20px;word-break:break-all}h2{font-size:16px;margin-top:28px}\
table{border-collapse:collapse}td,th{padding:2px 12px 2px 0;text-align:left;vertical-align:top}\
th{font-weight:600;color:#444}.pass{color:#166534;font-weight:600}\
.fail{color:#991b1b;font-weight:600;border:1px solid #fca5a5;background:#fef2f2;padding:4px 12px}\
.charts{display:flex;flex-wrap:wrap;gap:16px}\
svg{background:#fff;border:1px solid #e5e7eb;font:11px system-ui,sans-serif}\
svg .t{font-size:13px;font-weight:600}pre{background:#f9fafb;padding:12px;overflow-x:auto}";

fn params(out: &mut String, r: &Report) {
    let mut rows: Vec<(&str, String)> = vec![
        ("URL", r.url.clone()),
        ("streams", r.connections.to_string()),
        ("duration", format!("{:.1} s", r.elapsed_s)),
        ("connect rate", format!("{}/s", r.rate)),
        ("warm-up", format!("{:.1} s", r.warmup_s)),
        ("loops", r.threads.to_string()),
        ("source addresses", r.source_addrs.max(1).to_string()),
    ];
    if let Some(id) = &r.last_event_id {
        rows.push(("Last-Event-ID", id.clone()));
    }
    if !r.topics.is_empty() {
        rows.push(("topics", r.topics.join(", ")));
    }
    if let Some(u) = &r.publish_url {
        rows.push((
            "publish",
            format!(
                "{u} ({}, {}/s)",
                r.publish_format.unwrap_or(""),
                r.publish_rate
            ),
        ));
    }
    out.push_str("<h2>Parameters</h2>\n<table>\n");
    for (k, v) in rows {
        let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    out.push_str("</table>\n");
}

/// Per-second rates of a cumulative counter, each over the last `window` samples.
fn rate(s: &[Sample], f: fn(&Sample) -> u64, window: usize) -> Vec<(f64, f64)> {
    (0..s.len())
        .map(|i| {
            let (v0, t0) = if i >= window {
                (f(&s[i - window]), s[i - window].t_s)
            } else {
                (0, 0.0)
            };
            let dt = (s[i].t_s - t0).max(1e-3);
            (s[i].t_s, f(&s[i]).saturating_sub(v0) as f64 / dt)
        })
        .collect()
}

/// Frames per second over whole intervals, each point over the last `window` samples.
fn whole_rate(s: &[Sample], window: usize) -> Vec<(f64, f64)> {
    (0..s.len())
        .map(|i| {
            (
                s[i].t_s,
                Sample::rates(&s[i.saturating_sub(window)], &s[i]).0,
            )
        })
        .collect()
}

/// Round tick steps (1, 2 or 5 times a power of ten) covering `0..=max` in about `n` steps.
fn ticks(max: f64, n: f64) -> Vec<f64> {
    if max.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !max.is_finite() {
        return vec![0.0];
    }
    let raw = max / n;
    let p = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * p);
    let mut out = Vec::new();
    let mut v = 0.0;
    while v <= max * 1.0001 {
        out.push(v);
        v += step;
    }
    out
}

fn num_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn ms_label(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// Labels for increasing edges in microseconds: one unit for all (s from 1 s up when two
/// decimals tell them apart, else ms), and the fewest decimals (up to 3) that make neighbours
/// differ.
fn edge_labels(edges: &[u64]) -> Vec<String> {
    let fmt = |scale: f64, unit: &str, d: usize| -> Vec<String> {
        edges
            .iter()
            .map(|&e| format!("{:.d$} {unit}", e as f64 / scale))
            .collect()
    };
    let distinct = |v: &[String]| v.windows(2).all(|w| w[0] != w[1]);
    let max = edges.iter().copied().max().unwrap_or(0);
    if max >= 1_000_000 {
        for d in 0..=2 {
            let v = fmt(1e6, "s", d);
            if distinct(&v) {
                return v;
            }
        }
    }
    for d in 0..=3 {
        let v = fmt(1e3, "ms", d);
        if distinct(&v) || d == 3 {
            return v;
        }
    }
    unreachable!("the loop returns at d == 3")
}

fn svg_open(out: &mut String, id: &str, points: usize, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" data-chart=\"{id}\" data-points=\"{points}\" role=\"img\">\n<title>{}</title>\n<text class=\"t\" x=\"{LEFT}\" y=\"12\">{}</text>\n",
        esc(title),
        esc(title)
    );
}

/// The y axis and its grid for values `0..=ymax`; returns the scale's top.
fn y_axis(out: &mut String, ymax: f64) -> f64 {
    let ys = ticks(ymax, 4.0);
    let top = ys.last().copied().unwrap_or(1.0).max(ymax).max(1e-9);
    for &v in &ys {
        let y = H - BOTTOM - v / top * (H - TOP - BOTTOM);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            num_label(v)
        );
    }
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{}\" stroke=\"#999\"/><line x1=\"{LEFT}\" x2=\"{}\" y1=\"{b}\" y2=\"{b}\" stroke=\"#999\"/>",
        H - BOTTOM,
        W - RIGHT,
        b = H - BOTTOM
    );
    top
}

fn empty(out: &mut String) {
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#888\">no data</text>",
        W / 2.0,
        H / 2.0
    );
}

/// One line of a chart: label, colour, `(x, y)` points.
type Line<'a> = (&'a str, &'a str, &'a Vec<(f64, f64)>);

/// Lines over time.
fn line_chart(id: &str, title: &str, lines: &[Line<'_>]) -> String {
    let mut out = String::new();
    let points = lines.first().map_or(0, |l| l.2.len());
    svg_open(&mut out, id, points, title);
    let xmax = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.0))
        .fold(0.0, f64::max)
        .max(1.0);
    let ymax = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let top = y_axis(&mut out, ymax.max(1.0));
    let px = |x: f64| LEFT + x / xmax * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / top * (H - TOP - BOTTOM);
    for v in ticks(xmax, 6.0) {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{} s</text>",
            px(v),
            H - BOTTOM + 14.0,
            num_label(v)
        );
    }
    if points == 0 {
        empty(&mut out);
    }
    let mut lx = LEFT + 8.0;
    for (i, (label, colour, pts)) in lines.iter().enumerate() {
        // The first line is drawn wider, so a later line that matches it stays visible on top.
        let width = if i == 0 && lines.len() > 1 { 4 } else { 2 };
        if !pts.is_empty() {
            let path: Vec<String> = pts
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\" points=\"{}\"/>",
                path.join(" ")
            );
        }
        let _ = writeln!(
            out,
            "<rect x=\"{lx:.1}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{}\">{}</text>",
            H - 14.0,
            lx + 14.0,
            H - 5.0,
            esc(label)
        );
        lx += 24.0 + 6.5 * label.len() as f64;
    }
    out.push_str("</svg>\n");
    out
}

/// Bars of a histogram on geometric bins (a log axis), with p50, p99 and max in the title.
fn histogram_chart(id: &str, name: &str, h: &Histogram) -> String {
    let mut out = String::new();
    let bins = h.bins(BINS);
    let nonempty = bins.iter().filter(|b| b.2 > 0).count();
    let title = if h.count() == 0 {
        name.to_string()
    } else {
        format!("{name}: {}", hist_text(h))
    };
    svg_open(&mut out, id, nonempty, &title);
    let ymax = bins.iter().map(|b| b.2).max().unwrap_or(0) as f64;
    let top = y_axis(&mut out, ymax.max(1.0));
    if bins.is_empty() {
        empty(&mut out);
        out.push_str("</svg>\n");
        return out;
    }
    let bw = (W - LEFT - RIGHT) / bins.len() as f64;
    for (i, &(lo, hi, c)) in bins.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let bh = c as f64 / top * (H - TOP - BOTTOM);
        let _ = writeln!(
            out,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#3b82f6\"><title>{} to {}: {c}</title></rect>",
            LEFT + i as f64 * bw + 0.5,
            H - BOTTOM - bh,
            (bw - 1.0).max(0.5),
            ms_label(lo),
            ms_label(hi)
        );
    }
    // Edge labels under every fifth of the bars, and the last edge, in one unit and with as
    // many decimals as it takes for neighbours to differ (a histogram of 2 s intervals spans
    // a few milliseconds: every label read "2.0 s").
    let step = (bins.len() / 5).max(1);
    let at: Vec<usize> = (0..bins.len()).step_by(step).chain([bins.len()]).collect();
    let edges: Vec<u64> = at
        .iter()
        .map(|&i| {
            if i < bins.len() {
                bins[i].0
            } else {
                bins[bins.len() - 1].1
            }
        })
        .collect();
    for (&i, label) in at.iter().zip(edge_labels(&edges)) {
        let _ = writeln!(
            out,
            "<text class=\"edge\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            LEFT + i as f64 * bw,
            H - BOTTOM + 14.0,
            label
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#666\">log scale, {} values</text>",
        W - RIGHT,
        H - 5.0,
        h.count()
    );
    out.push_str("</svg>\n");
    out
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::args::LoadConfig;
    use crate::load::stats::Stats;

    #[test]
    fn charts_are_there_and_say_when_empty() {
        let mut stats = Stats::default();
        for v in [300, 450, 800, 2_000, 2_100] {
            stats.connect_us.record(v);
        }
        let mut r = Report::new(
            &LoadConfig::default(),
            stats,
            crate::load::report::Measured {
                elapsed_s: 2.0,
                cpu_s: 0.1,
                max_rss_bytes: 1,
            },
        );
        r.url = "http://127.0.0.1:1/sse?topic=<b>&x".into();
        for i in 1..=3 {
            r.series.push(Sample {
                t_s: f64::from(i),
                open: 5,
                frames: 10 * i as u64,
                ..Sample::default()
            });
        }
        let html = render(&r);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("topic=&lt;b&gt;&amp;x"), "the URL is escaped");
        assert!(!html.contains("<script"));
        assert!(
            html.contains("data-chart=\"streams\" data-points=\"4\""),
            "from 0 s"
        );
        assert!(html.contains("data-chart=\"frames\" data-points=\"4\""));
        assert!(
            html.contains("data-chart=\"connect\" data-points=\"5\""),
            "{html}"
        );
        assert!(html.contains("data-chart=\"lateness\" data-points=\"0\""));
        assert!(html.contains("no data"));
        assert!(!html.contains("data-chart=\"deliver\""), "not in hub mode");
        assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    }

    #[test]
    fn edge_labels_tell_neighbours_apart() {
        // 2 s intervals, a few milliseconds apart: every label used to read "2.0 s".
        let around_2s = [
            1_996_000, 1_998_100, 1_999_400, 2_000_700, 2_002_000, 2_004_300,
        ];
        assert_eq!(
            edge_labels(&around_2s),
            ["1996 ms", "1998 ms", "1999 ms", "2001 ms", "2002 ms", "2004 ms"]
        );
        assert_eq!(
            edge_labels(&[1_000_000, 1_500_000, 2_250_000, 3_400_000]),
            ["1.0 s", "1.5 s", "2.2 s", "3.4 s"]
        );
        assert_eq!(
            edge_labels(&[1_000_000, 2_000_000, 4_000_000]),
            ["1 s", "2 s", "4 s"]
        );
        let small = edge_labels(&[80, 150, 290, 550]);
        assert_eq!(small, ["0.08 ms", "0.15 ms", "0.29 ms", "0.55 ms"]);
        // A histogram of the interval chart, drawn: its labels differ too.
        let mut h = Histogram::default();
        for v in [1_999_000u64, 2_000_000, 2_000_500, 2_001_000, 2_003_000] {
            h.record(v);
        }
        let svg = histogram_chart("interval", "Frame interval", &h);
        let labels: Vec<&str> = svg
            .split("<text class=\"edge\"")
            .skip(1)
            .map(|t| t.split('>').nth(1).unwrap().split('<').next().unwrap())
            .collect();
        assert!(labels.len() >= 5, "{svg}");
        assert!(labels.windows(2).all(|w| w[0] != w[1]), "{labels:?}");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(10.0, 4.0), vec![0.0, 5.0, 10.0]);
        assert_eq!(ticks(0.0, 4.0), vec![0.0]);
        assert_eq!(ticks(740.0, 4.0), vec![0.0, 200.0, 400.0, 600.0]);
        assert_eq!(ms_label(1_500), "1.5 ms");
        assert_eq!(num_label(25_000.0), "25k");
    }
}
