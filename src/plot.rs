//! `loss.png` / `loss.svg` for a run folder: val loss (solid, with markers) and train loss
//! (dashed) against step, one colour per model, and a bar per model of its final val loss.
//! A multi-seed run gets the spread instead: per model the mean val curve, a min–max band
//! and faint per-seed lines, and bars of the mean final val loss with min–max whiskers.

use crate::model_kind::ModelKind;
use crate::run_dir::{EvalRow, RunDir};
use anyhow::{bail, Context, Result};
use plotters::coord::types::RangedCoordf64;
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

/// A step axis: from step 0 (training starts there, and one evaluation alone then still
/// gets a readable axis) to the last step, with `right` of the span free beyond it for the
/// lines' end labels.
fn step_axis(steps: impl Iterator<Item = f64>, right: f64) -> (f64, f64) {
    let last = steps.filter(|v| v.is_finite()).fold(0.0, f64::max).max(1.0);
    (0.0, last * (1.0 + right))
}

/// Tick labels with as many decimals as the axis's span needs: "0.2 0.4 0.6", not "0 0 1".
fn tick_label(span: f64) -> impl Fn(&f64) -> String {
    let decimals = match span.abs() {
        s if s >= 20.0 => 0,
        s if s >= 2.0 => 1,
        s if s >= 0.2 => 2,
        _ => 3,
    };
    move |x: &f64| format!("{x:.decimals$}")
}

/// Label heights for line ends at `ys` (ascending): each at least `gap` above the one
/// below; a group pushed together is centred on its lines' ends, then pushed back up clear
/// of the group below.
fn spread(ys: &[f64], gap: f64) -> Vec<f64> {
    let mut placed: Vec<f64> = Vec::new();
    let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, &y) in ys.iter().enumerate() {
        match placed.last() {
            Some(&below) if y < below + gap => {
                placed.push(below + gap);
                groups.last_mut().expect("a group").end = i + 1;
            }
            _ => {
                placed.push(y);
                groups.push(i..i + 1);
            }
        }
    }
    for g in groups {
        let shift = g.clone().map(|i| placed[i] - ys[i]).sum::<f64>() / g.len() as f64;
        for i in g {
            placed[i] -= shift;
        }
    }
    for i in 1..placed.len() {
        placed[i] = placed[i].max(placed[i - 1] + gap);
    }
    placed
}

/// Each model's name at the end of its line, in its colour, moved apart vertically where
/// lines end close together (V8 and V10 of the cpu preset end 0.01 apart), so that every
/// line can be told even where another covers it.
fn end_labels<'a, 'b, DB: DrawingBackend + 'a + 'b>(
    chart: &'b mut LossChart<'a, DB>,
    ends: &[(ModelKind, f64, f64)],
    y: (f64, f64),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let gap = (y.1 - y.0) * 0.04;
    let mut ends = ends.to_vec();
    ends.sort_by(|a, b| a.2.total_cmp(&b.2));
    let placed = spread(&ends.iter().map(|e| e.2).collect::<Vec<_>>(), gap);
    let (x0, x1) = (chart.x_range().start, chart.x_range().end);
    for (&(kind, x, _), y) in ends.iter().zip(placed) {
        let at = (x + (x1 - x0) * 0.012, y + gap * 0.45);
        let text = Text::new(kind.to_string().to_uppercase(), at, ("sans-serif", 14).into_font().color(&color(kind)));
        chart.draw_series(std::iter::once(text)).map_err(|e| anyhow::anyhow!("drawing failed: {e}"))?;
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, curves: &[(ModelKind, Vec<EvalRow>)]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("drawing failed: {e}"))?;
    let (left, right) = root.split_horizontally((62).percent_width());
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing failed: {e}");
    // Axes fitted to the data: steps from 0 to the last evaluation (and room for the end
    // labels), losses of both splits.
    let (x0, x1) = step_axis(curves.iter().flat_map(|(_, r)| r.iter().map(|r| r.step as f64)), 0.08);
    let (lo, hi) = fitted(curves.iter().flat_map(|(_, r)| r.iter().flat_map(|r| [r.val_loss, r.train_loss])), 0.06);

    let mut chart = ChartBuilder::on(&left)
        .caption("loss during training (solid: val, dashed: train)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, lo..hi)
        .map_err(err)?;
    chart.configure_mesh().x_desc("step").y_desc("loss").x_label_formatter(&tick_label(x1 - x0)).draw().map_err(err)?;
    let mut ends = Vec::new();
    for (kind, rows) in curves {
        let color = color(*kind);
        let val: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.val_loss)).collect();
        let train: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.train_loss)).collect();
        chart.draw_series(DashedLineSeries::new(train.clone(), 6, 4, color.stroke_width(1))).map_err(err)?;
        // Hollow markers: a run of one evaluation has no train line to see.
        chart.draw_series(train.into_iter().map(|p| Circle::new(p, 3, color.stroke_width(1)))).map_err(err)?;
        ends.extend(val.last().map(|&(x, y)| (*kind, x, y)));
        model_line(&mut chart, *kind, val)?;
    }
    end_labels(&mut chart, &ends, (lo, hi))?;

    let bars: Vec<Bar> = curves.iter().filter_map(|(k, r)| r.last().map(|r| Bar { kind: *k, loss: r.val_loss, range: None })).collect();
    final_bars(&right, "final val loss", &bars)?;
    root.present().map_err(err)?;
    Ok(())
}

type LossChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart on `area` with a caption and the house margins, over the ranges `x` and `y`.
fn chart_on<'a, DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, caption: &str, x: (f64, f64), y: (f64, f64)) -> Result<LossChart<'a, DB>>
where
    DB::ErrorType: 'static,
{
    ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(|e| anyhow::anyhow!("drawing failed: {e}"))
}

/// A model's (val or mean val) curve: its colour, markers at the evaluations, a legend entry.
fn model_line<'a, 'b, DB: DrawingBackend + 'a + 'b>(
    chart: &'b mut LossChart<'a, DB>,
    kind: ModelKind,
    points: Vec<(f64, f64)>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing failed: {e}");
    let color = color(kind);
    chart
        .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
        .map_err(err)?
        .label(kind.to_string().to_uppercase())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(err)?;
    Ok(())
}

/// The legend naming V1..V10, top right.
fn legend<'a, 'b, DB: DrawingBackend + 'a + 'b>(chart: &'b mut LossChart<'a, DB>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| anyhow::anyhow!("drawing failed: {e}"))
}

/// One bar of the final-loss panel: the (mean) final val loss and, for a multi-seed run,
/// its lowest and highest seed.
struct Bar {
    kind: ModelKind,
    loss: f64,
    range: Option<(f64, f64)>,
}

impl Bar {
    fn top(&self) -> f64 {
        self.range.map_or(self.loss, |r| r.1)
    }
}

/// A bar per model of its final val loss, labelled with the value, and (multi-seed runs)
/// a whisker from the lowest to the highest seed.
fn final_bars<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, caption: &str, bars: &[Bar]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing failed: {e}");
    let top = bars.iter().map(Bar::top).fold(0.0, f64::max) * 1.15;
    let names: Vec<String> = bars.iter().map(|b| b.kind.to_string().to_uppercase()).collect();
    let n = bars.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
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
    chart.configure_mesh().disable_x_mesh().x_labels(bars.len() * 2 + 1).x_label_formatter(&label).y_desc("loss").draw().map_err(err)?;
    for (i, bar) in bars.iter().enumerate() {
        let (x, kind, loss) = (i as f64, bar.kind, bar.loss);
        chart.draw_series(std::iter::once(Rectangle::new([(x - 0.38, 0.0), (x + 0.38, loss)], color(kind).filled()))).map_err(err)?;
        if let Some((min, max)) = bar.range {
            let whisker = [vec![(x, min), (x, max)], vec![(x - 0.15, min), (x + 0.15, min)], vec![(x - 0.15, max), (x + 0.15, max)]];
            chart.draw_series(whisker.into_iter().map(|points| PathElement::new(points, BLACK.stroke_width(2)))).map_err(err)?;
        }
        let text = Text::new(format!("{loss:.2}"), (x - 0.25, bar.top() + top * 0.05), ("sans-serif", 13).into_font().color(&BLACK));
        chart.draw_series(std::iter::once(text)).map_err(err)?;
    }
    Ok(())
}

/// One model across the seeds of a multi-seed run.
struct SeedCurves {
    kind: ModelKind,
    /// (seed, rows) of every seed that evaluated the model at least once.
    runs: Vec<(i64, Vec<EvalRow>)>,
}

impl SeedCurves {
    /// (step, mean, min, max) of the val loss over the seeds evaluated at that step.
    fn val_spread(&self) -> Vec<(f64, f64, f64, f64)> {
        let mut steps: Vec<i64> = self.runs.iter().flat_map(|(_, rows)| rows.iter().map(|r| r.step)).collect();
        steps.sort_unstable();
        steps.dedup();
        steps
            .into_iter()
            .map(|step| {
                let vals: Vec<f64> =
                    self.runs.iter().filter_map(|(_, rows)| rows.iter().find(|r| r.step == step)).map(|r| r.val_loss).collect();
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                (step as f64, mean, vals.iter().cloned().fold(f64::MAX, f64::min), vals.iter().cloned().fold(f64::MIN, f64::max))
            })
            .collect()
    }

    /// The final val loss of the seeds that got furthest (an interrupted seed's last row
    /// is not final): (mean, min, max).
    fn final_val(&self) -> (f64, f64, f64) {
        let last = self.runs.iter().filter_map(|(_, rows)| rows.last().map(|r| r.step)).max().unwrap_or(0);
        let vals: Vec<f64> = self.runs.iter().filter_map(|(_, rows)| rows.last()).filter(|r| r.step == last).map(|r| r.val_loss).collect();
        let mean = vals.iter().sum::<f64>() / vals.len().max(1) as f64;
        (mean, vals.iter().cloned().fold(f64::MAX, f64::min), vals.iter().cloned().fold(f64::MIN, f64::max))
    }
}

/// Every model of a multi-seed run, from its seed sub-folders.
fn read_seed_curves(seed_runs: &[(i64, RunDir)]) -> Result<Vec<SeedCurves>> {
    let mut models: Vec<SeedCurves> = Vec::new();
    for (seed, sub) in seed_runs {
        for (kind, rows) in read_curves(&sub.path)? {
            match models.iter_mut().find(|m| m.kind == kind) {
                Some(m) => m.runs.push((*seed, rows)),
                None => models.push(SeedCurves { kind, runs: vec![(*seed, rows)] }),
            }
        }
    }
    models.sort_by_key(|m| m.kind);
    Ok(models)
}

fn draw_seeds<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, models: &[SeedCurves], seeds: usize) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("drawing failed: {e}"))?;
    let (left, right) = root.split_horizontally((62).percent_width());
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing failed: {e}");
    let all_rows = || models.iter().flat_map(|m| m.runs.iter().flat_map(|(_, rows)| rows.iter()));
    let (x0, x1) = step_axis(all_rows().map(|r| r.step as f64), 0.08);
    let (lo, hi) = fitted(all_rows().map(|r| r.val_loss), 0.06);
    let caption = match seeds {
        1 => "val loss of 1 seed (more seeds: line the mean, band min–max)".to_string(),
        n => format!("val loss over {n} seeds (line: mean, band: min–max, faint: each seed)"),
    };
    let mut chart = chart_on(&left, &caption, (x0, x1), (lo, hi))?;
    chart.configure_mesh().x_desc("step").y_desc("val loss").x_label_formatter(&tick_label(x1 - x0)).draw().map_err(err)?;
    let mut ends = Vec::new();
    for m in models {
        let color = color(m.kind);
        let spread = m.val_spread();
        let band: Vec<(f64, f64)> =
            spread.iter().map(|&(x, _, _, max)| (x, max)).chain(spread.iter().rev().map(|&(x, _, min, _)| (x, min))).collect();
        chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.18).filled()))).map_err(err)?;
        for (_, rows) in &m.runs {
            let line: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.val_loss)).collect();
            chart.draw_series(LineSeries::new(line, color.mix(0.45).stroke_width(1))).map_err(err)?;
        }
        let mean: Vec<(f64, f64)> = spread.iter().map(|&(x, mean, _, _)| (x, mean)).collect();
        ends.extend(mean.last().map(|&(x, y)| (m.kind, x, y)));
        model_line(&mut chart, m.kind, mean)?;
    }
    end_labels(&mut chart, &ends, (lo, hi))?;

    let bars: Vec<Bar> = models
        .iter()
        .map(|m| {
            let (mean, min, max) = m.final_val();
            Bar { kind: m.kind, loss: mean, range: Some((min, max)) }
        })
        .collect();
    final_bars(&right, "final val loss (mean, min–max)", &bars)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `loss.png` and `loss.svg` into `run_dir`: a multi-seed run's spread when it has
/// seed sub-folders, else its curves.
pub fn plot_run(run_dir: &Path) -> Result<()> {
    if !run_dir.is_dir() {
        bail!("{} is not a run folder; pass a folder written by `chargpt train`", run_dir.display());
    }
    let seed_runs = RunDir::new(run_dir).seed_runs();
    let size = (1200, 520);
    let (png, svg) = (run_dir.join("loss.png"), run_dir.join("loss.svg"));
    // Drawn into temporary files, renamed when complete: a full disk or a read-only
    // folder leaves the plots as they were, and says so in words.
    let (png_tmp, svg_tmp) = (temporary(&png), temporary(&svg));
    let drawn = (|| -> Result<()> {
        if seed_runs.is_empty() {
            let curves = read_curves(run_dir)?;
            if curves.is_empty() {
                bail!("{} has no evaluation rows to plot yet (train for at least --eval-every steps)", run_dir.display());
            }
            register_font();
            draw(BitMapBackend::new(&png_tmp, size).into_drawing_area(), &curves)?;
            draw(SVGBackend::new(&svg_tmp, size).into_drawing_area(), &curves)
        } else {
            let models = read_seed_curves(&seed_runs)?;
            if models.is_empty() {
                bail!("{} has no evaluation rows to plot yet (train for at least --eval-every steps)", run_dir.display());
            }
            register_font();
            let seeds = models.iter().map(|m| m.runs.len()).max().unwrap_or(0);
            draw_seeds(BitMapBackend::new(&png_tmp, size).into_drawing_area(), &models, seeds)?;
            draw_seeds(SVGBackend::new(&svg_tmp, size).into_drawing_area(), &models, seeds)
        }
    })()
    .and_then(|()| {
        for (tmp, path) in [(&png_tmp, &png), (&svg_tmp, &svg)] {
            std::fs::rename(tmp, path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    });
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&png_tmp);
        let _ = std::fs::remove_file(&svg_tmp);
        return Err(e.context(format!("the plots of {} were not written", run_dir.display())));
    }
    crate::say!("wrote {} and {}", png.display(), svg.display());
    Ok(())
}

/// `.loss.tmp-PID.png` beside `loss.png`: the extension stays last, as plotters picks the
/// format by it (the run folder's clean-up knows this form too).
fn temporary(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (stem, ext) = name.rsplit_once('.').unwrap_or((&name, ""));
    path.with_file_name(format!(".{stem}.tmp-{}.{ext}", std::process::id()))
}

fn register_font() {
    static FONT: std::sync::Once = std::sync::Once::new();
    FONT.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, include_bytes!("fonts/DejaVuSans.ttf"));
    });
}

/// One curve of a comparison: a model of one run, over that run's seeds.
struct Compared {
    label: String,
    kind: ModelKind,
    /// Which run it is from (its line style).
    run: usize,
    /// (step, mean wall seconds, mean, min, max) of the val bits per character.
    points: Vec<(f64, f64, f64, f64, f64)>,
}

/// The curves of `runs` (single- or multi-seed run folders), labelled by model and tokenizer.
fn read_compared(runs: &[std::path::PathBuf], models: &[ModelKind]) -> Result<Vec<Compared>> {
    let mut out = Vec::new();
    for (i, dir) in runs.iter().enumerate() {
        let run = RunDir::new(dir);
        let tokenizer = std::fs::read_to_string(run.run_json())
            .ok()
            .and_then(|t| serde_json::from_str::<crate::config::RunConfig>(&t).ok())
            .map_or("?".to_string(), |c| c.tokenizer.to_string());
        let seeds: Vec<RunDir> = match run.seed_runs() {
            s if s.is_empty() => vec![run.clone()],
            s => s.into_iter().map(|(_, r)| r).collect(),
        };
        let mut per_model: Vec<(ModelKind, Vec<Vec<EvalRow>>)> = Vec::new();
        for sub in &seeds {
            for (kind, rows) in read_curves(&sub.path)?.into_iter().filter(|(k, _)| models.contains(k)) {
                match per_model.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, all)) => all.push(rows),
                    None => per_model.push((kind, vec![rows])),
                }
            }
        }
        for (kind, all) in per_model {
            let steps: Vec<i64> = all[0].iter().map(|r| r.step).collect();
            let points = steps
                .iter()
                .filter_map(|&step| {
                    let at: Vec<&EvalRow> = all.iter().filter_map(|rows| rows.iter().find(|r| r.step == step)).collect();
                    let bits: Vec<f64> = at.iter().map(|r| r.val_bits_per_char()).collect();
                    let n = at.len() as f64;
                    (at.len() == all.len()).then(|| {
                        let mean = bits.iter().sum::<f64>() / n;
                        let (min, max) = bits.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                        (step as f64, at.iter().map(|r| r.elapsed_s).sum::<f64>() / n, mean, min, max)
                    })
                })
                .collect();
            let seeds = if all.len() > 1 { format!(", {} seeds", all.len()) } else { String::new() };
            out.push(Compared { label: format!("{} {tokenizer}{seeds}", kind.to_string().to_uppercase()), kind, run: i, points });
        }
    }
    // Runs of the same tokenizer are told apart by their folders' names.
    let labels: Vec<String> = out.iter().map(|c| c.label.clone()).collect();
    for c in &mut out {
        if labels.iter().filter(|l| **l == c.label).count() > 1 {
            let folder = runs[c.run].file_name().map_or(String::new(), |f| f.to_string_lossy().into_owned());
            c.label = format!("{} ({folder})", c.label);
        }
    }
    Ok(out)
}

/// Draws val bits per character of `models` in `runs` against steps (left) and wall
/// time (right) into `out` (.png or .svg): char and BPE runs on one axis, each run in its
/// own line style, each model in its colour, seed bands where a run has several seeds.
pub fn plot_comparison(runs: &[std::path::PathBuf], models: &[ModelKind], out: &Path) -> Result<()> {
    let curves = read_compared(runs, models)?;
    if curves.iter().all(|c| c.points.is_empty()) {
        bail!("the runs have no evaluation rows to plot yet");
    }
    register_font();
    let size = (1400, 560);
    let tmp = temporary(out);
    let drawn = match out.extension().and_then(|e| e.to_str()) {
        Some("png") => draw_comparison(BitMapBackend::new(&tmp, size).into_drawing_area(), &curves),
        Some("svg") => draw_comparison(SVGBackend::new(&tmp, size).into_drawing_area(), &curves),
        _ => bail!("--out {}: give a .png or .svg file", out.display()),
    };
    if let Err(e) = drawn.and_then(|()| std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    crate::say!("wrote {}", out.display());
    Ok(())
}

fn draw_comparison<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, curves: &[Compared]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing failed: {e}");
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally((50).percent_width());
    let points = || curves.iter().flat_map(|c| c.points.iter());
    let (lo, hi) = fitted(points().flat_map(|p| [p.3, p.4]), 0.06);
    let hi = hi + 0.035 * (hi - lo) * curves.len() as f64; // room for the legend
    for (area, by_time) in [(&left, false), (&right, true)] {
        let x = |p: &(f64, f64, f64, f64, f64)| if by_time { p.1 } else { p.0 };
        let (x0, x1) = step_axis(points().map(x), 0.03);
        let caption = if by_time { "val bits per character against wall time" } else { "val bits per character against step" };
        let mut chart = chart_on(area, caption, (x0, x1), (lo, hi))?;
        let x_desc = if by_time { "seconds of training (evaluations included; mean over seeds)" } else { "step" };
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("val bits per character")
            .x_label_formatter(&tick_label(x1 - x0))
            .draw()
            .map_err(err)?;
        for c in curves {
            let color = color(c.kind);
            if c.points.iter().any(|p| p.3 < p.4) {
                let band: Vec<(f64, f64)> =
                    c.points.iter().map(|p| (x(p), p.4)).chain(c.points.iter().rev().map(|p| (x(p), p.3))).collect();
                chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.15).filled()))).map_err(err)?;
            }
            let line: Vec<(f64, f64)> = c.points.iter().map(|p| (x(p), p.2)).collect();
            // A marker at each evaluation: a run of one evaluation has no line to see.
            chart.draw_series(line.iter().map(|&p| Circle::new(p, 2, color.filled()))).map_err(err)?;
            let style = color.stroke_width(2);
            let drawn = match c.run % 3 {
                0 => chart.draw_series(LineSeries::new(line, style)),
                1 => chart.draw_series(DashedLineSeries::new(line, 10, 5, style)),
                _ => chart.draw_series(DashedLineSeries::new(line, 3, 4, style)),
            };
            let dash = c.run % 3;
            drawn.map_err(err)?.label(c.label.clone()).legend(move |(x, y)| match dash {
                0 => PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2)),
                1 => PathElement::new(vec![(x, y), (x + 10, y)], color.stroke_width(2)),
                _ => PathElement::new(vec![(x, y), (x + 3, y)], color.stroke_width(2)),
            });
        }
        legend(&mut chart)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels of lines ending close together are moved apart, at least `gap`, staying
    /// centred on their lines; a label alone stays at its line's end.
    #[test]
    fn end_labels_never_overlap_and_stay_near_their_lines() {
        // V9, V10, V8 and V6 of the cpu preset: V10 and V8 end 0.014 apart.
        let ys = [1.626, 1.691, 1.705, 1.880];
        let placed = spread(&ys, 0.03);
        for w in placed.windows(2) {
            assert!(w[1] - w[0] >= 0.03 - 1e-12, "{placed:?}");
        }
        assert_eq!((placed[0], placed[3]), (1.626, 1.880), "labels alone stay: {placed:?}");
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean(&placed[1..3]) - mean(&ys[1..3])).abs() < 1e-12, "the pair is centred: {placed:?}");
        assert_eq!(spread(&[2.0], 0.1), [2.0]);
        // A group centred down onto the one below is pushed back clear of it.
        let placed = spread(&[1.0, 1.15, 1.16, 1.17], 0.1);
        assert!(placed.windows(2).all(|w| w[1] - w[0] >= 0.1 - 1e-12), "{placed:?}");
    }

    /// One evaluation still gets a step axis from 0; tick labels carry the decimals the
    /// span needs (a wall-time axis of under a second is not "0 0 0 1").
    #[test]
    fn axes_read_at_any_size() {
        assert_eq!(step_axis([249.0].into_iter(), 0.0), (0.0, 249.0));
        assert_eq!(step_axis(std::iter::empty(), 0.0), (0.0, 1.0));
        let short = tick_label(0.9);
        assert_eq!((short(&0.2), short(&0.4)), ("0.20".to_string(), "0.40".to_string()));
        assert_eq!(tick_label(3000.0)(&1250.0), "1250");
        assert_eq!(tick_label(5.0)(&2.5), "2.5");
    }
}
