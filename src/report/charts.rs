//! The reports' figures as SVG text, drawn by plotters' SVG backend: points on
//! log axes, one bar per category (with an optional outline, e.g. the budget
//! behind the spend), and lines. No font file is read: plotters lays text out
//! with rough metrics and the browser draws it.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// Where a figure's legend goes: the corner its lines leave empty.
pub use plotters::chart::SeriesLabelPosition as Legend;

/// Size of every figure, in CSS pixels.
pub const SIZE: (u32, u32) = (560, 340);

#[derive(Debug, thiserror::Error)]
#[error("drawing the figure {figure:?}: {reason}")]
pub struct ChartError {
    figure: String,
    reason: String,
}

/// A named set of points, drawn in its own colour with a legend entry.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Tableau's ten colours: distinct, and readable for most colour-blind readers.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

const GREY: RGBColor = RGBColor(150, 150, 150);

/// 1234567 → "1.2M": axis labels that fit.
pub fn compact(value: f64) -> String {
    let magnitude = value.abs();
    let (scaled, suffix) = match magnitude {
        m if m >= 1e9 => (value / 1e9, "G"),
        m if m >= 1e6 => (value / 1e6, "M"),
        m if m >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    let text = if scaled.abs() >= 100.0 || scaled.fract().abs() < 1e-9 {
        format!("{scaled:.0}")
    } else if scaled.abs() >= 10.0 {
        format!("{scaled:.1}")
    } else {
        format!("{scaled:.2}")
    };
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text };
    format!("{text}{suffix}")
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Draws one figure with `draw` and returns its SVG.
fn svg(title: &str, draw: impl FnOnce(&Area) -> DrawResult) -> Result<String, ChartError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE)
            .and_then(|_| draw(&root))
            .and_then(|_| root.present())
            .map_err(|e| ChartError { figure: title.to_string(), reason: e.to_string() })?;
    }
    Ok(out)
}

/// Every figure's frame: its title, margins, and room for the axes' labels
/// (`y_labels` pixels left of the plot).
fn frame<'a, 'b>(root: &'a Area<'b>, title: &str, y_labels: u32) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder.caption(title, ("sans-serif", 16)).margin(12).x_label_area_size(42).y_label_area_size(y_labels);
    builder
}

type Linear<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A frame with linear axes over the ranges, labelled compactly, and its grid drawn.
fn linear<'a, 'b>(
    root: &'a Area<'b>,
    title: &str,
    (x_desc, x_range): (&str, Range<f64>),
    (y_desc, y_range): (&str, Range<f64>),
) -> Result<Linear<'a, 'b>, DrawingAreaErrorKind<std::io::Error>> {
    let mut chart = frame(root, title, 56).build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| compact(*v))
        .y_label_formatter(&|v| compact(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    Ok(chart)
}

/// Positive points on log-log axes sharing one range, with the line y = x
/// named `diagonal` when given (e.g. "spend = budget").
pub fn scatter_log(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    diagonal: Option<&str>,
) -> Result<String, ChartError> {
    let positive: Vec<Vec<(f64, f64)>> =
        series.iter().map(|s| s.points.iter().copied().filter(|&(x, y)| x > 0.0 && y > 0.0).collect()).collect();
    let values = positive.iter().flatten().flat_map(|&(x, y)| [x, y]);
    let (low, high) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (low, high) = if low.is_finite() && high > low { (low / 1.5, high * 1.5) } else { (1.0, 10.0) };
    svg(title, |root| {
        let mut chart = frame(root, title, 56).build_cartesian_2d((low..high).log_scale(), (low..high).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|v| compact(*v))
            .y_label_formatter(&|v| compact(*v))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()?;
        if let Some(name) = diagonal {
            chart
                .draw_series(LineSeries::new([(low, low), (high, high)], GREY.stroke_width(1)))?
                .label(name)
                .legend(|(x, y)| PathElement::new([(x - 8, y), (x + 8, y)], GREY));
        }
        for (i, (series, points)) in series.iter().zip(&positive).enumerate() {
            let c = colour(i);
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.mix(0.75).filled())))?
                .label(series.name.as_str())
                .legend(move |(x, y)| Circle::new((x, y), 4, c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(GREY)
            .draw()?;
        Ok(())
    })
}

/// One horizontal filled bar per category, first on top (`values`, named
/// `value_name`); with `outline`, a hollow bar behind each (e.g. the budget
/// behind the spend). Horizontal, so that long category names stay readable.
pub fn bars(
    title: &str,
    x_desc: &str,
    categories: &[String],
    (value_name, values): (&str, &[f64]),
    outline: Option<(&str, &[f64])>,
) -> Result<String, ChartError> {
    let n = categories.len().max(1) as i32;
    let top = values.iter().chain(outline.map_or(&[][..], |(_, v)| v)).fold(0.0f64, |m, &v| m.max(v));
    let top = if top > 0.0 { top * 1.12 } else { 1.0 };
    // Category i is drawn in row n - 1 - i (rows count from the bottom).
    let row = |i: usize| n - 1 - i as i32;
    let end = |r: i32| if r + 1 < n { SegmentValue::Exact(r + 1) } else { SegmentValue::Last };
    let longest = categories.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    let label_area = (longest as u32 * 7 + 12).clamp(40, 220);
    svg(title, |root| {
        let mut chart = frame(root, title, label_area).build_cartesian_2d(0.0..top, (0..n - 1).into_segmented())?;
        let label = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(r) | SegmentValue::Exact(r) => {
                categories.get((n - 1 - r) as usize).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(categories.len().max(1))
            .y_label_formatter(&label)
            .x_label_formatter(&|v| compact(*v))
            .x_desc(x_desc)
            .light_line_style(RGBColor(240, 240, 240))
            .draw()?;
        if let Some((name, outline)) = outline {
            chart
                .draw_series(outline.iter().enumerate().map(|(i, &v)| {
                    let mut bar =
                        Rectangle::new([(0.0, SegmentValue::Exact(row(i))), (v, end(row(i)))], GREY.stroke_width(2));
                    bar.set_margin(3, 3, 0, 0);
                    bar
                }))?
                .label(name)
                .legend(|(x, y)| Rectangle::new([(x - 6, y - 5), (x + 6, y + 5)], GREY.stroke_width(2)));
        }
        let c = colour(0);
        let filled = chart.draw_series(values.iter().enumerate().map(|(i, &v)| {
            let mut bar = Rectangle::new([(0.0, SegmentValue::Exact(row(i))), (v, end(row(i)))], c.mix(0.85).filled());
            bar.set_margin(7, 7, 0, 0);
            bar
        }))?;
        // A legend only tells filled from outline; one series needs none.
        if outline.is_some() {
            filled.label(value_name).legend(move |(x, y)| Rectangle::new([(x - 6, y - 5), (x + 6, y + 5)], c.filled()));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(GREY)
                .draw()?;
        }
        Ok(())
    })
}

/// Lines through each series' points (in order) on linear axes, with
/// markers when `markers`, the line y = x named `diagonal` when given, and
/// the legend at `legend`.
pub fn lines(
    title: &str,
    (x_desc, x_range): (&str, Range<f64>),
    (y_desc, y_range): (&str, Range<f64>),
    series: &[Series],
    (diagonal, markers, legend): (Option<&str>, bool, Legend),
) -> Result<String, ChartError> {
    svg(title, |root| {
        let mut chart = linear(root, title, (x_desc, x_range.clone()), (y_desc, y_range.clone()))?;
        if let Some(name) = diagonal {
            let (low, high) = (x_range.start.max(y_range.start), x_range.end.min(y_range.end));
            chart
                .draw_series(LineSeries::new([(low, low), (high, high)], GREY.stroke_width(1)))?
                .label(name)
                .legend(|(x, y)| PathElement::new([(x - 8, y), (x + 8, y)], GREY));
        }
        for (i, series) in series.iter().enumerate() {
            let c = colour(i);
            let line = LineSeries::new(series.points.iter().copied(), c.stroke_width(2));
            let line = if markers { line.point_size(3) } else { line };
            chart
                .draw_series(line)?
                .label(series.name.as_str())
                .legend(move |(x, y)| PathElement::new([(x - 8, y), (x + 8, y)], c.stroke_width(2)));
        }
        chart.configure_series_labels().position(legend).background_style(WHITE.mix(0.85)).border_style(GREY).draw()?;
        Ok(())
    })
}

/// A point with its 95% interval, if it has one: (x, y, (low, high)).
pub type Estimate = (f64, f64, Option<(f64, f64)>);

/// Per series, its estimates joined by a line, each with its interval as a
/// vertical bar; a grey line at y = 0 (no change).
pub fn intervals(
    title: &str,
    (x_desc, x_range): (&str, Range<f64>),
    (y_desc, y_range): (&str, Range<f64>),
    series: &[(String, Vec<Estimate>)],
    legend: Legend,
) -> Result<String, ChartError> {
    svg(title, |root| {
        let mut chart = linear(root, title, (x_desc, x_range.clone()), (y_desc, y_range.clone()))?;
        chart.draw_series(LineSeries::new([(x_range.start, 0.0), (x_range.end, 0.0)], GREY.stroke_width(1)))?;
        for (i, (name, estimates)) in series.iter().enumerate() {
            let c = colour(i);
            let points = estimates.iter().map(|&(x, y, _)| (x, y));
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)).point_size(3))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new([(x - 8, y), (x + 8, y)], c.stroke_width(2)));
            chart.draw_series(
                estimates
                    .iter()
                    .filter_map(|&(x, _, bounds)| bounds.map(|(low, high)| PathElement::new([(x, low), (x, high)], c))),
            )?;
        }
        chart.configure_series_labels().position(legend).background_style(WHITE.mix(0.85)).border_style(GREY).draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers_for_axis_labels() {
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(0.25), "0.25");
        assert_eq!(compact(12.5), "12.5");
        assert_eq!(compact(1500.0), "1.5k");
        assert_eq!(compact(2_000_000.0), "2M");
    }

    #[test]
    fn every_kind_of_figure_draws_its_points_and_legend() {
        let series = [Series { name: "promotion".into(), points: vec![(10.0, 5.0), (100.0, 100.0), (0.0, 3.0)] }];
        let scatter = scatter_log("spend", "budget", "spend", &series, Some("spend = budget")).unwrap();
        assert!(scatter.starts_with("<svg") && scatter.contains("promotion") && scatter.contains("spend = budget"));
        assert_eq!(scatter.matches("<circle").count(), 2 + 1, "two positive points and one legend marker");
        let categories = vec!["a".to_string(), "b".to_string()];
        let bar_chart =
            bars("by group", "money", &categories, ("spend", &[1.0, 2.0]), Some(("budget", &[2.0, 2.0]))).unwrap();
        // plotters puts a text element's content on a line of its own.
        for text in ["a", "b", "budget", "spend"] {
            assert!(bar_chart.contains(&format!("\n{text}\n</text>")), "{text} missing: {bar_chart}");
        }
        let line = lines(
            "pr",
            ("recall", 0.0..1.0),
            ("precision", 0.0..1.0),
            &series,
            (Some("perfect"), true, Legend::UpperRight),
        )
        .unwrap();
        assert!(line.contains("<polyline") && line.contains("perfect"));
        // Empty input still draws a chart (an empty run has no campaigns).
        assert!(scatter_log("empty", "x", "y", &[], None).unwrap().starts_with("<svg"));
        assert!(bars("empty", "y", &[], ("v", &[]), None).unwrap().starts_with("<svg"));
    }
}
