//! `loadtest`: run a scenario file at a constant arrival rate and judge it by thresholds.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use loadtest::engine::{self, Live, RunResult};
use loadtest::report;
use loadtest::scenario::{Scenario, StageSpec, parse_duration};
use loadtest::search::{Search, Trial};
use loadtest::thresholds::Threshold;
use serde::Serialize;

/// Open-model HTTP load tester for sloop.
///
/// Sends requests at the rates the scenario's stages give, whatever the server does, and
/// measures latency from when each request *should* have been sent, so stalls show. A
/// request that cannot be sent within max_lateness of its time is counted as dropped.
///
/// With --find-max it instead searches for the highest constant rate the target sustains:
/// trials of --trial each, doubling the rate while every threshold holds and nothing is
/// dropped, then bisecting to within --precision.
///
/// Exit status: 0 when every threshold passes (or, with --find-max, some rate passed), 1
/// when one fails (named on stderr), 2 on errors.
///
/// Examples:
///   loadtest tests/load/scenarios/user-mix.yaml --target http://127.0.0.1:8082
///   loadtest tests/load/scenarios/user-read.yaml --find-max --trial 10s
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, verbatim_doc_comment)]
struct Cli {
    /// Scenario YAML file.
    scenario: PathBuf,
    /// Base URL of the target; overrides the scenario's base_url.
    #[arg(long)]
    target: Option<String>,
    /// Directory for result.json, <step>.hgrm and report.html (search.json with --find-max).
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Scale every stage's rate, e.g. 0.1 for a smoke run.
    #[arg(long, default_value_t = 1.0)]
    rate_scale: f64,
    /// Replace every stage's duration, e.g. 10s.
    #[arg(long)]
    duration: Option<String>,
    /// Threads sending requests, each with its own connections [default: one per CPU].
    #[arg(long)]
    threads: Option<usize>,
    /// Search for the highest rate at which every threshold holds, instead of one run.
    #[arg(long)]
    find_max: bool,
    /// First rate the search tries [default: the scenario's highest stage rate].
    #[arg(long, requires = "find_max")]
    start_rate: Option<f64>,
    /// How long each trial of the search runs at its constant rate.
    #[arg(long, default_value = "15s", requires = "find_max")]
    trial: String,
    /// Stop when the lowest failing rate is within this fraction of the best passing one.
    #[arg(long, default_value_t = 0.05, requires = "find_max")]
    precision: f64,
    /// Never try more than this many requests per second.
    #[arg(long, default_value_t = 100_000.0, requires = "find_max")]
    max_rate: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // This runtime only runs the set-up phase and the progress display; the measured phase
    // runs on the engine's own threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("start the async runtime");
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let path = cli.scenario.display().to_string();
    let text = std::fs::read_to_string(&cli.scenario).with_context(|| format!("reading {path}"))?;
    let mut scenario = Scenario::parse(&path, &text)?;
    for stage in &mut scenario.stages {
        for rate in [&mut stage.rate, &mut stage.from, &mut stage.to]
            .into_iter()
            .flatten()
        {
            *rate *= cli.rate_scale;
        }
        if let Some(d) = &cli.duration {
            stage.duration = d.clone();
        }
    }
    // Validated here so errors name the file; later reads of the stages cannot fail.
    scenario.stages(&path)?;
    let thresholds = scenario.thresholds(&path)?;
    let target = cli
        .target
        .clone()
        .or_else(|| scenario.base_url.clone())
        .context("no target: pass --target http://HOST:PORT or set base_url in the scenario")?;
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    if cli.find_max {
        return find_max(&cli, &scenario, &thresholds, &target).await;
    }

    let result = measure(&scenario, &target, threads(&cli)).await?;
    let results = report::results(&scenario.name, &target, &result, &thresholds);
    write_reports(&cli.out, &results, &result)?;
    print!("{}", report::table(&results));
    println!(
        "results in {}/ (result.json, *.hgrm, report.html)",
        cli.out.display()
    );
    for failed in results.thresholds.iter().filter(|t| !t.passed) {
        eprintln!(
            "threshold failed: {}{} (measured {})",
            failed
                .step
                .as_ref()
                .map(|s| format!("{s}: "))
                .unwrap_or_default(),
            failed.threshold,
            report::number(failed.value)
        );
    }
    Ok(results.passed)
}

fn threads(cli: &Cli) -> usize {
    cli.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// One run of the scenario's stages, with live progress.
async fn measure(scenario: &Scenario, target: &str, threads: usize) -> anyhow::Result<RunResult> {
    let planned: f64 = scenario
        .stages(&scenario.name)?
        .iter()
        .map(|s| (s.from_rate + s.to_rate) / 2.0 * s.duration.as_secs_f64())
        .sum();
    let live = Arc::new(Live::default());
    let progress = tokio::spawn(show_progress(live.clone(), planned as u64));
    let result = engine::run(scenario, target, live, threads).await;
    progress.abort();
    Ok(result?)
}

fn write_reports(out: &Path, results: &report::Results, run: &RunResult) -> anyhow::Result<()> {
    std::fs::write(
        out.join("result.json"),
        serde_json::to_string_pretty(results)?,
    )?;
    let mut spectra = BTreeMap::new();
    for (name, stats) in &run.steps {
        std::fs::write(out.join(format!("{name}.hgrm")), stats.hgrm())?;
        let points = stats
            .latency
            .iter_quantiles(1)
            .filter(|v| v.quantile_iterated_to() < 1.0)
            .map(|v| {
                (
                    1.0 / (1.0 - v.quantile_iterated_to()),
                    v.value_iterated_to() as f64 / 1000.0,
                )
            })
            .collect::<Vec<_>>();
        spectra.insert(name.clone(), points);
    }
    std::fs::write(out.join("report.html"), report::html(results, &spectra))?;
    Ok(())
}

/// The search file: every trial and the highest rate that passed.
#[derive(Debug, Serialize)]
struct SearchReport<'a> {
    scenario: &'a str,
    target: &'a str,
    trial_s: f64,
    precision: f64,
    thresholds: Vec<&'a str>,
    /// The highest rate at which every threshold held and nothing was dropped.
    max_rate: Option<f64>,
    trials: &'a [Trial],
}

/// Trials at constant rates until the highest sustained rate is known within `precision`.
async fn find_max(
    cli: &Cli,
    scenario: &Scenario,
    thresholds: &[Threshold],
    target: &str,
) -> anyhow::Result<bool> {
    let trial =
        parse_duration(&cli.trial).map_err(|e| anyhow::anyhow!("--trial {}: {e}", cli.trial))?;
    let peak = scenario
        .stages(&scenario.name)?
        .iter()
        .map(|s| s.from_rate.max(s.to_rate))
        .fold(0.0, f64::max);
    let mut search = Search::new(cli.start_rate.unwrap_or(peak), cli.precision, cli.max_rate);
    let mut trials: Vec<Trial> = Vec::new();
    while let Some(rate) = search.next_rate() {
        eprintln!(
            "==> trial {}: {rate:.0} requests/s for {}",
            trials.len() + 1,
            cli.trial
        );
        let mut constant = scenario.clone();
        constant.stages = vec![StageSpec {
            duration: cli.trial.clone(),
            rate: Some(rate),
            from: None,
            to: None,
        }];
        let run = measure(&constant, target, threads(cli)).await?;
        let results = report::results(&scenario.name, target, &run, thresholds);
        let passed = results.passed && results.overall.dropped == 0;
        let outcome = Trial {
            rate,
            achieved_rps: results.achieved_rps,
            p99_ms: results.overall.latency_ms.p99,
            failure_rate: results.overall.failure_rate,
            dropped: results.overall.dropped,
            passed,
        };
        eprintln!("    {}", trial_line(&outcome));
        search.record(rate, passed);
        trials.push(outcome);
        // Let the target drain queues and connections before the next trial.
        tokio::time::sleep((trial / 5).min(Duration::from_secs(2))).await;
    }
    let report = SearchReport {
        scenario: &scenario.name,
        target,
        trial_s: trial.as_secs_f64(),
        precision: cli.precision,
        thresholds: thresholds.iter().map(|t| t.text.as_str()).collect(),
        max_rate: search.result(),
        trials: &trials,
    };
    std::fs::write(
        cli.out.join("search.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!(
        "{:>10} {:>10} {:>10} {:>9} {:>8}  verdict",
        "rate", "achieved", "p99 ms", "failed", "dropped"
    );
    let mut sorted = trials.clone();
    sorted.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    for t in &sorted {
        println!("{}", trial_line(t));
    }
    match search.result() {
        Some(max) => {
            println!(
                "highest rate sustained: {max:.0} requests/s ({} trials of {}; {})",
                trials.len(),
                cli.trial,
                report.thresholds.join(", ")
            );
            println!("search in {}/search.json", cli.out.display());
            Ok(true)
        }
        None => {
            eprintln!(
                "no rate passed, down to 1 request/s: is the target up? see the trials above"
            );
            Ok(false)
        }
    }
}

fn trial_line(t: &Trial) -> String {
    format!(
        "{:>10.0} {:>10.1} {:>10.2} {:>8.3}% {:>8}  {}",
        t.rate,
        t.achieved_rps,
        t.p99_ms,
        t.failure_rate * 100.0,
        t.dropped,
        if t.passed { "pass" } else { "FAIL" }
    )
}

/// A progress bar on a terminal, a plain line every five seconds otherwise.
async fn show_progress(live: Arc<Live>, planned: u64) {
    let started = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(planned);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar
    });
    let tick = if bar.is_some() {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let mut last = 0;
    loop {
        tokio::time::sleep(tick).await;
        let done = live.completed.load(Ordering::Relaxed);
        let rate = (done - last) as f64 / tick.as_secs_f64();
        last = done;
        let line = format!(
            "{rate:.0} req/s, {} failed, {} dropped, p99 {:.1} ms",
            live.failed.load(Ordering::Relaxed),
            live.dropped.load(Ordering::Relaxed),
            live.take_recent_p99_ms()
        );
        match &bar {
            Some(bar) => {
                bar.set_position(live.due.load(Ordering::Relaxed));
                bar.set_message(line);
            }
            None => eprintln!(
                "[{:>5.0}s] {} of {planned} due, {line}",
                started.elapsed().as_secs_f64(),
                live.due.load(Ordering::Relaxed)
            ),
        }
    }
}
