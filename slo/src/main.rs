//! `slo`: validate SLO specs, generate Prometheus rules, promtool tests and Grafana
//! dashboards, report error budgets, and gate releases on them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use slo::evaluate::{LoadTestResult, Prometheus, Scrapes, Source, SourceError};
use slo::math::WORKBOOK_WINDOWS;
use slo::report::{self, SloReport};
use slo::spec::{ServiceSlos, load_path};

/// SLOs as code for sloop: specs in, rules, alerts, dashboards and reports out.
///
/// Specs are YAML: the native format (see slos/user.yaml), OpenSLO v1 or Sloth
/// prometheus/v1. Alerts follow the SRE workbook: page at 14.4x burn over 1h and 5m or 6x
/// over 6h and 30m; ticket at 3x over 1d and 2h or 1x over 3d and 6h.
#[derive(Debug, Parser)]
#[command(name = "slo", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check spec files; errors point at file, line and field.
    ///
    /// Example: slo validate slos/
    Validate {
        /// Spec files or directories of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Write Prometheus rules, promtool tests and Grafana dashboards for every service.
    ///
    /// Example: slo generate slos/ --rules-dir alerts --dashboards-dir dashboards
    Generate {
        paths: Vec<PathBuf>,
        /// Where `<service>.rules.yml` and its promtool tests `<service>.<severity>.test.yml` go.
        #[arg(long, default_value = "alerts")]
        rules_dir: PathBuf,
        /// Where `<service>-slo.json` goes.
        #[arg(long, default_value = "dashboards")]
        dashboards_dir: PathBuf,
        /// Write nothing; fail if the files on disk differ from what would be generated.
        #[arg(long)]
        check: bool,
    },
    /// Report SLI, budget left, burn per window, alerts, time to exhaustion and a verdict.
    ///
    /// Example: slo report slos/ --scrape http://127.0.0.1:8082/metrics --interval 30s
    Report {
        #[command(flatten)]
        input: Input,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Explain one SLO in words: what it measures, its budget, the PromQL of each window,
    /// each alert's thresholds and budget share, and how long until each fires now.
    ///
    /// Example: slo explain user-requests-availability slos/ --prometheus http://127.0.0.1:9090
    Explain {
        /// The SLO: its id (`service-name`, as in reports) or, if unique, its name.
        slo: String,
        /// Spec files or directories of them (default: slos/).
        paths: Vec<PathBuf>,
        /// Read the current burn from this Prometheus to say how long until each alert fires.
        #[arg(long)]
        prometheus: Option<String>,
    },
    /// Exit 1 when an SLO is breached or its budget left is under --min-budget.
    ///
    /// Example: slo gate slos/ --prometheus http://prometheus:9090 --min-budget 25
    Gate {
        #[command(flatten)]
        input: Input,
        /// Least budget left, in percent, that still lets a release through.
        #[arg(long, default_value_t = 0.0)]
        min_budget: f64,
    },
}

#[derive(Debug, Args)]
struct Input {
    /// Spec files or directories of them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Read from this Prometheus server's HTTP API.
    #[arg(long, conflicts_with_all = ["scrape", "loadtest"], required_unless_present_any = ["scrape", "loadtest"])]
    prometheus: Option<String>,
    /// Read a `loadtest` result.json (its whole run is the window).
    #[arg(long, conflicts_with = "scrape")]
    loadtest: Option<PathBuf>,
    /// Read two scrapes of these /metrics URLs instead (no Prometheus needed).
    #[arg(long, num_args = 1..)]
    scrape: Vec<String>,
    /// Time between the two scrapes, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = sloop_duration::parse_positive)]
    interval: Duration,
    /// Budget left (percent) under which the verdict is "at risk".
    #[arg(long, default_value_t = 25.0)]
    at_risk_below: f64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Markdown,
    Json,
    Html,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { paths } => validate(&paths),
        Command::Generate {
            paths,
            rules_dir,
            dashboards_dir,
            check,
        } => generate(&load_all(&paths)?, &rules_dir, &dashboards_dir, check),
        Command::Report {
            input,
            format,
            output,
        } => {
            let reports = evaluate(&input)?;
            let text = match format {
                Format::Table => report::table(&reports),
                Format::Markdown => report::markdown(&reports),
                Format::Json => report::json(&reports),
                Format::Html => report::html(&reports),
            };
            match output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            slo,
            paths,
            prometheus,
        } => {
            let services = load_all(&paths)?;
            let (service, found) = find_slo(&services, &slo)?;
            let measured = match prometheus {
                Some(url) => Some(
                    Source::Prometheus(Prometheus::new(&url))
                        .measure(found, &WORKBOOK_WINDOWS)
                        .with_context(|| format!("reading the current burn from {url}"))?,
                ),
                None => None,
            };
            print!(
                "{}",
                slo::explain::explain(service, found, &WORKBOOK_WINDOWS, measured.as_ref())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Gate { input, min_budget } => {
            let reports = evaluate(&input)?;
            print!("{}", report::table(&reports));
            let failures = gate_failures(&reports, min_budget / 100.0);
            for failure in &failures {
                eprintln!("gate: {failure}");
            }
            Ok(if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// The SLO a user named, by id or by a name only one service uses.
fn find_slo<'a>(
    services: &'a [ServiceSlos],
    wanted: &str,
) -> anyhow::Result<(&'a ServiceSlos, &'a slo::spec::Slo)> {
    let all = || {
        services
            .iter()
            .flat_map(|s| s.slos.iter().map(move |slo| (s, slo)))
    };
    let matches: Vec<_> = all()
        .filter(|(s, slo)| slo::rules::slo_id(&s.service, slo) == wanted)
        .chain(all().filter(|(_, slo)| slo.name == wanted))
        .collect();
    match matches.as_slice() {
        [] => {
            let ids: Vec<String> = all()
                .map(|(s, slo)| slo::rules::slo_id(&s.service, slo))
                .collect();
            bail!(
                "no SLO is called `{wanted}`; the specs define: {}",
                ids.join(", ")
            )
        }
        [(service, slo), ..]
            if matches.len() == 1 || slo::rules::slo_id(&service.service, slo) == wanted =>
        {
            Ok((service, slo))
        }
        _ => {
            let ids: Vec<String> = matches
                .iter()
                .map(|(s, slo)| slo::rules::slo_id(&s.service, slo))
                .collect();
            bail!(
                "`{wanted}` names SLOs of several services; use one's id: {}",
                ids.join(", ")
            )
        }
    }
}

fn load_all(paths: &[PathBuf]) -> anyhow::Result<Vec<ServiceSlos>> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("slos")]
    } else {
        paths.to_vec()
    };
    let mut all = Vec::new();
    for path in paths {
        all.extend(load_path(&path)?);
    }
    if all.is_empty() {
        bail!("no SLO specs found; pass spec files or a directory of .yaml files");
    }
    Ok(all)
}

fn validate(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for path in paths {
        match load_path(path) {
            Ok(services) => {
                for s in services {
                    println!(
                        "ok: {} — {} SLO(s) for service {}",
                        s.source.display(),
                        s.slos.len(),
                        s.service
                    );
                    print_notes(&s);
                }
            }
            Err(err) => {
                eprintln!("error: {err}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_notes(service: &ServiceSlos) {
    for note in &service.notes {
        eprintln!("note: {}: {note}", service.source.display());
    }
}

fn generate(
    services: &[ServiceSlos],
    rules_dir: &Path,
    dashboards_dir: &Path,
    check: bool,
) -> anyhow::Result<ExitCode> {
    let mut stale = Vec::new();
    for service in services {
        print_notes(service);
        let rules_name = format!("{}.rules.yml", service.service);
        let header = format!(
            "# Generated by `slo generate` from {}. Do not edit.\n",
            service.source.display()
        );
        let rules = header.clone()
            + &slo::rules::to_yaml(&slo::rules::rule_groups(service, &WORKBOOK_WINDOWS));
        let (tests, skipped) = slo::promtest::test_files(service, &WORKBOOK_WINDOWS, &rules_name);
        for reason in skipped {
            eprintln!("note: no promtool test for {reason}");
        }
        let dashboard =
            serde_json::to_string_pretty(&slo::dashboard::dashboard(service, &WORKBOOK_WINDOWS))?
                + "\n";
        let mut outputs = vec![
            (rules_dir.join(&rules_name), rules),
            (
                dashboards_dir.join(format!("{}-slo.json", service.service)),
                dashboard,
            ),
        ];
        for (name, test) in tests {
            outputs.push((
                rules_dir.join(name),
                header.clone() + &slo::rules::to_yaml(&test),
            ));
        }
        for (path, content) in outputs {
            if check {
                if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
                    stale.push(path);
                }
            } else {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&path, content)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
    }
    if stale.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for path in stale {
            eprintln!("out of date: {} (run `slo generate`)", path.display());
        }
        Ok(ExitCode::from(1))
    }
}

fn evaluate(input: &Input) -> anyhow::Result<Vec<SloReport>> {
    let services = load_all(&input.paths)?;
    let at_risk = input.at_risk_below / 100.0;
    let source = match (&input.prometheus, &input.loadtest) {
        (Some(url), _) => Source::Prometheus(Prometheus::new(url)),
        (None, Some(file)) => Source::LoadTest(LoadTestResult::read(file)?),
        (None, None) => {
            eprintln!(
                "scraping {} twice, {} apart...",
                input.scrape.join(", "),
                slo::evaluate::humanize(input.interval)
            );
            Source::Scrapes(Scrapes::take(
                &input.scrape,
                input.interval,
                std::thread::sleep,
            )?)
        }
    };
    let mut reports = Vec::new();
    let mut skipped = Vec::new();
    for service in &services {
        for slo in &service.slos {
            let id = slo::rules::slo_id(&service.service, slo);
            // A raw PromQL SLI (a freshness SLO, say) means nothing to a scrape or a load
            // test: leave it out, loudly, rather than refuse the SLOs that can be measured.
            let measured = match source.measure(slo, &WORKBOOK_WINDOWS) {
                Err(SourceError::NeedsPrometheus(_)) => {
                    eprintln!("skipping {id}: its SLI is raw PromQL, which needs --prometheus");
                    skipped.push(id);
                    continue;
                }
                measured => measured.with_context(|| format!("measuring {id}"))?,
            };
            reports.push(report::build(service, slo, &measured, at_risk));
        }
    }
    if reports.is_empty() && !skipped.is_empty() {
        bail!(
            "every SLO here has a raw PromQL SLI ({}), which only --prometheus can measure",
            skipped.join(", ")
        );
    }
    Ok(reports)
}

/// Why a release should not go out, one line per SLO at fault.
fn gate_failures(reports: &[SloReport], min_budget: f64) -> Vec<String> {
    let mut failures = Vec::new();
    for r in reports {
        if r.breached {
            failures.push(format!(
                "{} is breached: SLI {:.4}% is below the objective {:.4}%",
                r.id,
                r.sli * 100.0,
                r.objective * 100.0
            ));
        } else if r.budget_remaining < min_budget {
            failures.push(format!(
                "{} has {:.2}% of its error budget left, under the floor of {:.2}%",
                r.id,
                r.budget_remaining * 100.0,
                min_budget * 100.0
            ));
        }
    }
    failures
}
