//! Draws a [`ChartData`] with plotters, as PNG ([`png`]) or SVG ([`svg`]): a header (key,
//! chart and its settings, time span), the plot (Phase I shaded, limits, spec limits, the
//! statistic, firings marked, alerts labelled with their rule), a legend and a footer.
//!
//! Text is laid out with DejaVu Sans, embedded in the binary and registered with plotters
//! (`ab_glyph`), so drawing needs no system font. The SVG names the family `sans-serif`.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use spcvm_operators::Plot;

use super::{ChartData, ChartError};

/// DejaVu Sans (Bitstream Vera license; `assets/fonts/LICENSE_DEJAVU`).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The family name the font is registered under.
const FAMILY: &str = "sans-serif";

/// Registers [`FONT`] with plotters, once per process.
fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType file (a test draws with them).
        let _ = register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// A vertical line drawn at an event time, e.g. an injected fault's onset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Event time (ms); the line goes at the first sample at or after it.
    pub event_time: i64,
    /// Its label.
    pub label: String,
}

/// Size of the image and extra lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Vertical marks (fault onsets).
    pub marks: Vec<Mark>,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            width: 1400,
            height: 700,
            marks: Vec::new(),
        }
    }
}

/// Writes the chart as a PNG.
///
/// # Errors
///
/// [`ChartError::Draw`] naming the file.
pub fn png(data: &ChartData, style: &Style, path: &Path) -> Result<(), ChartError> {
    register();
    let err = |reason: String| ChartError::Draw {
        path: path.to_path_buf(),
        reason,
    };
    if style.width < 200 || style.height < 150 {
        return Err(err(format!(
            "{}x{} is too small (200x150 at least)",
            style.width, style.height
        )));
    }
    let root = BitMapBackend::new(path, (style.width, style.height)).into_drawing_area();
    draw(&root, data, style).map_err(err)?;
    root.present().map_err(|e| err(e.to_string()))
}

/// Writes the chart as an SVG.
///
/// # Errors
///
/// [`ChartError::Draw`] naming the file.
pub fn svg(data: &ChartData, style: &Style, path: &Path) -> Result<(), ChartError> {
    register();
    let err = |reason: String| ChartError::Draw {
        path: path.to_path_buf(),
        reason,
    };
    if style.width < 200 || style.height < 150 {
        return Err(err(format!(
            "{}x{} is too small (200x150 at least)",
            style.width, style.height
        )));
    }
    let root = SVGBackend::new(path, (style.width, style.height)).into_drawing_area();
    draw(&root, data, style).map_err(err)?;
    root.present().map_err(|e| err(e.to_string()))
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const TEAL: RGBColor = RGBColor(23, 190, 207);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const LIMIT_RED: RGBColor = RGBColor(214, 39, 40);
const SPEC: RGBColor = RGBColor(255, 127, 14);
const VIOLATION: RGBColor = RGBColor(200, 0, 0);
const ONSET: RGBColor = RGBColor(148, 103, 189);
const GREY: RGBColor = RGBColor(90, 90, 90);
const PHASE1: RGBColor = RGBColor(238, 238, 238);

/// A drawing error as text.
fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// `ms` since the epoch as `2026-12-07 06:00 UTC`.
pub fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// Four significant digits, without an exponent for ordinary values.
fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if (1e-3..1e6).contains(&v.abs()) {
        let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
        format!("{v:.digits$}")
    } else {
        format!("{v:.3e}")
    }
}

/// `v` with the decimals a y range of `span` needs (the same for every line's label).
fn num_in(v: f64, span: f64) -> String {
    if !(1e-4..1e6).contains(&span) {
        return num(v);
    }
    let digits = (3 - span.log10().floor() as i32).clamp(0, 6) as usize;
    format!("{v:.digits$}")
}

/// A specification limit: its name (`USL`, `LSL`) and value.
type SpecLine = (&'static str, f64);

/// The y range: the points and their limits, padded; spec limits join it when they are
/// near (else they would flatten the chart: they are noted in the footer instead).
fn y_range(data: &ChartData) -> (f64, f64, Vec<SpecLine>, Vec<SpecLine>) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in &data.points {
        for v in [
            Some(p.point.value),
            p.point.lower,
            Some(p.point.ucl),
            Some(p.point.lcl),
        ]
        .into_iter()
        .flatten()
        {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if let Some(l) = data.limits
        && data.points.is_empty()
    {
        lo = lo.min(l.lcl);
        hi = hi.max(l.ucl);
    }
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let span = (hi - lo).max(hi.abs().max(1.0) * 1e-9);
    let mut shown = Vec::new();
    let mut off = Vec::new();
    // CUSUM plots sums, not values: spec limits do not belong on it.
    if data.spec.chart_type != spcvm_operators::ChartType::Cusum {
        for (name, v) in [("USL", data.spec.spec_upper), ("LSL", data.spec.spec_lower)] {
            let Some(v) = v else { continue };
            if v >= lo - span && v <= hi + span {
                lo = lo.min(v);
                hi = hi.max(v);
                shown.push((name, v));
            } else {
                off.push((name, v));
            }
        }
    }
    let pad = (hi - lo).max(span) * 0.12;
    (lo - pad, hi + pad, shown, off)
}

/// Where a firing or an alert on `plot` at `sample` is drawn: on the location point of that
/// sample (spread firings too), a spec firing at its raw value held inside the plot.
fn anchor(data: &ChartData, plot: Plot, sample: u64, statistic: f64, y: (f64, f64)) -> f64 {
    let on_point = || {
        data.points
            .iter()
            .find(|p| p.sample == sample)
            .map(|p| p.point.value)
    };
    let v = match plot {
        Plot::Spec => statistic,
        Plot::R | Plot::S | Plot::Mr => on_point().unwrap_or(statistic),
        Plot::Xbar | Plot::I | Plot::Ewma | Plot::Cusum => statistic,
    };
    let margin = (y.1 - y.0) * 0.01;
    v.clamp(y.0 + margin, y.1 - margin)
}

/// Draws the whole chart on `root`.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ChartData,
    style: &Style,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(text)?;
    let (w, h) = root.dim_in_pixel();
    let scale = (f64::from(w) / 1400.0)
        .min(f64::from(h) / 700.0)
        .clamp(0.5, 3.0);
    let px = |v: f64| (v * scale).round() as i32;
    let font = |size: f64| (FAMILY, size * scale).into_font();
    let header_h = px(62.0);
    let footer_h = px(30.0);
    let (header, rest) = root.split_vertically(header_h);
    let (body, footer) =
        rest.split_vertically(i32::try_from(h).unwrap_or(i32::MAX) - header_h - footer_h);

    // Header: the key, the chart, the span.
    let first = data.times.first().copied().unwrap_or(0);
    let last = data.times.last().copied().unwrap_or(0);
    header
        .draw(&Text::new(
            format!(
                "{} / {} / {}: {}",
                data.tool_id,
                data.recipe_id,
                data.parameter,
                data.chart_name()
            ),
            (px(16.0), px(10.0)),
            font(22.0).color(&BLACK),
        ))
        .map_err(text)?;
    let phase = match data.phase1_end {
        Some(end) => format!("Phase I: samples 1-{end}"),
        None => "still in Phase I (no limits yet)".into(),
    };
    header
        .draw(&Text::new(
            format!(
                "{} samples, {} to {}; {phase}; {} alerts, {} rule firings",
                data.samples,
                utc(first),
                utc(last),
                data.alerts.len(),
                data.fired.len()
            ),
            (px(16.0), px(38.0)),
            font(15.0).color(&GREY),
        ))
        .map_err(text)?;

    let (y0, y1, spec_shown, spec_off) = y_range(data);
    let x1 = data.samples as f64 + 0.5;
    let mut chart = ChartBuilder::on(&body)
        .margin_left(px(12.0))
        .margin_right(px(120.0))
        .margin_top(px(8.0))
        .x_label_area_size(px(44.0))
        .y_label_area_size(px(84.0))
        .build_cartesian_2d(0.5f64..x1, y0..y1)
        .map_err(text)?;
    let y_desc = match data.spec.chart_type {
        spcvm_operators::ChartType::XbarR | spcvm_operators::ChartType::XbarS => {
            format!("subgroup mean of {}", data.parameter)
        }
        spcvm_operators::ChartType::Ewma => format!("EWMA of {}", data.parameter),
        spcvm_operators::ChartType::Cusum => format!("CUSUM of {} (sums x sigma)", data.parameter),
        spcvm_operators::ChartType::Imr => data.parameter.clone(),
    };
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .x_desc("sample of this chart (one a wafer)")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| num_in(*y, y1 - y0))
        .label_style(font(13.0))
        .axis_desc_style(font(14.0))
        .x_labels(12)
        .y_labels(8)
        .draw()
        .map_err(text)?;

    // Phase I: no limits yet, shaded.
    let p1_end = data.phase1_end.map_or(x1, |e| e as f64 + 0.5);
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.5, y0), (p1_end, y1)],
            PHASE1.filled(),
        )))
        .map_err(text)?;
    // At the bottom: the legend may take a top corner.
    let p1_left = chart.backend_coord(&(0.5, y0));
    let p1_right = chart.backend_coord(&(p1_end, y0));
    if p1_right.0 - p1_left.0 > px(210.0) {
        root.draw(&Text::new(
            "Phase I: limits being estimated",
            (p1_left.0 + px(6.0), p1_left.1 - px(22.0)),
            font(13.0).color(&GREY),
        ))
        .map_err(text)?;
    }

    // Limits, from the points (EWMA's exact limits widen after Phase I).
    let right_labels = draw_limits(&mut chart, data, x1, &spec_shown, scale)?;

    // Marks (fault onsets).
    for mark in &style.marks {
        let Some(s) = data.sample_at(mark.event_time) else {
            continue;
        };
        let x = s as f64;
        chart
            .draw_series(DashedLineSeries::new(
                [(x, y0), (x, y1)],
                px(6.0),
                px(4.0),
                ONSET.stroke_width(px(2.0).max(1) as u32),
            ))
            .map_err(text)?
            .label(mark.label.clone())
            .legend(move |(lx, ly)| {
                PathElement::new(vec![(lx, ly), (lx + 20, ly)], ONSET.stroke_width(2))
            });
        let at = chart.backend_coord(&(x, y1));
        root.draw(&Text::new(
            mark.label.clone(),
            (at.0 + px(5.0), at.1 + px(22.0)),
            font(13.0).color(&ONSET),
        ))
        .map_err(text)?;
    }

    // The statistic.
    let cusum = data.spec.chart_type == spcvm_operators::ChartType::Cusum;
    let stat_name = match data.spec.chart_type {
        spcvm_operators::ChartType::XbarR | spcvm_operators::ChartType::XbarS => "subgroup mean",
        spcvm_operators::ChartType::Ewma => "EWMA statistic",
        spcvm_operators::ChartType::Cusum => "upper CUSUM",
        spcvm_operators::ChartType::Imr => "individual value",
    };
    let line_w = px(1.5).max(1) as u32;
    chart
        .draw_series(LineSeries::new(
            data.points.iter().map(|p| (p.sample as f64, p.point.value)),
            BLUE.stroke_width(line_w),
        ))
        .map_err(text)?
        .label(stat_name)
        .legend(|(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 20, ly)], BLUE.stroke_width(2)));
    if cusum {
        chart
            .draw_series(LineSeries::new(
                data.points
                    .iter()
                    .filter_map(|p| p.point.lower.map(|l| (p.sample as f64, l))),
                TEAL.stroke_width(line_w),
            ))
            .map_err(text)?
            .label("lower CUSUM (negative)")
            .legend(|(lx, ly)| {
                PathElement::new(vec![(lx, ly), (lx + 20, ly)], TEAL.stroke_width(2))
            });
    }
    if data.points.len() <= 150 {
        chart
            .draw_series(
                data.points
                    .iter()
                    .map(|p| Circle::new((p.sample as f64, p.point.value), px(2.5), BLUE.filled())),
            )
            .map_err(text)?;
    }

    // Rule firings, then the alerts' labels.
    let mut firings = Vec::new();
    for f in &data.fired {
        let y = anchor(data, f.signal.plot, f.sample, f.signal.statistic, (y0, y1));
        firings.push((f.sample as f64, y));
    }
    chart
        .draw_series(
            firings
                .iter()
                .map(|&c| Circle::new(c, px(3.0), VIOLATION.filled())),
        )
        .map_err(text)?
        .label("rule firing")
        .legend(|c| Circle::new(c, 3, VIOLATION.filled()));
    let (labelled, skipped) = draw_alert_labels(root, &chart, data, (y0, y1), scale)?;

    // Line names at the right edge.
    for (name, y, color) in right_labels {
        let at = chart.backend_coord(&(x1, y));
        root.draw(&Text::new(
            format!("{name} {}", num_in(y, y1 - y0)),
            (at.0 + px(6.0), at.1 - px(7.0)),
            font(13.0).color(&color),
        ))
        .map_err(text)?;
    }

    chart
        .configure_series_labels()
        .position(legend_corner(data, (y0, y1)))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(font(13.0))
        .draw()
        .map_err(text)?;

    // Footer: what is not drawn, and what the labels leave out.
    let mut notes = Vec::new();
    if skipped > 0 {
        notes.push(format!(
            "{labelled} of {} alerts labelled (the others would overlap)",
            data.alerts.len()
        ));
    }
    for (name, v) in &spec_off {
        notes.push(format!("{name} {} off scale", num(*v)));
    }
    if let Some(l) = data.limits {
        notes.push(format!("sigma {}", num(l.sigma)));
    }
    notes.push("red: a rule fired on the point (spec firings at the raw value)".into());
    footer
        .draw(&Text::new(
            notes.join("; "),
            (px(16.0), px(6.0)),
            font(13.0).color(&GREY),
        ))
        .map_err(text)?;
    Ok(())
}

/// The corner of the plot with the fewest points (the legend goes there).
fn legend_corner(data: &ChartData, (y0, y1): (f64, f64)) -> SeriesLabelPosition {
    let n = data.samples as f64;
    let count = |left: bool, top: bool| {
        data.points
            .iter()
            .filter(|p| {
                let x = p.sample as f64 / n.max(1.0);
                let y = (p.point.value - y0) / (y1 - y0);
                (if left { x < 0.3 } else { x > 0.7 }) && (if top { y > 0.6 } else { y < 0.4 })
            })
            .count()
    };
    [
        (SeriesLabelPosition::UpperLeft, count(true, true)),
        (SeriesLabelPosition::UpperRight, count(false, true)),
        (SeriesLabelPosition::LowerLeft, count(true, false)),
        (SeriesLabelPosition::LowerRight, count(false, false)),
    ]
    .into_iter()
    .min_by_key(|(_, n)| *n)
    .map_or(SeriesLabelPosition::UpperRight, |(p, _)| p)
}

type Chart2d<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Center line, control limits (as the points saw them) and shown spec limits; returns the
/// names to write at the right edge.
fn draw_limits<DB: DrawingBackend>(
    chart: &mut Chart2d<'_, DB>,
    data: &ChartData,
    x1: f64,
    spec_shown: &[(&'static str, f64)],
    scale: f64,
) -> Result<Vec<(String, f64, RGBColor)>, String> {
    let px = |v: f64| ((v * scale).round() as u32).max(1);
    let mut right = Vec::new();
    let Some(first) = data.points.first() else {
        return Ok(right);
    };
    let x0 = first.sample as f64 - 0.5;
    let center = first.point.center;
    chart
        .draw_series(LineSeries::new(
            [(x0, center), (x1, center)],
            GREEN.stroke_width(px(1.5)),
        ))
        .map_err(text)?
        .label("center line")
        .legend(|(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 20, ly)], GREEN.stroke_width(2)));
    right.push(("CL".to_string(), center, GREEN));
    for (i, upper) in [true, false].into_iter().enumerate() {
        let limit = |p: &super::data::Plotted| if upper { p.point.ucl } else { p.point.lcl };
        let mut path: Vec<(f64, f64)> = vec![(x0, limit(first))];
        path.extend(data.points.iter().map(|p| (p.sample as f64, limit(p))));
        let end = limit(data.points.last().unwrap_or(first));
        path.push((x1, end));
        let series = chart
            .draw_series(DashedLineSeries::new(
                path,
                px(8.0) as i32,
                px(5.0) as i32,
                LIMIT_RED.stroke_width(px(1.5)),
            ))
            .map_err(text)?;
        if i == 0 {
            series.label("control limits").legend(|(lx, ly)| {
                PathElement::new(vec![(lx, ly), (lx + 20, ly)], LIMIT_RED.stroke_width(2))
            });
        }
        right.push((
            if upper { "UCL" } else { "LCL" }.to_string(),
            end,
            LIMIT_RED,
        ));
    }
    for (i, (name, v)) in spec_shown.iter().enumerate() {
        let series = chart
            .draw_series(DashedLineSeries::new(
                [(0.5, *v), (x1, *v)],
                px(3.0) as i32,
                px(4.0) as i32,
                SPEC.stroke_width(px(2.0)),
            ))
            .map_err(text)?;
        if i == 0 {
            series.label("spec limits").legend(|(lx, ly)| {
                PathElement::new(vec![(lx, ly), (lx + 20, ly)], SPEC.stroke_width(2))
            });
        }
        right.push(((*name).to_string(), *v, SPEC));
    }
    Ok(right)
}

/// Writes each alert's rule beside its point, above a point over the center line and
/// below one under it, on the first of a few rows where it overlaps no other label; an
/// alert with no free row stays marked but unlabelled. Returns (labelled, skipped).
fn draw_alert_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart2d<'_, DB>,
    data: &ChartData,
    y: (f64, f64),
    scale: f64,
) -> Result<(usize, usize), String> {
    let px = |v: f64| (v * scale).round() as i32;
    let style = (FAMILY, 13.0 * scale).into_font().color(&VIOLATION);
    let area = chart.plotting_area();
    let (ax, ay) = (area.get_pixel_range().0, area.get_pixel_range().1);
    let mut placed: Vec<(i32, i32, i32, i32)> = Vec::new();
    let (mut labelled, mut skipped) = (0, 0);
    // One label a sample: the alerts one point raised, side by side.
    let mut groups: Vec<(u64, Plot, f64, String, usize)> = Vec::new();
    for l in &data.alerts {
        let plot = match l.alert.chart.as_str() {
            "xbar" => Plot::Xbar,
            "i" => Plot::I,
            "ewma" => Plot::Ewma,
            "cusum" => Plot::Cusum,
            "r" => Plot::R,
            "s" => Plot::S,
            "mr" => Plot::Mr,
            _ => Plot::Spec,
        };
        let mut rule = l.alert.rule.clone();
        if l.alert.repeats > 0 {
            rule.push_str(&format!(" (+{})", l.alert.repeats));
        }
        match groups.last_mut() {
            Some(g) if g.0 == l.sample => {
                g.3.push_str(", ");
                g.3.push_str(&rule);
                g.4 += 1;
            }
            _ => groups.push((l.sample, plot, l.alert.statistic, rule, 1)),
        }
    }
    for (sample, plot, statistic, label, count) in groups {
        let v = anchor(data, plot, sample, statistic, y);
        let (x0, y0) = chart.backend_coord(&(sample as f64, v));
        let (tw, th) = root.estimate_text_size(&label, &style).map_err(text)?;
        let (tw, th) = (tw as i32, th as i32);
        let center = data
            .points
            .iter()
            .find(|p| p.sample >= sample)
            .map_or(v, |p| p.point.center);
        let up = v >= center;
        let mut spot = None;
        for row in 0..4 {
            let dy = px(16.0) + row * (th + px(6.0));
            let top = if up { y0 - dy - th } else { y0 + dy };
            let left = (x0 - tw / 2).clamp(ax.start, (ax.end - tw).max(ax.start));
            let bx = (left, top, left + tw, top + th);
            let inside = top >= ay.start && top + th <= ay.end;
            let free = placed
                .iter()
                .all(|p| bx.2 + px(4.0) < p.0 || p.2 + px(4.0) < bx.0 || bx.3 < p.1 || p.3 < bx.1);
            if inside && free {
                spot = Some(bx);
                break;
            }
        }
        let Some(bx) = spot else {
            skipped += count;
            continue;
        };
        labelled += count;
        placed.push(bx);
        let tip = if up { bx.3 } else { bx.1 };
        root.draw(&PathElement::new(
            vec![(x0, y0), (bx.0 + tw / 2, tip)],
            VIOLATION.mix(0.6).stroke_width(1),
        ))
        .map_err(text)?;
        root.draw(&Rectangle::new(
            [(bx.0 - 2, bx.1 - 1), (bx.2 + 2, bx.3 + 1)],
            WHITE.mix(0.85).filled(),
        ))
        .map_err(text)?;
        root.draw(&Text::new(label, (bx.0, bx.1), style.clone()))
            .map_err(text)?;
    }
    Ok((labelled, skipped))
}
