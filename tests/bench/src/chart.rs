//! `chart.svg`: delivery latency percentiles (left) and deliveries/s
//! (right) against the number of subscribers, from the max-rate fan-out runs.

use crate::suite::FANOUT_KS;
use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;

/// Percentiles drawn, with their JSON key and colour.
const SERIES: [(&str, &str, RGBColor); 4] = [
    ("p50", "p50", BLUE),
    ("p99", "p99", RED),
    ("p99.9", "p999", MAGENTA),
    ("max", "max", BLACK),
];

pub(crate) fn draw(path: &Path, runs: &Value) -> Result<(), String> {
    let points: Vec<(f64, &Value)> = FANOUT_KS
        .iter()
        .filter_map(|k| {
            let run = &runs[format!("fanout-k{k}")];
            run.get("deliveries_per_sec").map(|_| (*k as f64, run))
        })
        .collect();
    if points.is_empty() {
        return Err("no successful fan-out run to plot".to_owned());
    }
    let root = SVGBackend::new(path, (1100, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(550);
    let x = (0.8f64..1500.0).log_scale();

    let lat = |run: &Value, key: &str| {
        run["delivery_latency_ms"][key]
            .as_f64()
            .unwrap_or(0.0)
            .max(0.001)
    };
    let top = points
        .iter()
        .map(|(_, r)| lat(r, "max"))
        .fold(1.0, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(&left)
        .caption("delivery latency (max rate)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(x.clone(), (0.001f64..top).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("subscribers")
        .y_desc("ms")
        .draw()
        .map_err(|e| e.to_string())?;
    for (label, key, color) in SERIES {
        let line: Vec<(f64, f64)> = points.iter().map(|(k, r)| (*k, lat(r, key))).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        chart
            .draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;

    let rate = |run: &Value| run["deliveries_per_sec"].as_f64().unwrap_or(0.0);
    let top = points.iter().map(|(_, r)| rate(r)).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&right)
        .caption("deliveries/s (max rate)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(x, 0f64..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("subscribers")
        .y_desc("deliveries/s")
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .draw()
        .map_err(|e| e.to_string())?;
    let line: Vec<(f64, f64)> = points.iter().map(|(k, r)| (*k, rate(r))).collect();
    chart
        .draw_series(LineSeries::new(line.clone(), BLUE.stroke_width(2)))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(line.into_iter().map(|p| Circle::new(p, 3, BLUE.filled())))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
