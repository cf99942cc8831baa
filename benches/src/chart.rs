//! benches/results.png: the medians as bar charts, one panel per scenario.
//!
//! Drawn into an RGB buffer with plotters and encoded with `png`, text rendered by ab_glyph
//! from a TTF file registered by hand, so neither fontconfig nor freetype is needed.

use std::io::BufWriter;
use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};
use crate::peers::FONT;
use crate::run::{metric, Outcome, HELD};

const WIDTH: u32 = 1500;
const HEIGHT: u32 = 900;
const FERRY: RGBColor = RGBColor(0, 119, 182);
const BASE: RGBColor = RGBColor(140, 140, 140);
const HAPROXY: RGBColor = RGBColor(230, 126, 34);
const HAPROXY_H2: RGBColor = RGBColor(243, 179, 112);
const NEBULA: RGBColor = RGBColor(142, 68, 173);

struct Panel {
    title: String,
    unit: &'static str,
    bars: Vec<(&'static str, Option<f64>, RGBColor)>,
}

fn panels(o: &Outcome) -> Vec<Panel> {
    let m = |metric: &str, target: &str| o.samples.median(metric, target);
    let loopback = |metric: &str| {
        vec![
            ("direct", m(metric, "direct"), BASE),
            ("Ferry", m(metric, "ferry"), FERRY),
            ("HAProxy", m(metric, "haproxy"), HAPROXY),
            ("HAProxy h2", m(metric, "haproxy-h2"), HAPROXY_H2),
        ]
    };
    let pair_memory =
        |target: &str| sum(m(metric::RSS_HELD, target), m(metric::RSS_HELD_B, target));
    vec![
        Panel {
            title: "HTTP/1.1 throughput, 32 connections".into(),
            unit: "requests/s",
            bars: loopback(metric::HTTP_RPS),
        },
        Panel {
            title: format!("HTTP/1.1 p99 at a fixed {:.0} req/s", o.open_rate),
            unit: "µs",
            bars: loopback(metric::HTTP_P99),
        },
        Panel {
            title: "Latency added over direct, 1 connection (p50)".into(),
            unit: "µs",
            bars: vec![
                ("Ferry", m(metric::SEQ_ADDED, "ferry"), FERRY),
                ("HAProxy", m(metric::SEQ_ADDED, "haproxy"), HAPROXY),
                ("HAProxy h2", m(metric::SEQ_ADDED, "haproxy-h2"), HAPROXY_H2),
            ],
        },
        Panel {
            title: "gRPC unary throughput, 32 in flight".into(),
            unit: "calls/s",
            bars: loopback(metric::GRPC_RPS),
        },
        Panel {
            title: "Bulk TCP between namespaces".into(),
            unit: "Gbit/s",
            bars: vec![
                ("bare veth", m(metric::BULK_GBPS, "veth"), BASE),
                ("Ferry", m(metric::BULK_GBPS, "ferry"), FERRY),
                ("Nebula", m(metric::BULK_GBPS, "nebula"), NEBULA),
            ],
        },
        Panel {
            title: format!("Memory of a pair, {HELD} open connections"),
            unit: "MiB (both nodes)",
            bars: vec![
                ("Ferry", pair_memory("ferry"), FERRY),
                ("HAProxy", pair_memory("haproxy"), HAPROXY),
                ("HAProxy h2", pair_memory("haproxy-h2"), HAPROXY_H2),
            ],
        },
    ]
}

fn sum(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? + b?)
}

fn drawing<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    Error::Output {
        what: "drawing the chart".into(),
        detail: e.to_string(),
    }
}

pub(crate) fn draw(o: &Outcome, path: &Path) -> Result<()> {
    let font = std::fs::read(FONT).map_err(Error::io(format!("reading the font {FONT}")))?;
    // plotters keeps registered fonts for the life of the process, so it wants them 'static.
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font).map_err(|_| {
        Error::Output {
            what: FONT.into(),
            detail: "not a font ab_glyph can read".into(),
        }
    })?;

    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let title = format!(
            "Ferry beside its peers: medians of {} round{} on {} cores (shared); see RESULTS.md",
            o.options.runs,
            if o.options.runs == 1 { "" } else { "s" },
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        let body = root
            .titled(&title, ("sans-serif", 26).into_font().color(&BLACK))
            .map_err(drawing)?;
        for (area, panel) in body.split_evenly((2, 3)).iter().zip(panels(o)) {
            draw_panel(area, &panel)?;
        }
        root.present().map_err(drawing)?;
    }

    let file =
        std::fs::File::create(path).map_err(Error::io(format!("creating {}", path.display())))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let encoded = encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(&pixels));
    encoded.map_err(|e| Error::Output {
        what: format!("encoding {}", path.display()),
        detail: e.to_string(),
    })
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<()> {
    let names: Vec<&str> = panel.bars.iter().map(|b| b.0).collect();
    let top = panel.bars.iter().filter_map(|b| b.1).fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.25 } else { 1.0 };
    // A segmented range 0..=last has one segment per bar.
    let last = (panel.bars.len() as u32).saturating_sub(1);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 19))
        .margin(14)
        .x_label_area_size(30)
        .y_label_area_size(85)
        .build_cartesian_2d((0u32..last).into_segmented(), 0f64..top)
        .map_err(drawing)?;
    let label = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) => names.get(*i as usize).copied().unwrap_or("").to_string(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(panel.bars.len())
        .x_label_formatter(&label)
        .y_label_formatter(&|v: &f64| {
            if top >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        })
        .y_desc(panel.unit)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(drawing)?;
    let known: Vec<(u32, f64, RGBColor)> = panel
        .bars
        .iter()
        .enumerate()
        .filter_map(|(i, (_, v, color))| v.map(|v| (i as u32, v, *color)))
        .collect();
    chart
        .draw_series(known.iter().map(|&(i, v, color)| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), v),
                ],
                color.filled(),
            );
            bar.set_margin(0, 0, 18, 18);
            bar
        }))
        .map_err(drawing)?;
    let value_style =
        TextStyle::from(("sans-serif", 16).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart
        .draw_series(known.iter().map(|&(i, v, _)| {
            let text = if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            };
            Text::new(text, (SegmentValue::CenterOf(i), v), value_style.clone())
        }))
        .map_err(drawing)?;
    Ok(())
}
