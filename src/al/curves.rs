//! Reports of simulations: per-round JSON lines and CSV, a summary JSON,
//! a learning-curve plot (SVG) and a table of each strategy against random.

use std::path::Path;

use plotters::prelude::*;

use crate::al::simulate::{Run, StrategySummary};
use crate::al::stopping::Fired;
use crate::atomic;
use crate::error::{Error, Result};
use crate::query::Strategy;

fn fired_text(f: &[Fired]) -> String {
    f.iter()
        .map(|f| f.criterion.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// `rounds.jsonl` and `rounds.csv`: one line per strategy, repeat and round.
pub fn write_rounds(dir: &Path, runs: &[Run]) -> Result<()> {
    let jsonl = dir.join("rounds.jsonl");
    atomic::write(&jsonl, |w| {
        for r in runs {
            for x in &r.result.rounds {
                let v = serde_json::json!({
                    "strategy": r.name, "repeat": r.repeat, "round": x.round, "labels": x.labels,
                    "test_accuracy": x.test_accuracy, "macro_f1": x.macro_f1, "train_accuracy": x.train_accuracy,
                    "train_s": x.train_s, "predict_s": x.predict_s, "select_s": x.select_s,
                    "max_uncertainty": x.max_uncertainty, "kappa": x.kappa,
                    "stopping": x.fired.iter().map(|f| serde_json::json!({"criterion": f.criterion, "why": f.why})).collect::<Vec<_>>(),
                });
                writeln!(w, "{v}").map_err(|e| Error::io(&jsonl, e))?;
            }
        }
        Ok(())
    })?;
    let csv = dir.join("rounds.csv");
    atomic::write(&csv, |w| {
        let io = |e| Error::io(&csv, e);
        writeln!(w, "strategy,repeat,round,labels,test_accuracy,macro_f1,train_accuracy,train_s,predict_s,select_s,max_uncertainty,kappa,stopping").map_err(io)?;
        for r in runs {
            for x in &r.result.rounds {
                writeln!(
                    w,
                    "{},{},{},{},{:.6},{:.6},{:.6},{:.4},{:.4},{:.4},{:.6},{},{}",
                    r.name,
                    r.repeat,
                    x.round,
                    x.labels,
                    x.test_accuracy,
                    x.macro_f1,
                    x.train_accuracy,
                    x.train_s,
                    x.predict_s,
                    x.select_s,
                    x.max_uncertainty,
                    x.kappa.map_or(String::new(), |k| format!("{k:.6}")),
                    fired_text(&x.fired)
                )
                .map_err(io)?;
            }
        }
        Ok(())
    })
}

/// `summary.json`: per strategy, the AULC's mean and standard deviation and
/// the accuracy's at every label count.
pub fn write_summary(
    dir: &Path,
    summary: &[StrategySummary],
    runs: &[Run],
    meta: serde_json::Value,
) -> Result<()> {
    let path = dir.join("summary.json");
    let strategies: Vec<serde_json::Value> = summary
        .iter()
        .map(|s| {
            let stops: Vec<String> = runs
                .iter()
                .filter(|r| r.name == s.name)
                .map(|r| {
                    let last = r.result.rounds.last().map_or(0, |x| x.round);
                    format!("{} at round {last}", fired_text(&r.result.stopped_by))
                })
                .collect();
            serde_json::json!({
                "strategy": s.name,
                "aulc_mean": s.aulc_mean, "aulc_std": s.aulc_std,
                "curve": s.curve.iter().map(|&(n, m, sd, k)| serde_json::json!({"labels": n, "accuracy_mean": m, "accuracy_std": sd, "runs": k})).collect::<Vec<_>>(),
                "stopped": stops,
            })
        })
        .collect();
    let v = serde_json::json!({ "meta": meta, "strategies": strategies });
    atomic::write(&path, |w| {
        let text = serde_json::to_string_pretty(&v).map_err(|e| Error::Config(e.to_string()))?;
        w.write_all(text.as_bytes())
            .map_err(|e| Error::io(&path, e))
    })
}

/// The table printed after a simulation: each strategy against random.
pub fn table(summary: &[StrategySummary]) -> String {
    let random = summary
        .iter()
        .find(|s| s.name == Strategy::Random.name())
        .map(|s| s.aulc_mean);
    let mut out = format!(
        "{:<20} {:>16} {:>10} {:>22}\n",
        "strategy", "AULC mean ± std", "vs random", "final accuracy (labels)"
    );
    for s in summary {
        let vs = match random {
            Some(r) if s.name != Strategy::Random.name() => format!("{:+.4}", s.aulc_mean - r),
            _ => "—".into(),
        };
        let last = s.curve.last().map_or(String::from("—"), |&(n, m, sd, _)| {
            format!("{m:.4} ± {sd:.4} ({n})")
        });
        out += &format!(
            "{:<20} {:>7.4} ± {:<6.4} {:>10} {:>22}\n",
            s.name, s.aulc_mean, s.aulc_std, vs, last
        );
    }
    out
}

/// `curves.svg`: mean test accuracy against labels per strategy, with a
/// ± one standard deviation band.
pub fn plot(path: &Path, title: &str, summary: &[StrategySummary]) -> Result<()> {
    let series: Vec<Series> = summary
        .iter()
        .map(|s| Series {
            name: format!("{} (AULC {:.3})", s.name, s.aulc_mean),
            points: s.curve.iter().map(|c| (c.0, c.1, c.2)).collect(),
        })
        .collect();
    let low = series
        .iter()
        .flat_map(|s| s.points.iter().map(|c| c.1 - c.2))
        .fold(1.0f64, f64::min)
        .max(0.0);
    let axis = Axis {
        label: "test accuracy",
        range: ((low - 0.02).max(0.0), 1.0),
        legend: SeriesLabelPosition::LowerRight,
    };
    plot_series(path, title, &axis, &series)
}

/// One learning curve: (labels, mean, standard deviation) points.
pub struct Series {
    /// The legend's text.
    pub name: String,
    /// (labels, mean, standard deviation).
    pub points: Vec<(usize, f64, f64)>,
}

/// The y axis of a plot.
pub struct Axis<'a> {
    /// What it measures.
    pub label: &'a str,
    /// Its range.
    pub range: (f64, f64),
    /// Where the legend goes (away from where the curves end).
    pub legend: SeriesLabelPosition,
}

/// An SVG of learning curves against labels, each with a ± one standard
/// deviation band.
pub fn plot_series(path: &Path, title: &str, axis: &Axis, series: &[Series]) -> Result<()> {
    let draw = || -> std::result::Result<String, Box<dyn std::error::Error>> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (900, 560)).into_drawing_area();
            root.fill(&WHITE)?;
            let xs = series.iter().flat_map(|s| s.points.iter().map(|c| c.0));
            let (x0, x1) = xs.fold((usize::MAX, 0), |(a, b), x| (a.min(x), b.max(x)));
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(44)
                .y_label_area_size(56)
                .build_cartesian_2d(
                    x0 as f64..(x1.max(x0 + 1)) as f64,
                    axis.range.0..axis.range.1,
                )?;
            chart
                .configure_mesh()
                .x_desc("labels")
                .y_desc(axis.label)
                .draw()?;
            for (i, s) in series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let band: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .map(|c| (c.0 as f64, c.1 + c.2))
                    .chain(s.points.iter().rev().map(|c| (c.0 as f64, c.1 - c.2)))
                    .collect();
                chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.15))))?;
                chart
                    .draw_series(LineSeries::new(
                        s.points.iter().map(|c| (c.0 as f64, c.1)),
                        color.stroke_width(2),
                    ))?
                    .label(s.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(axis.legend.clone())
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
            root.present()?;
        }
        Ok(svg)
    };
    let svg = draw()
        .map_err(|e| Error::Config(format!("{}: cannot draw the plot: {e}", path.display())))?;
    atomic::write(path, |w| {
        w.write_all(svg.as_bytes()).map_err(|e| Error::io(path, e))
    })
}
