//! Figures of compute-equivalent gains, as SVG or PNG (chosen by the file
//! extension):
//! - [`ceg_bars`]: CEG multipliers as bars with bootstrap error bars (the
//!   papers' Figure 2), with a line at CEG = 1;
//! - [`ceg_curves`]: CEG(C) = C_ref(L_new(C)) / C on log-log axes, with the
//!   fitted compute range marked;
//! - [`allocation_chart`]: loss along two allocation paths (e.g. Kaplan and
//!   Chinchilla-optimal) and the CEG of the better one (Figure 3);
//! - [`decomposition_chart`]: each innovation's log10 CEG at the target year
//!   and the cumulative gain by year.
//!
//! The charts take plain numbers, so this crate does not depend on the
//! analysis crates. Text uses the embedded font registered by
//! [`crate::charts::register_fonts`], so PNG needs no system font.

use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use thiserror::Error;

use crate::charts::palette;

/// Errors writing a figure.
#[derive(Debug, Error)]
pub enum PlotError {
    /// The file extension is not one this module writes.
    #[error("figure {0}: unsupported extension; use .svg or .png")]
    Extension(String),
    /// Nothing to draw.
    #[error("figure {path}: {what}")]
    NoData { path: String, what: String },
    /// The drawing backend failed (file system, font).
    #[error("figure {path}: drawing failed: {message}")]
    Draw { path: String, message: String },
}

/// One bar: a value with an optional interval [lo, hi].
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

/// One line: (x, y) points with a legend label.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

const SIZE: (u32, u32) = (900, 600);
const FONT: &str = "sans-serif";

type Draw<T> = std::result::Result<T, String>;

/// Tick label of a categorical x axis (categories at 0, 1, …, n−1): the
/// category's label on its integer tick, nothing between ticks.
fn category_label(x: f64, n: usize, label: impl Fn(usize) -> String) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
        label(i as usize)
    } else {
        String::new()
    }
}

trait OrMsg<T> {
    fn m(self) -> Draw<T>;
}

impl<T, E: std::fmt::Display> OrMsg<T> for std::result::Result<T, E> {
    fn m(self) -> Draw<T> {
        self.map_err(|e| e.to_string())
    }
}

/// Run `draw` on an SVG or PNG drawing area for `path`, by extension.
macro_rules! render {
    ($path:expr, $size:expr, $draw:expr) => {{
        crate::charts::register_fonts();
        let path: &Path = $path;
        let shown = path.display().to_string();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let res: Draw<()> = match ext.as_str() {
            "svg" => {
                let root = SVGBackend::new(path, $size).into_drawing_area();
                ($draw)(&root).and_then(|_| root.present().m())
            }
            "png" => {
                let root = BitMapBackend::new(path, $size).into_drawing_area();
                ($draw)(&root).and_then(|_| root.present().m())
            }
            _ => return Err(PlotError::Extension(shown)),
        };
        res.map_err(|message| PlotError::Draw {
            path: shown,
            message,
        })
    }};
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((a, b)) => Some((a.min(v), b.max(v))),
        })
}

/// Log-axis range padded by `pad` decades on each side.
fn log_range(lo: f64, hi: f64, pad: f64) -> Range<f64> {
    let (l, h) = (lo.log10(), hi.log10());
    let (l, h) = if h - l < 1e-9 {
        (l - 0.5, h + 0.5)
    } else {
        (l, h)
    };
    10f64.powf(l - pad)..10f64.powf(h + pad)
}

/// A log-axis range kept inside what f64 can hold (padding 1e308 by a tenth
/// of a decade gives infinity).
fn clamp_log(r: Range<f64>) -> Range<f64> {
    let lo = if r.start.is_finite() && r.start > 0.0 {
        r.start.max(1e-300)
    } else {
        1e-300
    };
    let hi = if r.end.is_finite() {
        r.end.min(1e300)
    } else {
        1e300
    };
    lo..hi.max(lo * 10.0)
}

fn no_data(path: &Path, what: &str) -> PlotError {
    PlotError::NoData {
        path: path.display().to_string(),
        what: what.into(),
    }
}

/// Greedy word wrap of a bar label into lines of at most `width` characters
/// (a word longer than `width` gets a line of its own). Breaks after ": ",
/// spaces, "→" and "/".
pub fn wrap_label(label: &str, width: usize) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    for ch in label.chars() {
        cur.push(ch);
        if ch == ' ' || ch == '→' || ch == '/' || ch == '_' {
            words.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for w in words {
        if !line.is_empty()
            && line.trim_end().chars().count() + w.trim_end().chars().count() > width
        {
            lines.push(line.trim_end().to_string());
            line.clear();
        }
        line.push_str(&w);
    }
    if !line.trim().is_empty() {
        lines.push(line.trim_end().to_string());
    }
    lines
}

/// CEG multipliers as bars with error bars and a dashed line at CEG = 1.
pub fn ceg_bars(path: &Path, title: &str, bars: &[Bar]) -> Result<(), PlotError> {
    ceg_bars_captioned(path, title, "", bars)
}

/// [`ceg_bars`] with a caption under the chart (threshold, data, seeds),
/// wrapped to the figure's width. Bar labels are wrapped to the width of a
/// bar, so long names (e.g. "positional: rotary→sinusoidal") never run into
/// each other.
pub fn ceg_bars_captioned(
    path: &Path,
    title: &str,
    caption: &str,
    bars: &[Bar],
) -> Result<(), PlotError> {
    if bars.is_empty() {
        return Err(no_data(path, "no CEG to draw"));
    }
    if let Some(b) = bars
        .iter()
        .find(|b| !(b.value.is_finite() && b.value >= 0.0))
    {
        return Err(no_data(
            path,
            &format!(
                "bar `{}` has value {}; CEGs must be finite and non-negative",
                b.label, b.value
            ),
        ));
    }
    let ymax = bounds(
        bars.iter()
            .flat_map(|b| [Some(b.value), b.hi, Some(1.0)])
            .flatten(),
    )
    .unwrap()
    .1 * 1.15;
    let n = bars.len();
    let width = 1000u32;
    // About 7 px per character at 13 px: wrap each label to its bar's width.
    let per_bar = (width as f64 - 100.0) / n as f64;
    let chars = ((per_bar / 7.5).floor() as usize).max(6);
    let labels: Vec<Vec<String>> = bars.iter().map(|b| wrap_label(&b.label, chars)).collect();
    let label_lines = labels.iter().map(Vec::len).max().unwrap_or(1);
    let caption_lines = if caption.is_empty() {
        Vec::new()
    } else {
        wrap_label(caption, ((width as f64 - 40.0) / 7.0) as usize)
    };
    let height = 600 + 16 * label_lines as u32 + 17 * caption_lines.len() as u32;
    render!(
        path,
        (width, height),
        |root: &DrawingArea<_, Shift>| -> Draw<()> {
            root.fill(&WHITE).m()?;
            let (upper, lower) =
                root.split_vertically(height - 17 * caption_lines.len() as u32 - 6);
            for (k, line) in caption_lines.iter().enumerate() {
                lower
                    .draw(&Text::new(line.clone(), (20, 17 * k as i32), (FONT, 13)))
                    .m()?;
            }
            let mut chart = ChartBuilder::on(&upper)
                .caption(title, (FONT, 22))
                .margin(15)
                .x_label_area_size(16 + 16 * label_lines as u32)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..ymax)
                .m()?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n)
                .x_label_formatter(&|_| String::new())
                .y_desc("compute-equivalent gain (×)")
                .label_style((FONT, 14))
                .draw()
                .m()?;
            for (i, b) in bars.iter().enumerate() {
                let x = i as f64;
                let color = palette(i);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x - 0.35, 0.0), (x + 0.35, b.value)],
                        color.mix(0.75).filled(),
                    )))
                    .m()?;
                if let (Some(lo), Some(hi)) = (b.lo, b.hi) {
                    let k = BLACK.stroke_width(2);
                    chart
                        .draw_series([
                            PathElement::new(vec![(x, lo), (x, hi)], k),
                            PathElement::new(vec![(x - 0.1, lo), (x + 0.1, lo)], k),
                            PathElement::new(vec![(x - 0.1, hi), (x + 0.1, hi)], k),
                        ])
                        .m()?;
                }
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{:.2}×", b.value),
                        (x + 0.13, b.value + ymax * 0.03),
                        (FONT, 14),
                    )))
                    .m()?;
                // The wrapped label, centred under its bar.
                let (px, py) = chart.backend_coord(&(x, 0.0));
                let style =
                    TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
                for (k, line) in labels[i].iter().enumerate() {
                    upper
                        .draw(&Text::new(
                            line.clone(),
                            (px, py + 8 + 16 * k as i32),
                            style.clone(),
                        ))
                        .m()?;
                }
            }
            // Dashes of a fixed on-screen length whatever the number of bars.
            let step = n as f64 / 60.0;
            let dashes: Vec<PathElement<(f64, f64)>> = (0..60)
                .map(|j| {
                    let x0 = -0.5 + j as f64 * step;
                    PathElement::new(
                        vec![(x0, 1.0), (x0 + 0.5 * step, 1.0)],
                        BLACK.stroke_width(1),
                    )
                })
                .collect();
            chart.draw_series(dashes).m()?;
            Ok(())
        }
    )
}

fn line_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (title, x_desc, y_desc): (&str, &str, &str),
    series: &[Series],
    log_y: bool,
    marks: &[(f64, &str)],
    legend: SeriesLabelPosition,
) -> Draw<()> {
    let xs = bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.0))).ok_or("no points")?;
    let ys = bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.1))).ok_or("no points")?;
    let xr = log_range(xs.0, xs.1, 0.05);
    let mut b = ChartBuilder::on(area);
    b.caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70);
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .x_label_formatter(&|x| format!("{x:.0e}"))
                .y_label_formatter(&|y| {
                    if log_y && (y.abs() >= 1e4 || y.abs() < 1e-2) {
                        format!("{y:.0e}")
                    } else {
                        format!("{y}")
                    }
                })
                .label_style((FONT, 13))
                .draw()
                .m()?;
            for (i, s) in series.iter().enumerate() {
                let color = palette(i);
                chart
                    .draw_series(LineSeries::new(
                        s.points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .m()?
                    .label(s.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            let (ylo, yhi) = (chart.y_range().start, chart.y_range().end);
            for &(x, label) in marks {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x, ylo), (x, yhi)],
                        BLACK.mix(0.5).stroke_width(1),
                    )))
                    .m()?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        label.to_string(),
                        (x, yhi),
                        (FONT, 12),
                    )))
                    .m()?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FONT, 13))
                .position(legend.clone())
                .draw()
                .m()?;
        }};
    }
    if log_y {
        let yr = log_range(ys.0.max(1e-300), ys.1, 0.05);
        body!(b.build_cartesian_2d(xr.log_scale(), yr.log_scale()).m()?);
    } else {
        let pad = ((ys.1 - ys.0) * 0.05).max(1e-6);
        body!(b
            .build_cartesian_2d(xr.log_scale(), (ys.0 - pad)..(ys.1 + pad))
            .m()?);
    }
    Ok(())
}

/// CEG(C) curves on log-log axes; `fitted_range` (if known) is marked with
/// vertical lines so the extrapolated part is visible.
pub fn ceg_curves(
    path: &Path,
    title: &str,
    series: &[Series],
    fitted_range: Option<(f64, f64)>,
) -> Result<(), PlotError> {
    if series.iter().all(|s| s.points.is_empty()) {
        return Err(no_data(path, "no CEG(C) point to draw"));
    }
    let marks: Vec<(f64, &str)> = fitted_range
        .map(|(a, b)| vec![(a, "fit from"), (b, "fit to")])
        .unwrap_or_default();
    render!(path, SIZE, |root: &DrawingArea<_, Shift>| -> Draw<()> {
        root.fill(&WHITE).m()?;
        line_chart(
            root,
            (title, "training compute C (FLOPs)", "CEG(C) (×)"),
            series,
            true,
            &marks,
            SeriesLabelPosition::LowerRight,
        )
    })
}

/// Two panels: loss along each allocation path against compute, and the
/// CEG of the better path over the worse one (the papers' Figure 3).
pub fn allocation_chart(path: &Path, loss: &[Series], ceg: &[(f64, f64)]) -> Result<(), PlotError> {
    if ceg.is_empty() || loss.iter().all(|s| s.points.is_empty()) {
        return Err(no_data(path, "no allocation path to draw"));
    }
    let ceg_series = [Series {
        label: "CEG of better over worse".into(),
        points: ceg.to_vec(),
    }];
    render!(
        path,
        (900, 900),
        |root: &DrawingArea<_, Shift>| -> Draw<()> {
            root.fill(&WHITE).m()?;
            let panels = root.split_evenly((2, 1));
            line_chart(
                &panels[0],
                (
                    "loss along each allocation path",
                    "training compute C (FLOPs)",
                    "loss",
                ),
                loss,
                false,
                &[],
                SeriesLabelPosition::UpperRight,
            )?;
            line_chart(
                &panels[1],
                (
                    "compute-equivalent gain of the better allocation",
                    "training compute C (FLOPs)",
                    "CEG (×)",
                ),
                &ceg_series,
                true,
                &[],
                SeriesLabelPosition::UpperLeft,
            )
        }
    )
}

/// Two panels: each item's log10 CEG at the target year (bars, labelled
/// with the CEG), and the cumulative gain by year (log y).
pub fn decomposition_chart(
    path: &Path,
    title: &str,
    items: &[Bar],
    by_year: &[(f64, f64)],
) -> Result<(), PlotError> {
    if items.is_empty() {
        return Err(no_data(path, "no innovation to draw"));
    }
    if let Some(b) = items
        .iter()
        .find(|b| !(b.value.is_finite() && b.value > 0.0))
    {
        return Err(no_data(
            path,
            &format!(
                "innovation `{}` has CEG {}; every CEG must be positive and finite to draw",
                b.label, b.value
            ),
        ));
    }
    // The cumulative gain is a product: it can overflow f64 even when every
    // item is finite (two multipliers of 1e308). Refuse it by name rather
    // than draw an axis that ends at infinity.
    if let Some(&(year, gain)) = by_year
        .iter()
        .find(|p| !(p.1.is_finite() && p.1 > 0.0 && p.0.is_finite()))
    {
        return Err(no_data(
            path,
            &format!("the cumulative gain in {year} is {gain}, beyond what a log axis can show (the product of the multipliers overflows); check the timeline's multipliers"),
        ));
    }
    let logs: Vec<f64> = items.iter().map(|b| b.value.log10()).collect();
    let (lo, hi) = bounds(logs.iter().copied().chain([0.0])).unwrap();
    let pad = ((hi - lo) * 0.12).max(0.1);
    let n = items.len();
    render!(
        path,
        (900, 1000),
        |root: &DrawingArea<_, Shift>| -> Draw<()> {
            root.fill(&WHITE).m()?;
            let root = root.titled(title, (FONT, 22)).m()?;
            let panels = root.split_evenly((2, 1));
            let mut chart = ChartBuilder::on(&panels[0])
                .margin(12)
                .x_label_area_size(60)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo - pad).min(0.0)..(hi + pad))
                .m()?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n)
                .x_label_formatter(&|x| category_label(*x, n, |i| items[i].label.clone()))
                .y_desc("log10 CEG at the target year")
                .label_style((FONT, 12))
                .draw()
                .m()?;
            for (i, (b, l)) in items.iter().zip(&logs).enumerate() {
                let x = i as f64;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x - 0.35, 0.0), (x + 0.35, *l)],
                        palette(i).mix(0.75).filled(),
                    )))
                    .m()?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{:.3}×", b.value),
                        (x - 0.2, l.max(0.0) + pad * 0.3),
                        (FONT, 13),
                    )))
                    .m()?;
            }
            if !by_year.is_empty() {
                let s = [Series {
                    label: "cumulative gain".into(),
                    points: by_year.to_vec(),
                }];
                let xs = bounds(by_year.iter().map(|p| p.0)).unwrap();
                let ys = bounds(by_year.iter().map(|p| p.1)).unwrap();
                let xr = if xs.1 > xs.0 {
                    xs.0..xs.1
                } else {
                    (xs.0 - 1.0)..(xs.1 + 1.0)
                };
                let mut chart = ChartBuilder::on(&panels[1])
                    .margin(12)
                    .x_label_area_size(45)
                    .y_label_area_size(70)
                    .build_cartesian_2d(
                        xr,
                        clamp_log(log_range(ys.0.max(1e-300), ys.1, 0.1)).log_scale(),
                    )
                    .m()?;
                chart
                    .configure_mesh()
                    .x_desc("year")
                    .y_desc("cumulative gain (×)")
                    .x_label_formatter(&|x| format!("{x:.0}"))
                    .y_label_formatter(&|y| format!("{y:.0e}"))
                    .label_style((FONT, 13))
                    .draw()
                    .m()?;
                chart
                    .draw_series(LineSeries::new(
                        s[0].points.iter().copied(),
                        palette(0).stroke_width(2),
                    ))
                    .m()?;
                chart
                    .draw_series(
                        s[0].points
                            .iter()
                            .map(|&p| Circle::new(p, 3, palette(0).filled())),
                    )
                    .m()?;
            }
            Ok(())
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars() -> Vec<Bar> {
        vec![
            Bar {
                label: "rotary".into(),
                value: 2.5,
                lo: Some(2.1),
                hi: Some(2.9),
            },
            Bar {
                label: "swiglu".into(),
                value: 1.2,
                lo: Some(1.0),
                hi: Some(1.4),
            },
        ]
    }

    #[test]
    fn writes_svg_and_png_bars() {
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("bars.svg");
        ceg_bars(&svg, "CEG", &bars()).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg") && text.contains("rotary") && text.contains("2.50×"));
        let png = dir.path().join("bars.png");
        ceg_bars(&png, "CEG", &bars()).unwrap();
        assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");
    }

    #[test]
    fn writes_curves_allocation_and_decomposition() {
        let dir = tempfile::tempdir().unwrap();
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| (10f64.powi(15 + i), 2.0 * 10f64.powf(0.1 * i as f64)))
            .collect();
        let s = vec![Series {
            label: "modern over lstm".into(),
            points: pts.clone(),
        }];
        ceg_curves(&dir.path().join("f.svg"), "CEG(C)", &s, Some((1e15, 1e18))).unwrap();
        let loss = vec![
            Series {
                label: "kaplan".into(),
                points: pts
                    .iter()
                    .map(|&(c, _)| (c, 2.0 + 1e3 * c.powf(-0.15)))
                    .collect(),
            },
            Series {
                label: "optimal".into(),
                points: pts
                    .iter()
                    .map(|&(c, _)| (c, 2.0 + 9e2 * c.powf(-0.15)))
                    .collect(),
            },
        ];
        allocation_chart(&dir.path().join("k.png"), &loss, &pts).unwrap();
        let by_year = vec![(2017.0, 10.0), (2018.0, 30.0), (2019.0, 100.0)];
        let svg = dir.path().join("d.svg");
        decomposition_chart(&svg, "decomposition", &bars(), &by_year).unwrap();
        assert!(std::fs::read_to_string(&svg).unwrap().contains("swiglu"));
    }

    #[test]
    fn long_bar_labels_wrap_and_the_caption_is_drawn() {
        assert_eq!(
            wrap_label("positional: rotary→sinusoidal", 14),
            vec!["positional:", "rotary→", "sinusoidal"]
        );
        assert_eq!(
            wrap_label("norm: pre-RMSNorm→post-LayerNorm", 40),
            vec!["norm: pre-RMSNorm→post-LayerNorm"]
        );
        let labels = [
            "positional: rotary→sinusoidal",
            "feed forward: SwiGLU→GeLU",
            "norm: pre-RMSNorm→post-LayerNorm",
            "schedule: cosine→inverse-sqrt",
            "optimizer: AdamW→Adam",
            "retro (all seams reverted)",
        ];
        let bars: Vec<Bar> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| Bar {
                label: l.to_string(),
                value: 1.0 + i as f64 * 0.2,
                lo: None,
                hi: None,
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("b.svg");
        ceg_bars_captioned(
            &svg,
            "Figure 2",
            "L* = 4.5 nats; data: corpus `embedded`; seeds 0, 1",
            &bars,
        )
        .unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        // Each label is split over lines no wider than its bar, and the caption is in the figure.
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert!(
            lines.iter().any(|l| l.starts_with("positional:")) && lines.contains(&"sinusoidal"),
            "labels are wrapped"
        );
        assert!(
            !lines.contains(&"positional: rotary→sinusoidal"),
            "no label is drawn on one line wider than its bar"
        );
        assert!(text.contains("seeds 0, 1"));
    }

    #[test]
    fn an_overflowing_timeline_is_a_clear_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let items = vec![
            Bar {
                label: "a".into(),
                value: 1e308,
                lo: None,
                hi: None,
            },
            Bar {
                label: "b".into(),
                value: 1e308,
                lo: None,
                hi: None,
            },
        ];
        let by_year = vec![(2020.0, 1e308), (2021.0, f64::INFINITY)];
        let e = decomposition_chart(&dir.path().join("d.svg"), "t", &items, &by_year)
            .unwrap_err()
            .to_string();
        assert!(e.contains("overflows") && e.contains("2021"), "{e}");
        // One huge but finite multiplier still draws, on a clamped axis.
        decomposition_chart(
            &dir.path().join("e.svg"),
            "t",
            &items[..1],
            &[(2020.0, 1.0), (2021.0, 1e308)],
        )
        .unwrap();
        let e = decomposition_chart(
            &dir.path().join("f.svg"),
            "t",
            &[Bar {
                label: "z".into(),
                value: f64::INFINITY,
                lo: None,
                hi: None,
            }],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("`z`"), "{e}");
    }

    #[test]
    fn rejects_unknown_extension_and_empty_input() {
        let dir = tempfile::tempdir().unwrap();
        let e = ceg_bars(&dir.path().join("x.pdf"), "t", &bars()).unwrap_err();
        assert!(e.to_string().contains("use .svg or .png"), "{e}");
        assert!(matches!(
            ceg_bars(&dir.path().join("x.svg"), "t", &[]),
            Err(PlotError::NoData { .. })
        ));
    }
}
