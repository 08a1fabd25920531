//! The `--plot` chart: one panel per scenario with the latency distribution of each series:
//! latency on a logarithmic x axis against the percentile on a tail-stretching y axis
//! (`-log10(1 - q)`, so p50, p90, p99 and p99.9 are evenly spaced, as in HdrHistogram plots). Hand-written SVG: a few hundred lines of text, no plotting
//! stack.

use std::fmt::Write as _;

use crate::report::Report;
use crate::stats::quantile;

const WIDTH: f64 = 1120.0;
const PANEL_H: f64 = 240.0;
const LEFT: f64 = 60.0;
const PLOT_W: f64 = 560.0;
const TOP: f64 = 30.0;
const PLOT_H: f64 = 170.0;
const LEGEND_X: f64 = LEFT + PLOT_W + 20.0;
const POINTS: usize = 240;
/// The y axis ends at p99.9 (`-log10(1 - 0.999) = 3`); the maximum is drawn there too.
const TAIL_DECADES: f64 = 3.0;
const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// Escapes text for SVG content and attribute values.
pub fn escape(s: &str) -> String {
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

pub fn render(report: &Report) -> String {
    let panels: Vec<_> = report
        .scenarios
        .iter()
        .map(|s| {
            let series: Vec<_> = s
                .metrics
                .iter()
                .filter(|m| m.sorted_ms.iter().any(|&v| v > 0.0))
                .collect();
            (s, series)
        })
        .filter(|(_, series)| !series.is_empty())
        .collect();
    let height = 50.0 + PANEL_H * panels.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(&format!(
            "brisk bench: latency distributions (percentile vs latency, log axes), {} cores{}",
            report.cores,
            if report.quick { ", quick run" } else { "" }
        ))
    );
    if panels.is_empty() {
        let _ = writeln!(out, r#"<text x="{LEFT}" y="60">no latency samples</text>"#);
    }
    for (i, (scenario, series)) in panels.iter().enumerate() {
        let y0 = 40.0 + PANEL_H * i as f64;
        let (lo, hi) = decade_range(series.iter().flat_map(|m| m.sorted_ms.iter().copied()));
        let x_of = |ms: f64| {
            LEFT + PLOT_W * (ms.max(10f64.powi(lo)).log10() - f64::from(lo)) / f64::from(hi - lo)
        };
        let y_of = |q: f64| y0 + TOP + PLOT_H * (1.0 - tail(q) / TAIL_DECADES);
        let _ = writeln!(out, r#"<g>"#);
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
            y0 + 18.0,
            escape(&scenario.name)
        );
        // Frame, grid and axis labels.
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#444"/>"##,
            y0 + TOP
        );
        for d in lo..=hi {
            let x = x_of(10f64.powi(d));
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                y0 + TOP,
                y0 + TOP + PLOT_H,
                y0 + TOP + PLOT_H + 14.0,
                escape(&decade_label(d))
            );
        }
        for (q, label) in [
            (0.0, "min"),
            (0.5, "p50"),
            (0.9, "p90"),
            (0.99, "p99"),
            (0.999, "p99.9"),
        ] {
            let y = y_of(q);
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + PLOT_W,
                LEFT - 4.0,
                y + 4.0,
                label
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">latency (ms)</text>"#,
            LEFT + PLOT_W / 2.0,
            y0 + TOP + PLOT_H + 28.0
        );
        for (j, m) in series.iter().enumerate() {
            let color = COLORS[j % COLORS.len()];
            // Past the palette (the pool panel has more series than colors), dashed lines.
            let dash = if j >= COLORS.len() {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            };
            let pts: String = tail_points(&m.sorted_ms)
                .into_iter()
                .map(|(ms, q)| format!("{:.1},{:.1}", x_of(ms), y_of(q)))
                .collect::<Vec<_>>()
                .join(" ");
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{color}"{dash} stroke-width="1.5" points="{pts}"/>"#
            );
            let ly = y0 + TOP + 12.0 * j as f64 + 6.0;
            let p50 = m
                .summary
                .and_then(|s| s.p50)
                .map(crate::report::num)
                .unwrap_or_default();
            let _ = writeln!(
                out,
                r#"<line x1="{LEGEND_X}" y1="{ly:.1}" x2="{}" y2="{ly:.1}" stroke="{color}"{dash} stroke-width="3"/><text x="{}" y="{:.1}">{}</text>"#,
                LEGEND_X + 16.0,
                LEGEND_X + 20.0,
                ly + 4.0,
                escape(&format!(
                    "{} (p50 {p50} ms, n={})",
                    m.name,
                    m.sorted_ms.len()
                ))
            );
        }
        let _ = writeln!(out, "</g>");
    }
    out.push_str("</svg>\n");
    out
}

/// `-log10(1 - q)`, capped at the top of the axis.
fn tail(q: f64) -> f64 {
    if q >= 1.0 {
        TAIL_DECADES
    } else {
        (-(1.0 - q).log10()).min(TAIL_DECADES)
    }
}

/// Points `(latency, quantile)` evenly spaced on the tail axis, ending with the maximum.
fn tail_points(sorted: &[f64]) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = (0..POINTS)
        .filter_map(|i| {
            let q = 1.0 - 10f64.powf(-TAIL_DECADES * i as f64 / POINTS as f64);
            quantile(sorted, q).map(|v| (v, q))
        })
        .collect();
    if let Some(&max) = sorted.last() {
        pts.push((max, 1.0));
    }
    pts
}

/// Whole decades (powers of ten, in ms) that cover all values, at least one decade wide.
fn decade_range(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (mut min, mut max) = (f64::INFINITY, 0.0f64);
    for v in values.filter(|&v| v > 0.0) {
        min = min.min(v);
        max = max.max(v);
    }
    if !min.is_finite() {
        return (-1, 0);
    }
    let lo = min.log10().floor() as i32;
    let hi = (max.log10().ceil() as i32).max(lo + 1);
    (lo, hi)
}

fn decade_label(d: i32) -> String {
    if d >= 0 {
        format!("{}", 10u64.pow(d as u32))
    } else {
        format!("{}", 10f64.powi(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

    #[test]
    fn tail_axis_spaces_percentiles_evenly() {
        assert_eq!(tail(0.0), 0.0);
        assert!((tail(0.9) - 1.0).abs() < 1e-9);
        assert!((tail(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(tail(1.0), TAIL_DECADES);
        let pts = tail_points(&[1.0, 2.0, 3.0]);
        assert_eq!(pts.first(), Some(&(1.0, 0.0)));
        assert_eq!(pts.last(), Some(&(3.0, 1.0)));
        assert!(tail_points(&[]).is_empty());
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&#39;");
    }

    #[test]
    fn decades_cover_the_values() {
        assert_eq!(decade_range([0.12, 0.4].into_iter()), (-1, 0));
        assert_eq!(decade_range([0.05, 85.0].into_iter()), (-2, 2));
        assert_eq!(decade_range([1.0].into_iter()), (0, 1));
        assert_eq!(decade_range(std::iter::empty()), (-1, 0));
        assert_eq!(decade_label(-2), "0.01");
        assert_eq!(decade_label(2), "100");
    }

    #[test]
    fn renders_one_panel_per_scenario_with_samples() {
        let svg = render(&sample_report());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(
            svg.contains("brisk node &lt;noop&gt;"),
            "labels are escaped"
        );
        assert!(!svg.contains("<noop>"));
        // Every point lies inside the plot area.
        let pts = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        for p in pts.split(' ') {
            let (x, _) = p.split_once(',').unwrap();
            let x: f64 = x.parse().unwrap();
            assert!((LEFT..=LEFT + PLOT_W).contains(&x), "{x}");
        }
    }
}
