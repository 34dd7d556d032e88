//! The PNG plot: throughput against concurrency, tickethub against PocketBase, for durable
//! creates and indexed reads. Text needs a TrueType font: DejaVu Sans from Debian's
//! fonts-dejavu-core when present; without it the lines are drawn unlabelled (the Markdown
//! carries the legend).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::report::{Measurement, CREATE, POCKETBASE, READ, TICKETHUB};

const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Register a sans-serif font with plotters; false when none is installed.
fn load_font() -> bool {
    for path in FONT_PATHS {
        if let Ok(bytes) = std::fs::read(path) {
            // plotters keeps the font for the life of the process.
            let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, leaked).is_ok() {
                return true;
            }
        }
    }
    false
}

struct Series {
    label: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// Concurrency is plotted on a log₂ axis.
fn x_of(concurrency: usize) -> f64 {
    (concurrency.max(1) as f64).log2()
}

pub fn throughput_png(sweep: &[Measurement], path: &Path) -> Result<bool> {
    let with_text = load_font();
    let mut series = Vec::new();
    for (workload, dashed) in [(CREATE, false), (READ, true)] {
        for (system, color) in [(TICKETHUB, BLUE), (POCKETBASE, RED)] {
            let mut points: Vec<(f64, f64)> = sweep
                .iter()
                .filter(|m| m.workload == workload && m.system == system)
                .map(|m| (x_of(m.concurrency), m.throughput))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            if !points.is_empty() {
                series.push(Series {
                    label: format!("{system}: {workload}"),
                    color,
                    dashed,
                    points,
                });
            }
        }
    }
    if series.is_empty() {
        return Err(anyhow!("nothing to plot"));
    }
    let max_x = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_y = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;

    let root = BitMapBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if with_text {
        builder
            .caption(
                "Throughput against concurrency (requests/s)",
                ("sans-serif", 24),
            )
            .x_label_area_size(45)
            .y_label_area_size(80);
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)
        .map_err(|e| anyhow!("{e:?}"))?;
    if with_text {
        chart
            .configure_mesh()
            .x_desc("concurrent connections")
            .y_desc("requests/s")
            .x_labels(8)
            .x_label_formatter(&|x| format!("{}", 2f64.powf(*x).round()))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| anyhow!("{e:?}"))?;
    } else {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_y_mesh()
            .x_labels(0)
            .y_labels(0)
            .draw()
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    for s in &series {
        let style = ShapeStyle::from(&s.color).stroke_width(3);
        let drawn = if s.dashed {
            chart.draw_series(DashedLineSeries::new(s.points.clone(), 12, 8, style))
        } else {
            chart.draw_series(LineSeries::new(s.points.clone(), style))
        }
        .map_err(|e| anyhow!("{e:?}"))?;
        if with_text {
            let color = s.color;
            // Dashed series get a dashed legend mark: two short strokes with a gap.
            let gap = if s.dashed { (8, 13) } else { (10, 10) };
            drawn.label(s.label.clone()).legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (gap.0, 0)], color.stroke_width(3))
                    + PathElement::new(vec![(gap.1, 0), (22, 0)], color.stroke_width(3))
            });
        }
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|p| Circle::new(*p, 5, s.color.filled())),
            )
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    if with_text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .draw()
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(with_text)
}
