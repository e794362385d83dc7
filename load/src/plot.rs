//! `flashsale-load plot results.json out.svg`: the `benches/compare.sh`
//! results as one hand-written SVG (throughput bars per configuration, and the
//! fixed-rate latency percentiles against the issue's goals), or a single
//! run's result (`flashsale-load --out run.json`: answers per second by
//! endpoint with the success rate, and the latency percentiles). Hand-written
//! because a few bar charts do not justify a plotting library's dependencies.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// Configurations drawn at most; the script writes four.
const CONFIGS_MAX: usize = 16;
const WIDTH_PX: f64 = 760.0;
const ROW_HEIGHT_PX: f64 = 34.0;
const LABEL_WIDTH_PX: f64 = 250.0;
const BAR_WIDTH_MAX_PX: f64 = 400.0;

/// The parts of the compare results the plot reads.
#[derive(Debug, Deserialize)]
pub struct CompareResults {
    pub configs: Vec<ConfigResult>,
    pub fixed_rate: Option<FixedRateResult>,
}

#[derive(Debug, Deserialize)]
pub struct ConfigResult {
    pub name: String,
    pub throughput_per_second: f64,
}

#[derive(Debug, Deserialize)]
pub struct FixedRateResult {
    pub rate_per_second: f64,
    pub latency_us_p50: u64,
    pub latency_us_p99: u64,
    pub latency_us_p999: u64,
}

/// The parts of one run's result file the plot reads.
#[derive(Debug, Deserialize)]
pub struct SingleRun {
    pub scenario: String,
    pub mode: String,
    pub throughput_per_second: f64,
    pub success_per_second: f64,
    pub latency_us_p50: u64,
    pub latency_us_p90: u64,
    pub latency_us_p99: u64,
    pub latency_us_p999: u64,
    pub latency_us_max: u64,
    pub endpoints: BTreeMap<String, SingleEndpoint>,
}

#[derive(Debug, Deserialize)]
pub struct SingleEndpoint {
    pub throughput_per_second: f64,
}

/// Plots `results`: compare.sh's output (it has `configs`) or one run's.
pub fn plot_file(results: &Path, out: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(results).with_context(|| format!("read {}", results.display()))?;
    let decode_error = || format!("decode {}", results.display());
    let value: serde_json::Value = serde_json::from_str(&text).with_context(decode_error)?;
    let drawn = if value.get("configs").is_some() {
        svg(&serde_json::from_value(value).with_context(decode_error)?)
    } else if value.get("endpoints").is_some() {
        single_run_svg(&serde_json::from_value(value).with_context(decode_error)?)
    } else {
        anyhow::bail!(
            "{}: neither benches/compare.sh results (`configs`) nor a run result (`endpoints`)",
            results.display()
        );
    };
    std::fs::write(out, drawn).with_context(|| format!("write {}", out.display()))
}

/// One run: answers per second by endpoint (and the 2xx share), then the
/// latency percentiles of all answers against the issue's goals.
pub fn single_run_svg(run: &SingleRun) -> String {
    let mut throughput: Vec<Row> = run
        .endpoints
        .iter()
        .take(CONFIGS_MAX)
        .map(|(name, endpoint)| (name.clone(), endpoint.throughput_per_second, None))
        .collect();
    throughput.push(("all".to_string(), run.throughput_per_second, None));
    let success_percent = if run.throughput_per_second > 0.0 {
        100.0 * run.success_per_second / run.throughput_per_second
    } else {
        0.0
    };
    throughput.push((
        format!("2xx ({success_percent:.1} % of answers)"),
        run.success_per_second,
        None,
    ));
    let ms = |us: u64| us as f64 / 1000.0;
    let latency: Vec<Row> = vec![
        (
            "p50 (goal 1 ms)".to_string(),
            ms(run.latency_us_p50),
            Some(1.0),
        ),
        ("p90".to_string(), ms(run.latency_us_p90), None),
        (
            "p99 (goal 2 ms)".to_string(),
            ms(run.latency_us_p99),
            Some(2.0),
        ),
        (
            "p99.9 (goal 10 ms)".to_string(),
            ms(run.latency_us_p999),
            Some(10.0),
        ),
        ("max".to_string(), ms(run.latency_us_max), None),
    ];
    let mut body = String::new();
    let title = format!(
        "Answers per second, scenario {} ({})",
        run.scenario, run.mode
    );
    let y = chart(&mut body, 30.0, &title, &throughput, "");
    let y = chart(
        &mut body,
        y + 20.0,
        "Latency of all answers (ms)",
        &latency,
        " ms",
    );
    document(&body, y)
}

fn document(body: &str, height: f64) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH_PX}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n"
    )
}

/// (label, value, goal-in-same-unit) rows of one chart.
type Row = (String, f64, Option<f64>);

pub fn svg(results: &CompareResults) -> String {
    let throughput: Vec<Row> = results
        .configs
        .iter()
        .take(CONFIGS_MAX)
        .map(|config| (config.name.clone(), config.throughput_per_second, None))
        .collect();
    let latency: Vec<Row> = results
        .fixed_rate
        .as_ref()
        .map(|fixed| {
            vec![
                (
                    "p50 (goal 1 ms)".to_string(),
                    fixed.latency_us_p50 as f64 / 1000.0,
                    Some(1.0),
                ),
                (
                    "p99 (goal 2 ms)".to_string(),
                    fixed.latency_us_p99 as f64 / 1000.0,
                    Some(2.0),
                ),
                (
                    "p99.9 (goal 10 ms)".to_string(),
                    fixed.latency_us_p999 as f64 / 1000.0,
                    Some(10.0),
                ),
            ]
        })
        .unwrap_or_default();
    let mut body = String::new();
    let mut y = 30.0;
    y = chart(
        &mut body,
        y,
        "Checkout throughput, closed loop (req/s)",
        &throughput,
        "",
    );
    if let Some(fixed) = &results.fixed_rate {
        let title = format!(
            "Durable checkout latency at a fixed {:.0} req/s (ms)",
            fixed.rate_per_second
        );
        y = chart(&mut body, y + 20.0, &title, &latency, " ms");
    }
    document(&body, y)
}

/// Draws one horizontal bar chart starting at `top`; returns its bottom.
fn chart(out: &mut String, top: f64, title: &str, rows: &[Row], unit: &str) -> f64 {
    let _ = writeln!(
        out,
        "<text x=\"10\" y=\"{top}\" font-weight=\"bold\">{}</text>",
        escape(title)
    );
    let scale_max = rows
        .iter()
        .map(|(_, value, goal)| value.max(goal.unwrap_or(0.0)))
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut y = top + 12.0;
    for (label, value, goal) in rows {
        let width = BAR_WIDTH_MAX_PX * value / scale_max;
        let over_goal = goal.is_some_and(|goal| *value > goal);
        let color = if over_goal { "#d9534f" } else { "#4a7bd0" };
        // Whole requests per second; milliseconds to the microsecond.
        let decimals = if unit.is_empty() { 0 } else { 3 };
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{:.1}\">{}</text>\n<rect x=\"{LABEL_WIDTH_PX}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"22\" fill=\"{color}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{value:.decimals$}{unit}</text>",
            y + 16.0,
            escape(label),
            LABEL_WIDTH_PX + width + 6.0,
            y + 16.0,
        );
        if let Some(goal) = goal {
            let x = LABEL_WIDTH_PX + BAR_WIDTH_MAX_PX * goal / scale_max;
            let _ = writeln!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"black\" stroke-dasharray=\"4 3\"/>",
                y - 2.0,
                y + 24.0
            );
        }
        y += ROW_HEIGHT_PX;
    }
    y + 10.0
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_a_bar_per_config_and_marks_missed_goals() {
        let results: CompareResults = serde_json::from_str(
            r#"{"configs":[{"name":"bare <actix>","throughput_per_second":50000},
                {"name":"sync on","throughput_per_second":20000}],
               "fixed_rate":{"rate_per_second":10000,"latency_us_p50":500,"latency_us_p99":2500,"latency_us_p999":4000}}"#,
        )
        .expect("valid results");
        let svg = svg(&results);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("bare &lt;actix&gt;"));
        assert_eq!(
            svg.matches("<rect x=").count(),
            5,
            "2 throughput bars, 3 latency bars"
        );
        assert_eq!(
            svg.matches("#d9534f").count(),
            1,
            "only p99 misses its goal"
        );
    }

    #[test]
    fn a_single_run_result_is_plotted_with_its_success_rate() {
        let run: SingleRun = serde_json::from_str(
            r#"{"scenario":"light","mode":"closed_loop","throughput_per_second":1000,
               "success_per_second":250,"latency_us_p50":400,"latency_us_p90":900,
               "latency_us_p99":3000,"latency_us_p999":5000,"latency_us_max":9000,
               "endpoints":{"checkout":{"throughput_per_second":600},
                            "purchase":{"throughput_per_second":400}}}"#,
        )
        .expect("valid run");
        let svg = single_run_svg(&run);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("2xx (25.0 % of answers)"), "{svg}");
        assert_eq!(
            svg.matches("<rect x=").count(),
            4 + 5,
            "4 rate bars, 5 latency bars"
        );
        assert_eq!(
            svg.matches("#d9534f").count(),
            1,
            "only p99 misses its goal"
        );
    }
}
