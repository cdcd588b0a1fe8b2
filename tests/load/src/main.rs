//! `loadtest`: run a scenario file at a constant arrival rate and judge it by thresholds.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use loadtest::engine::{self, Live};
use loadtest::report;
use loadtest::scenario::Scenario;

/// Open-model HTTP load tester for sloop.
///
/// Sends requests at the rates the scenario's stages give, whatever the server does, and
/// measures latency from when each request *should* have been sent, so stalls show. A
/// request that cannot be sent within max_lateness of its time is counted as dropped.
/// Exit status: 0 when every threshold passes, 1 when one fails (named on stderr), 2 on
/// errors.
///
/// Example: loadtest tests/load/scenarios/user-mix.yaml --target http://127.0.0.1:8082
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
struct Cli {
    /// Scenario YAML file.
    scenario: PathBuf,
    /// Base URL of the target; overrides the scenario's base_url.
    #[arg(long)]
    target: Option<String>,
    /// Directory for result.json, <step>.hgrm and report.html.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Scale every stage's rate, e.g. 0.1 for a smoke run.
    #[arg(long, default_value_t = 1.0)]
    rate_scale: f64,
    /// Replace every stage's duration, e.g. 10s.
    #[arg(long)]
    duration: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("start the async runtime");
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
    let thresholds = scenario.thresholds(&path)?;
    let target = cli
        .target
        .clone()
        .or_else(|| scenario.base_url.clone())
        .context("no target: pass --target http://HOST:PORT or set base_url in the scenario")?;
    let planned: f64 = scenario
        .stages(&path)?
        .iter()
        .map(|s| (s.from_rate + s.to_rate) / 2.0 * s.duration.as_secs_f64())
        .sum();

    let live = Arc::new(Live::default());
    let progress = tokio::spawn(show_progress(live.clone(), planned as u64));
    let result = engine::run(&scenario, &target, live).await;
    progress.abort();
    let result = result?;

    let results = report::results(&scenario.name, &target, &result, &thresholds);
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    std::fs::write(
        cli.out.join("result.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    let mut spectra = BTreeMap::new();
    for (name, stats) in &result.steps {
        std::fs::write(cli.out.join(format!("{name}.hgrm")), stats.hgrm())?;
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
    std::fs::write(
        cli.out.join("report.html"),
        report::html(&results, &spectra),
    )?;
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
