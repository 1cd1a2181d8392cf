//! `loss.png` / `loss.svg` for a run folder: val loss against step, one line per model,
//! and a bar per model of its final val loss.

use crate::models::ModelKind;
use crate::resume::EvalRow;
use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Reads the per-model CSVs of a run folder, in V1..V10 order.
pub fn read_curves(run_dir: &Path) -> Result<Vec<(ModelKind, Vec<EvalRow>)>> {
    if !run_dir.is_dir() {
        bail!("{} is not a run folder; pass a folder written by `chargpt train`", run_dir.display());
    }
    let mut curves = Vec::new();
    for kind in ModelKind::ALL {
        let path = run_dir.join(format!("{kind}.csv"));
        if !path.exists() {
            continue;
        }
        let mut reader = csv::Reader::from_path(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let rows: Vec<EvalRow> =
            reader.deserialize().collect::<Result<_, _>>().with_context(|| format!("{} is not a chargpt loss CSV", path.display()))?;
        if !rows.is_empty() {
            curves.push((kind, rows));
        }
    }
    Ok(curves)
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, curves: &[(ModelKind, Vec<EvalRow>)]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let finals: Vec<(String, f64)> =
        curves.iter().filter_map(|(k, r)| r.last().map(|r| (k.to_string().to_uppercase(), r.val_loss))).collect();
    let names: Vec<String> = finals.iter().map(|(n, _)| n.clone()).collect();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (left, right) = root.split_horizontally((62).percent_width());
    let max_step = curves.iter().flat_map(|(_, r)| r.iter().map(|r| r.step)).max().unwrap_or(1).max(1);
    let losses = curves.iter().flat_map(|(_, r)| r.iter().map(|r| r.val_loss)).filter(|l| l.is_finite());
    let (lo, hi) = losses.fold((f64::MAX, f64::MIN), |(lo, hi), l| (lo.min(l), hi.max(l)));
    let (lo, hi) = if lo <= hi { (lo * 0.95, hi * 1.05) } else { (0.5, 5.0) };
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing failed: {e:?}");

    let mut chart = ChartBuilder::on(&left)
        .caption("val loss during training", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0i64..max_step, lo..hi)
        .map_err(err)?;
    chart.configure_mesh().x_desc("step").y_desc("val loss").draw().map_err(err)?;
    for (i, (kind, rows)) in curves.iter().enumerate() {
        let color = Palette99::pick(i * 9 + 1).to_rgba();
        chart
            .draw_series(LineSeries::new(rows.iter().map(|r| (r.step, r.val_loss)), color.stroke_width(2)))
            .map_err(err)?
            .label(kind.to_string().to_uppercase())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;

    let top = finals.iter().map(|(_, l)| *l).fold(0.0, f64::max) * 1.15;
    let n = finals.len() as f64;
    let mut bars = ChartBuilder::on(&right)
        .caption("final val loss", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(45)
        .build_cartesian_2d(-0.5..n - 0.5, 0.0..top.max(0.1))
        .map_err(err)?;
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            names.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    bars.configure_mesh().disable_x_mesh().x_labels(finals.len() * 2 + 1).x_label_formatter(&label).y_desc("loss").draw().map_err(err)?;
    for (i, (_, loss)) in finals.iter().enumerate() {
        let (x, loss) = (i as f64, *loss);
        let color = Palette99::pick(i * 9 + 1).filled();
        bars.draw_series(std::iter::once(Rectangle::new([(x - 0.38, 0.0), (x + 0.38, loss)], color))).map_err(err)?;
        let text = Text::new(format!("{loss:.2}"), (x - 0.25, loss + top * 0.05), ("sans-serif", 13).into_font().color(&BLACK));
        bars.draw_series(std::iter::once(text)).map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `loss.png` and `loss.svg` into `run_dir`.
pub fn plot_run(run_dir: &Path) -> Result<()> {
    let curves = read_curves(run_dir)?;
    if curves.is_empty() {
        bail!("{} has no evaluation rows to plot yet (train for at least --eval-every steps)", run_dir.display());
    }
    static FONT: std::sync::Once = std::sync::Once::new();
    FONT.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, include_bytes!("fonts/DejaVuSans.ttf"));
    });
    let size = (1200, 520);
    draw(BitMapBackend::new(&run_dir.join("loss.png"), size).into_drawing_area(), &curves)?;
    draw(SVGBackend::new(&run_dir.join("loss.svg"), size).into_drawing_area(), &curves)?;
    Ok(())
}
