//! `loss.png` / `loss.svg` for a run folder: val loss (solid, with markers) and train loss
//! (dashed) against step, one colour per model, and a bar per model of its final val loss.

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

/// Ten colours that stay apart from each other and readable on white (Tableau 10), one
/// per model, so that V1..V10 keep their colour in every plot.
const COLORS: [RGBColor; 10] = [
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

fn color(kind: ModelKind) -> RGBColor {
    COLORS[kind.number() - 1]
}

/// The axis range of `values` with a margin of `pad` of the span on each side (a point
/// alone gets a span of its own).
fn fitted(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) * 0.1 };
    (lo - pad * span, hi + pad * span)
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
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing failed: {e:?}");
    // Axes fitted to the data: steps from the first evaluation to the last, losses of both splits.
    let (x0, x1) = fitted(curves.iter().flat_map(|(_, r)| r.iter().map(|r| r.step as f64)), 0.04);
    let (lo, hi) = fitted(curves.iter().flat_map(|(_, r)| r.iter().flat_map(|r| [r.val_loss, r.train_loss])), 0.06);

    let mut chart = ChartBuilder::on(&left)
        .caption("loss during training (solid: val, dashed: train)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, lo..hi)
        .map_err(err)?;
    chart.configure_mesh().x_desc("step").y_desc("loss").x_label_formatter(&|x| format!("{x:.0}")).draw().map_err(err)?;
    for (kind, rows) in curves {
        let color = color(*kind);
        let val: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.val_loss)).collect();
        let train: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.train_loss)).collect();
        chart.draw_series(DashedLineSeries::new(train, 6, 4, color.stroke_width(1))).map_err(err)?;
        chart
            .draw_series(LineSeries::new(val.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(kind.to_string().to_uppercase())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(val.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
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
    for (i, ((_, loss), (kind, _))) in finals.iter().zip(curves).enumerate() {
        let (x, loss) = (i as f64, *loss);
        let color = color(*kind).filled();
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
    let (png, svg) = (run_dir.join("loss.png"), run_dir.join("loss.svg"));
    draw(BitMapBackend::new(&png, size).into_drawing_area(), &curves)?;
    draw(SVGBackend::new(&svg, size).into_drawing_area(), &curves)?;
    crate::say!("wrote {} and {}", png.display(), svg.display());
    Ok(())
}
