//! `--plot`: a hand-written SVG of the run, second by second — latency p50
//! and p99 (lines, top panel) over throughput (bars, bottom panel: answered,
//! and of those allowed). Drawn from the [`Report`], so a plot can be made
//! again from a saved `--json`.

use std::fmt::Write as _;

use crate::report::Report;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 620.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 24.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
/// Top and height of the latency and throughput panels.
const LAT_TOP: f64 = 92.0;
const LAT_H: f64 = 220.0;
const TPUT_TOP: f64 = 372.0;
const TPUT_H: f64 = 190.0;

const P50: &str = "#1f77b4";
const P99: &str = "#d62728";
const ANSWERED: &str = "#9ecae1";
const ALLOWED: &str = "#31a354";
const AXIS: &str = "#444";
const GRID: &str = "#e4e4e4";
const FONT: &str = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\"";

/// The SVG document for `report`.
pub fn svg(report: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" {FONT} font-size="13">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);

    // Title: what ran, and the headline numbers.
    let what = match &report.scenario {
        Some(scenario) => format!("loadgen · {scenario}"),
        None => "loadgen".to_owned(),
    };
    let title = format!(
        "{what} · {:.1} s · {} req/s · p50 {} ms · p99 {} ms",
        report.duration_s,
        human(report.throughput_rps),
        num(report.latency_ms.p50),
        num(report.latency_ms.p99)
    );
    text(
        &mut s,
        20.0,
        30.0,
        "start",
        "font-size=\"18\" font-weight=\"bold\"",
        &title,
    );
    let mode = if report.mode == "closed" {
        format!("closed loop, {} connections", report.connections)
    } else {
        format!("fixed rate, {} connections", report.connections)
    };
    let over = match &report.accuracy {
        Some(a) if a.total_over_admission > 0 => format!(" · OVER-ADMITTED by {}", a.total_over_admission),
        Some(_) => " · no over-admission".to_owned(),
        None => String::new(),
    };
    let subtitle = format!("{} · {mode} · keys {}{over}", report.targets.join(", "), report.keys);
    text(&mut s, 20.0, 52.0, "start", "fill=\"#555\"", &subtitle);

    let seconds = report.timeline.len().max(1) as f64;
    let x_of = |t: f64| LEFT + t / seconds * PLOT_W;

    // Latency panel.
    let lat_max = report
        .timeline
        .iter()
        .filter_map(|p| p.p99_ms.or(p.p50_ms))
        .fold(0.0, f64::max);
    let (lat_step, lat_top) = nice_axis(lat_max);
    panel(
        &mut s,
        LAT_TOP,
        LAT_H,
        lat_step,
        lat_top,
        "latency (ms)",
        &x_of,
        seconds,
    );
    let y_lat = |v: f64| LAT_TOP + LAT_H - v / lat_top * LAT_H;
    for (values, colour) in [
        (report.timeline.iter().map(|p| p.p99_ms).collect::<Vec<_>>(), P99),
        (report.timeline.iter().map(|p| p.p50_ms).collect::<Vec<_>>(), P50),
    ] {
        series(&mut s, &values, colour, &x_of, &y_lat);
    }
    legend(&mut s, LAT_TOP - 12.0, &[(P50, "line", "p50"), (P99, "line", "p99")]);

    // Throughput panel.
    let tput_max = report.timeline.iter().map(|p| p.throughput_rps).fold(0.0, f64::max);
    let (tput_step, tput_top) = nice_axis(tput_max);
    panel(
        &mut s,
        TPUT_TOP,
        TPUT_H,
        tput_step,
        tput_top,
        "throughput (req/s)",
        &x_of,
        seconds,
    );
    let y_tput = |v: f64| TPUT_TOP + TPUT_H - v / tput_top * TPUT_H;
    let bar_w = (PLOT_W / seconds * 0.7).max(1.0);
    for p in &report.timeline {
        let centre = x_of(p.second as f64 + 0.5);
        let scale = if p.answered > 0 {
            p.throughput_rps / p.answered as f64
        } else {
            0.0
        };
        for (value, colour) in [(p.throughput_rps, ANSWERED), (p.allowed as f64 * scale, ALLOWED)] {
            if value > 0.0 {
                let y = y_tput(value);
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{y:.1}" width="{bar_w:.1}" height="{:.1}" fill="{colour}"/>"#,
                    centre - bar_w / 2.0,
                    TPUT_TOP + TPUT_H - y
                );
            }
        }
    }
    legend(
        &mut s,
        TPUT_TOP - 12.0,
        &[(ANSWERED, "bar", "answered"), (ALLOWED, "bar", "allowed")],
    );
    text(
        &mut s,
        LEFT + PLOT_W / 2.0,
        HEIGHT - 14.0,
        "middle",
        "fill=\"#333\"",
        "seconds since start",
    );
    if report.timeline.is_empty() {
        text(
            &mut s,
            LEFT + PLOT_W / 2.0,
            LAT_TOP + LAT_H / 2.0,
            "middle",
            "fill=\"#888\"",
            "no data",
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Grid, axes, y labels and x ticks of one panel.
#[allow(clippy::too_many_arguments)]
fn panel(
    s: &mut String,
    top: f64,
    height: f64,
    step: f64,
    max: f64,
    label: &str,
    x_of: &dyn Fn(f64) -> f64,
    seconds: f64,
) {
    let bottom = top + height;
    let mut v = 0.0;
    while v <= max + step / 2.0 {
        let y = bottom - v / max * height;
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{GRID}"/>"#,
            LEFT + PLOT_W
        );
        text(s, LEFT - 8.0, y + 4.0, "end", "fill=\"#333\"", &human(v));
        v += step;
    }
    let _ = writeln!(
        s,
        r#"<path d="M{LEFT},{top} V{bottom} H{:.1}" fill="none" stroke="{AXIS}" stroke-width="1.2"/>"#,
        LEFT + PLOT_W
    );
    // X ticks at a readable spacing (about ten labels at most).
    let every = nice_step(seconds / 10.0).max(1.0);
    let mut t = 0.0;
    while t <= seconds + 1e-9 {
        let x = x_of(t);
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{:.1}" stroke="{AXIS}"/>"#,
            bottom + 5.0
        );
        text(s, x, bottom + 19.0, "middle", "fill=\"#333\"", &human(t));
        t += every;
    }
    // Y label, rotated, left of the tick labels.
    let mid = top + height / 2.0;
    let _ = writeln!(
        s,
        r##"<text x="18" y="{mid:.1}" text-anchor="middle" transform="rotate(-90 18 {mid:.1})" fill="#333">{}</text>"##,
        escape(label)
    );
}

/// A line with dots; a second without answers breaks the line.
fn series(s: &mut String, values: &[Option<f64>], colour: &str, x_of: &dyn Fn(f64) -> f64, y_of: &dyn Fn(f64) -> f64) {
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => runs.last_mut().expect("one run").push((x_of(i as f64 + 0.5), y_of(*v))),
            None => runs.push(Vec::new()),
        }
    }
    for run in runs.iter().filter(|r| !r.is_empty()) {
        let points: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2.2" stroke-linejoin="round"/>"#,
            points.join(" ")
        );
        if run.len() <= 120 {
            for (x, y) in run {
                let _ = writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{colour}"/>"#);
            }
        }
    }
}

/// Legend entries, right-aligned above a panel.
fn legend(s: &mut String, y: f64, entries: &[(&str, &str, &str)]) {
    let mut x = LEFT + PLOT_W - 100.0 * entries.len() as f64;
    for (colour, kind, label) in entries {
        if *kind == "line" {
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/>"#,
                y - 4.0,
                x + 22.0,
                y - 4.0
            );
        } else {
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="22" height="10" fill="{colour}"/>"#,
                y - 9.0
            );
        }
        text(s, x + 28.0, y, "start", "fill=\"#333\"", label);
        x += 100.0;
    }
}

fn text(s: &mut String, x: f64, y: f64, anchor: &str, attrs: &str, content: &str) {
    let _ = writeln!(
        s,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" {attrs}>{}</text>"#,
        escape(content)
    );
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A step of 1, 2 or 5 × 10^k close to `rough`.
fn nice_step(rough: f64) -> f64 {
    if !(rough.is_finite() && rough > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(rough.log10().floor());
    let fraction = rough / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// (step, top) of an axis from 0 that shows `max` with about 5 gridlines.
fn nice_axis(max: f64) -> (f64, f64) {
    if !(max.is_finite() && max > 0.0) {
        return (1.0, 5.0);
    }
    let step = nice_step(max / 5.0);
    let top = (max / step).ceil().max(1.0) * step;
    (step, top)
}

/// A number for a label: `12k`, `2.5`, `0.25`.
fn human(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{}k", num(v / 1000.0))
    } else {
        num(v)
    }
}

/// Up to three significant decimals, without trailing zeros.
fn num(v: f64) -> String {
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_get_round_numbers() {
        assert_eq!(nice_axis(4.3), (1.0, 5.0));
        assert_eq!(nice_axis(23_000.0), (5000.0, 25_000.0));
        assert_eq!(nice_axis(0.37), (0.1, 0.4));
        assert_eq!(nice_axis(0.0), (1.0, 5.0));
        assert_eq!(human(25_000.0), "25k");
        assert_eq!(human(2.5), "2.5");
        assert_eq!(human(0.25), "0.25");
        assert_eq!(num(12.34), "12.3");
    }

    #[test]
    fn a_report_draws_both_panels() {
        let mut report = crate::report::tests::sample();
        report.scenario = Some("a<b".into());
        let svg = svg(&report);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("latency (ms)") && svg.contains("throughput (req/s)"));
        // One p50 and one p99 line (the second second has no answers).
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(P50) && svg.contains(P99) && svg.contains(ALLOWED));
        assert!(svg.contains("loadgen · a&lt;b") && !svg.contains("a<b"));
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
