//! Generic charts: log-log scatter/line charts of curves, frontiers and fits,
//! written as SVG and PNG.
//!
//! Text is laid out with the DejaVu Sans font embedded in this crate
//! (registered with plotters' `ab_glyph` backend), so PNG output works on a
//! machine without any system font or font library.
//!
//! ```no_run
//! use algoprog_plot::charts::{write_log_log, LogLogChart, Mark, Series};
//! let chart = LogLogChart::new("frontier", "compute (FLOPs)", "loss")
//!     .with(Series::new("runs", vec![(1e15, 4.0), (1e16, 3.5)], Mark::Points))
//!     .with(Series::new("fit", vec![(1e15, 4.1), (1e16, 3.4)], Mark::Line));
//! write_log_log(&chart, std::path::Path::new("out/frontier")).unwrap(); // out/frontier.svg, out/frontier.png
//! ```

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// The embedded font (DejaVu Sans; licence in `assets/DejaVuSans-LICENSE.txt`).
static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Register the embedded font as `sans-serif` (and the other generic
/// families) with plotters. Idempotent; every drawing function here calls it.
pub fn register_fonts() {
    REGISTER.call_once(|| {
        for name in ["sans-serif", "serif", "monospace"] {
            for style in [
                FontStyle::Normal,
                FontStyle::Bold,
                FontStyle::Italic,
                FontStyle::Oblique,
            ] {
                // the bytes are a valid TrueType font checked in with the crate
                plotters::style::register_font(name, style, DEJAVU_SANS).ok();
            }
        }
    });
}

/// Errors of chart output.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Nothing to draw.
    #[error("chart `{0}` has no finite positive points to draw on log axes")]
    Empty(String),
    /// The output directory could not be created.
    #[error("{path}: cannot create the output directory: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// plotters failed to draw or encode.
    #[error("{path}: drawing failed: {message}")]
    Draw { path: PathBuf, message: String },
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Small filled circles.
    Points,
    /// Solid line through the points in order.
    Line,
    /// Dashed line through the points in order.
    Dashed,
    /// Larger hollow circles (e.g. to highlight frontier points).
    Rings,
}

/// A named series of (x, y) points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label (empty: not in the legend).
    pub name: String,
    /// Points; those with non-positive or non-finite coordinates are not drawn (log axes).
    pub points: Vec<(f64, f64)>,
    /// How to draw it.
    pub mark: Mark,
    /// Palette index (default: the series' position).
    pub color: Option<usize>,
}

impl Series {
    /// A series with the default colour.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, mark: Mark) -> Self {
        Self {
            name: name.into(),
            points,
            mark,
            color: None,
        }
    }

    /// The same series with palette colour `i`.
    pub fn color(mut self, i: usize) -> Self {
        self.color = Some(i);
        self
    }
}

/// A chart with logarithmic x and y axes.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLogChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Pixel size (width, height); default 900 × 600.
    pub size: (u32, u32),
}

impl LogLogChart {
    /// An empty chart.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            size: (900, 600),
        }
    }

    /// Add a series.
    pub fn with(mut self, s: Series) -> Self {
        self.series.push(s);
        self
    }

    fn bounds(&self) -> Option<((f64, f64), (f64, f64))> {
        let pts = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| ok(p.0) && ok(p.1));
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, 0.0f64, f64::INFINITY, 0.0f64);
        let mut any = false;
        for &(x, y) in pts {
            any = true;
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if !any {
            return None;
        }
        let pad = |lo: f64, hi: f64, f: f64| {
            let (lo, hi) = if hi > lo {
                (lo, hi)
            } else {
                (lo * 0.9, hi * 1.1)
            };
            let r = (hi / lo).powf(f);
            (lo / r, hi * r)
        };
        Some((pad(x0, x1, 0.03), pad(y0, y1, 0.05)))
    }
}

fn ok(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// The colour of palette index `i`.
pub fn palette(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    C[i % C.len()]
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &LogLogChart) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let ((x0, x1), (y0, y1)) = chart
        .bounds()
        .ok_or_else(|| "no drawable points".to_string())?;
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut cc = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (x0..x1).log_scale().with_key_points(log_ticks(x0, x1)),
            (y0..y1).log_scale().with_key_points(log_ticks(y0, y1)),
        )
        .map_err(|e| e.to_string())?;
    cc.configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| tick_label(*v))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| e.to_string())?;
    let mut legend = false;
    for (i, s) in chart.series.iter().enumerate() {
        let col = palette(s.color.unwrap_or(i));
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| ok(p.0) && ok(p.1))
            .collect();
        let anno = match s.mark {
            Mark::Points => cc.draw_series(
                pts.iter()
                    .map(|&p| Circle::new(p, 2, col.mix(0.6).filled())),
            ),
            Mark::Rings => {
                cc.draw_series(pts.iter().map(|&p| Circle::new(p, 5, col.stroke_width(2))))
            }
            Mark::Line => cc.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2))),
            Mark::Dashed => cc.draw_series(DashedLineSeries::new(
                pts.clone(),
                8,
                5,
                col.stroke_width(2),
            )),
        }
        .map_err(|e| e.to_string())?;
        if !s.name.is_empty() {
            legend = true;
            let mark = s.mark;
            anno.label(s.name.as_str()).legend(
                move |(x, y)| -> DynElement<'static, DB, (i32, i32)> {
                    match mark {
                        Mark::Points | Mark::Rings => {
                            Circle::new((x + 8, y), 4, col.filled()).into_dyn()
                        }
                        _ => PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2))
                            .into_dyn(),
                    }
                },
            );
        }
    }
    if legend {
        cc.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Tick positions for a log axis over [lo, hi]: powers of ten, else 1-2-5
/// multiples, else every integer multiple of the decade, so that even a
/// range narrower than a decade gets at least a few labelled ticks.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (k0, k1) = (lo.log10().floor() as i32 - 1, hi.log10().ceil() as i32 + 1);
    for mults in [
        &[1.0][..],
        &[1.0, 2.0, 5.0][..],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0][..],
    ] {
        let v: Vec<f64> = (k0..=k1)
            .flat_map(|k| mults.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|&t| t >= lo && t <= hi)
            .collect();
        if v.len() >= 3 {
            return v;
        }
    }
    // narrower than one step of the finest ladder: five evenly spaced ticks in log space
    (0..5)
        .map(|i| (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / 4.0).exp())
        .collect()
}

/// Tick label: scientific notation for large/small values, else up to 3 significant digits.
fn tick_label(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-2) {
        format!("{v:.0e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Write `chart` to `stem.svg` and `stem.png` (creating the directory);
/// returns both paths.
pub fn write_log_log(chart: &LogLogChart, stem: &Path) -> Result<(PathBuf, PathBuf), PlotError> {
    register_fonts();
    if chart.bounds().is_none() {
        return Err(PlotError::Empty(chart.title.clone()));
    }
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| PlotError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let svg = with_ext(stem, "svg");
    let png = with_ext(stem, "png");
    draw(SVGBackend::new(&svg, chart.size).into_drawing_area(), chart).map_err(|message| {
        PlotError::Draw {
            path: svg.clone(),
            message,
        }
    })?;
    draw(
        BitMapBackend::new(&png, chart.size).into_drawing_area(),
        chart,
    )
    .map_err(|message| PlotError::Draw {
        path: png.clone(),
        message,
    })?;
    Ok((svg, png))
}

/// `stem` with `.ext` appended (keeps dots already in the name).
pub fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_svg_and_png_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let pts: Vec<(f64, f64)> = (0..20)
            .map(|i| {
                (
                    1e15 * 10f64.powf(i as f64 / 4.0),
                    1.8 + 40.0 * (1e15 * 10f64.powf(i as f64 / 4.0)).powf(-0.08),
                )
            })
            .collect();
        let chart = LogLogChart::new("Frontier (test)", "compute (FLOPs)", "loss")
            .with(Series::new("points", pts.clone(), Mark::Points))
            .with(Series::new("frontier", pts.clone(), Mark::Rings))
            .with(Series::new("fit", pts, Mark::Dashed));
        let (svg, png) = write_log_log(&chart, &dir.path().join("sub/chart")).unwrap();
        let s = std::fs::read_to_string(&svg).unwrap();
        assert!(
            s.starts_with("<svg") && s.contains("Frontier (test)") && s.contains("compute (FLOPs)")
        );
        let p = std::fs::read(&png).unwrap();
        assert_eq!(&p[1..4], b"PNG");
        assert!(p.len() > 5000, "PNG is {} bytes", p.len());
    }

    #[test]
    fn log_ticks_label_narrow_and_wide_ranges() {
        assert_eq!(log_ticks(1e15, 1e18), vec![1e15, 1e16, 1e17, 1e18]);
        assert_eq!(log_ticks(2.2, 6.5), vec![3.0, 4.0, 5.0, 6.0]);
        assert_eq!(log_ticks(1.5, 25.0), vec![2.0, 5.0, 10.0, 20.0]);
        assert_eq!(tick_label(3.0), "3");
        assert_eq!(tick_label(2.5), "2.5");
        assert_eq!(tick_label(1e18), "1e18");
    }

    #[test]
    fn empty_chart_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let chart = LogLogChart::new("nothing", "x", "y").with(Series::new(
            "zero",
            vec![(0.0, 1.0)],
            Mark::Points,
        ));
        let e = write_log_log(&chart, &dir.path().join("c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nothing"), "{e}");
    }
}
