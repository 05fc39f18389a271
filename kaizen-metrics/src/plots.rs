//! Plots of accuracy matrices (feature `plots`, on by default): a heatmap with the numbers in the cells and the
//! accuracy-per-task curves over the stream. The file extension picks the backend: `.svg` writes SVG, anything else
//! PNG. Text uses the embedded DejaVu Sans (assets/DejaVuSans.ttf, Bitstream Vera licence in
//! assets/DejaVuSans-LICENSE.txt), so plots need no system fonts.

use crate::{AccuracyMatrix, MetricsError};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

type Result<T> = std::result::Result<T, MetricsError>;

/// The embedded font (DejaVu Sans 2.37, free licence: see assets/DejaVuSans-LICENSE.txt).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Registers the embedded font as `sans-serif` once per process; false if the font could not be parsed.
fn ensure_font() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    })
}

/// Viridis anchors (perceptually uniform, readable in grey and for colour-blind readers).
const VIRIDIS: [(f64, [u8; 3]); 5] = [
    (0.0, [68, 1, 84]),
    (0.25, [59, 82, 139]),
    (0.5, [33, 145, 140]),
    (0.75, [94, 201, 98]),
    (1.0, [253, 231, 37]),
];

/// Viridis colour of `v` in [0, 1] (clamped), linearly interpolated between anchors.
fn viridis(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    for w in VIRIDIS.windows(2) {
        let ((a, ca), (b, cb)) = (w[0], w[1]);
        if v <= b {
            let t = (v - a) / (b - a);
            let mix = |k: usize| {
                (f64::from(ca[k]) + t * (f64::from(cb[k]) - f64::from(ca[k]))).round() as u8
            };
            return RGBColor(mix(0), mix(1), mix(2));
        }
    }
    RGBColor(253, 231, 37)
}

/// Line colours (matplotlib's tab10, then plotters' Palette99 for more than 10 tasks).
fn task_color(j: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    if j < TAB10.len() {
        let (r, g, b) = TAB10[j];
        RGBColor(r, g, b)
    } else {
        let c = Palette99::pick(j).to_rgba();
        RGBColor(c.0, c.1, c.2)
    }
}

/// Maps any plotters error to [`MetricsError::Plot`] naming the file.
fn plot_err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> MetricsError + '_ {
    move |e| MetricsError::Plot {
        path: path.to_path_buf(),
        message: format!("{e:?}"),
    }
}

/// True when `path` ends in `.svg` (case-insensitive).
fn is_svg(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
}

/// Runs `$draw(&root)` on an SVG or PNG drawing area for `$path` of `$size`, then presents it.
macro_rules! with_backend {
    ($path:expr, $size:expr, $draw:expr) => {{
        let path: &Path = $path;
        if !ensure_font() {
            return Err(MetricsError::Plot {
                path: path.to_path_buf(),
                message: "the embedded font could not be loaded".into(),
            });
        }
        if is_svg(path) {
            let root = SVGBackend::new(path, $size).into_drawing_area();
            $draw(&root)?;
            root.present().map_err(plot_err(path))
        } else {
            let root = BitMapBackend::new(path, $size).into_drawing_area();
            $draw(&root)?;
            root.present().map_err(plot_err(path))
        }
    }};
}

/// A linear f64 axis from `from` to `to` (which may be decreasing, for the heatmap's rows) whose ticks are the task
/// indices 0, 1, ..., tasks-1, whatever the tick hint says.
struct TaskAxis {
    from: f64,
    to: f64,
    tasks: usize,
}

impl Ranged for TaskAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let frac = (value - self.from) / (self.to - self.from);
        limit.0 + (frac * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.tasks).map(|k| k as f64).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.from..self.to
    }
}

/// Heatmap canvas layout: cell size in pixels and the canvas size.
fn heatmap_layout(t: usize) -> (u32, (u32, u32)) {
    let cell = (600 / t as u32).clamp(34, 110);
    let side = cell * t as u32;
    (cell, ((side + 240).max(600), side + 126))
}

/// Writes a heatmap of `r` to `path` (PNG, or SVG for `.svg`): one cell per (after task i, task j), coloured by
/// accuracy (viridis, 0 to 100 %), with the accuracy in % written in the cell (one decimal; whole numbers when T > 12
/// makes cells small); missing cells are light
/// grey with "n/a". A colour bar on the right; `protocol` goes into the title.
pub fn plot_heatmap(path: &Path, r: &AccuracyMatrix, protocol: &str) -> Result<()> {
    let (cell, size) = heatmap_layout(r.num_tasks());
    with_backend!(path, size, |root| draw_heatmap(
        root, r, protocol, cell, path
    ))
}

fn draw_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &AccuracyMatrix,
    protocol: &str,
    cell: u32,
    path: &Path,
) -> Result<()> {
    let err = plot_err(path);
    root.fill(&WHITE).map_err(&err)?;
    let t = r.num_tasks();
    let tf = t as f64;
    let (w, _) = root.dim_in_pixel();
    let body = root
        .titled(
            &format!("Accuracy matrix R[i][j] (%): {protocol}"),
            ("sans-serif", 22),
        )
        .map_err(&err)?;
    let (main, bar) = body.split_horizontally(w - 100);
    // Keep the cells square: centre a chart of side `cell * t` (+ label area and margins) in the main area.
    let chart_w = cell * t as u32 + 64 + 28;
    let pad = (w - 100).saturating_sub(chart_w) / 2;
    let main = main.margin(0, 0, pad, pad);
    let mut chart = ChartBuilder::on(&main)
        .margin(14)
        .x_label_area_size(52)
        .y_label_area_size(64)
        .build_cartesian_2d(
            TaskAxis {
                from: -0.5,
                to: tf - 0.5,
                tasks: t,
            },
            TaskAxis {
                from: tf - 0.5,
                to: -0.5,
                tasks: t,
            },
        )
        .map_err(&err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("task j (test set)")
        .y_desc("after training task i")
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .y_label_formatter(&|y| format!("{}", y.round() as i64))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(&err)?;
    let font_px = if cell < 50 {
        14.0
    } else {
        (f64::from(cell) * 0.28).clamp(14.0, 24.0)
    };
    let grey = RGBColor(225, 225, 225);
    for i in 0..t {
        for j in 0..t {
            let (x, y) = (j as f64, i as f64);
            let v = r.get(i, j);
            let fill = v.map_or(grey, viridis);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                    fill.filled(),
                )))
                .map_err(&err)?;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                    WHITE.stroke_width(1),
                )))
                .map_err(&err)?;
            let (text, color) = match v {
                // Small cells (many tasks) get whole percents in a larger font, to stay readable.
                Some(v) if cell < 50 => (
                    format!("{:.0}", v * 100.0),
                    if v < 0.62 { WHITE } else { BLACK },
                ),
                Some(v) => (
                    format!("{:.1}", v * 100.0),
                    if v < 0.62 { WHITE } else { BLACK },
                ),
                None => ("n/a".to_string(), RGBColor(110, 110, 110)),
            };
            let style = TextStyle::from(("sans-serif", font_px).into_font())
                .color(&color)
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Center,
                ));
            chart
                .draw_series(std::iter::once(Text::new(text, (x, y), style)))
                .map_err(&err)?;
        }
    }
    // Colour bar aligned with the plotting area.
    let (top, bottom) = {
        // The plotting area's pixel range is absolute; the bar area draws relative to its own origin.
        let range = chart.plotting_area().get_pixel_range();
        let origin_y = bar.get_base_pixel().1;
        (range.1.start - origin_y, range.1.end - origin_y)
    };
    let bar_x0 = 14;
    let bar_x1 = 36;
    let h = (bottom - top).max(1);
    for py in top..bottom {
        let v = 1.0 - f64::from(py - top) / f64::from(h);
        bar.draw(&Rectangle::new(
            [(bar_x0, py), (bar_x1, py + 1)],
            viridis(v).filled(),
        ))
        .map_err(&err)?;
    }
    bar.draw(&Rectangle::new(
        [(bar_x0, top), (bar_x1, bottom)],
        BLACK.stroke_width(1),
    ))
    .map_err(&err)?;
    for pct in [0, 25, 50, 75, 100] {
        let py = bottom - (f64::from(h) * f64::from(pct) / 100.0).round() as i32;
        bar.draw(&PathElement::new(
            vec![(bar_x1, py), (bar_x1 + 4, py)],
            BLACK,
        ))
        .map_err(&err)?;
        let style = TextStyle::from(("sans-serif", 14).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Left,
                plotters::style::text_anchor::VPos::Center,
            ),
        );
        bar.draw(&Text::new(format!("{pct}%"), (bar_x1 + 10, py), style))
            .map_err(&err)?;
    }
    Ok(())
}

/// Curves canvas size: room for one legend row per task plus the average.
fn curves_size(t: usize) -> (u32, u32) {
    (900, (22 * (t as u32 + 1) + 140).max(500))
}

/// Writes the accuracy-per-task curves of `r` to `path` (PNG, or SVG for `.svg`): x = after training task i,
/// y = accuracy in %, one coloured line per task j over the steps i >= j where it was trained (`R[i][j]`), plus the
/// average accuracy over the seen tasks `A_i = (1/(i+1)) sum_{j<=i} R[i][j]` as a thick black line. Missing cells are
/// skipped.
pub fn plot_curves(path: &Path, r: &AccuracyMatrix, protocol: &str) -> Result<()> {
    let size = curves_size(r.num_tasks());
    with_backend!(path, size, |root| draw_curves(root, r, protocol, path))
}

fn draw_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &AccuracyMatrix,
    protocol: &str,
    path: &Path,
) -> Result<()> {
    let err = plot_err(path);
    root.fill(&WHITE).map_err(&err)?;
    let t = r.num_tasks();
    let tf = t as f64;
    let (w, _) = root.dim_in_pixel();
    let (main, legend) = root.split_horizontally(w - 190);
    let mut chart = ChartBuilder::on(&main)
        .caption(
            format!("Accuracy per task over the stream: {protocol}"),
            ("sans-serif", 22),
        )
        .margin(14)
        .x_label_area_size(52)
        .y_label_area_size(64)
        .build_cartesian_2d(
            TaskAxis {
                from: -0.25,
                to: tf - 0.75,
                tasks: t,
            },
            0.0..100.0f64,
        )
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("after training task i")
        .y_desc("accuracy (%)")
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .y_labels(11)
        .y_max_light_lines(1)
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(215, 215, 215))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(&err)?;
    let mut entries: Vec<(String, RGBColor, u32)> = Vec::with_capacity(t + 1);
    for j in 0..t {
        let color = task_color(j);
        let pts: Vec<(f64, f64)> = (j..t)
            .filter_map(|i| r.get(i, j).map(|v| (i as f64, v * 100.0)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(&err)?;
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(&err)?;
        entries.push((format!("task {j}"), color, 2));
    }
    let avg: Vec<(f64, f64)> = (0..t)
        .filter_map(|i| r.seen_average(i).map(|a| (i as f64, a * 100.0)))
        .collect();
    chart
        .draw_series(LineSeries::new(avg.clone(), BLACK.stroke_width(4)))
        .map_err(&err)?;
    chart
        // Square markers of a fixed pixel size, whatever the axis scale.
        .draw_series(
            avg.iter()
                .map(|&p| EmptyElement::at(p) + Rectangle::new([(-5, -5), (5, 5)], BLACK.filled())),
        )
        .map_err(&err)?;
    entries.push(("average (seen tasks)".into(), BLACK, 4));
    let top = chart.plotting_area().get_pixel_range().1.start;
    for (k, (label, color, width)) in entries.iter().enumerate() {
        let y = top + 4 + 22 * k as i32;
        legend
            .draw(&PathElement::new(
                vec![(4, y), (30, y)],
                color.stroke_width(*width),
            ))
            .map_err(&err)?;
        let style = TextStyle::from(("sans-serif", 15).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Left,
                plotters::style::text_anchor::VPos::Center,
            ),
        );
        legend
            .draw(&Text::new(label.clone(), (36, y), style))
            .map_err(&err)?;
    }
    Ok(())
}

/// Writes `heatmap_<protocol>.{png,svg}` and `curves_<protocol>.{png,svg}` into `dir`; returns the file names written.
pub fn plot_protocol(dir: &Path, protocol: &str, r: &AccuracyMatrix) -> Result<Vec<String>> {
    let mut names = Vec::with_capacity(4);
    for ext in ["png", "svg"] {
        let heat = format!("heatmap_{protocol}.{ext}");
        plot_heatmap(&dir.join(&heat), r, protocol)?;
        let curves = format!("curves_{protocol}.{ext}");
        plot_curves(&dir.join(&curves), r, protocol)?;
        names.push(heat);
        names.push(curves);
    }
    Ok(names)
}
