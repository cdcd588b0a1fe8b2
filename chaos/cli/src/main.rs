//! `chaos`: apply, list and clear faults on the platform's services by name, through each
//! service's `/chaos/faults` admin API, and run experiments to a verdict.

mod admin;
mod experiment;
mod targets;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use admin::Admin;
use anyhow::{Context, bail};
use chaos::Rule;
use clap::{Args, Parser, Subcommand};
use experiment::spec::{Action, Check, Plan};
use serde_json::{Value, json};
use targets::Targets;

/// Inject faults into sloop's services and take them away again.
///
/// The services must run with chaos on (`--chaos` or CHAOS_ENABLED=true) and a token
/// (CHAOS_TOKEN); give this tool the same token in CHAOS_TOKEN. Every fault expires by its
/// TTL (default 5m) even if nobody clears it.
///
/// Examples:
///   chaos apply user --route '/users/{id}' --delay 300ms --jitter 100ms --ttl 10m
///   chaos apply user,auth --abort 503 --probability 0.1
///   chaos apply user --file rule.yaml
///   chaos list
///   chaos clear
///   chaos run chaos/experiments/user-errors-page.yaml --webhook-listen 127.0.0.1:9095
///
/// Exit status: 0 success (or, for `run`, the verdict passed), 1 a service could not be
/// reached (for `run`: the platform deviated), 2 usage errors and invalid files, 3 an
/// experiment aborted (failing baseline, error or Ctrl-C; its faults are rolled back).
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// YAML file mapping service names to base URLs (defaults: the platform's ports on
    /// 127.0.0.1 — gateway 8080, auth 8081, user 8082, …).
    #[arg(long, env = "CHAOS_TARGETS", global = true)]
    targets: Option<PathBuf>,

    /// How long to wait for each service.
    #[arg(long, default_value = "5s", value_parser = sloop_duration::parse, global = true)]
    timeout: Duration,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply one fault rule to each named service.
    Apply {
        /// Services, comma-separated or repeated.
        #[arg(required = true, value_delimiter = ',')]
        services: Vec<String>,
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// List the active faults of the named services (default: every target).
    List {
        #[arg(value_delimiter = ',')]
        services: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove every fault from the named services (default: every target).
    Clear {
        #[arg(value_delimiter = ',')]
        services: Vec<String>,
    },
    /// Run an experiment file: check the steady state (a failing baseline aborts before
    /// anything is injected), run the method (faults, load, waits) while checking it, watch
    /// the expected alerts fire and resolve, always roll the faults back (also on errors
    /// and Ctrl-C), and write journal.json, report.md and report.html.
    ///
    /// The verdict is passed (exit 0), deviated (1) or aborted (3). See docs/chaos.md for
    /// the file format and chaos/experiments/ for examples.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The experiment (YAML).
    file: PathBuf,
    /// Check the file and print the plan; inject nothing.
    #[arg(long)]
    dry_run: bool,
    /// Prometheus to query for the probes and the report's chart.
    #[arg(long, env = "PROMETHEUS_URL", default_value = "http://127.0.0.1:9090")]
    prometheus: String,
    /// Alertmanager whose v2 API says which alerts fire.
    #[arg(
        long,
        env = "ALERTMANAGER_URL",
        default_value = "http://127.0.0.1:9093"
    )]
    alertmanager: String,
    /// Listen here for Alertmanager's webhook notifications (alerts/alertmanager.yml points
    /// its receivers at 127.0.0.1:9095), so the journal shows each page arriving.
    #[arg(long, env = "CHAOS_WEBHOOK_LISTEN")]
    webhook_listen: Option<SocketAddr>,
    /// Where journal.json, report.md and report.html go [default: chaos-results/<file stem>].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The rule, from a file or from flags.
#[derive(Args)]
struct RuleArgs {
    /// A rule as YAML or JSON (see docs/chaos.md); the flags below build one instead.
    #[arg(long, conflicts_with_all = ["delay", "abort", "reset", "hang"])]
    file: Option<PathBuf>,
    /// Only this HTTP method.
    #[arg(long)]
    method: Option<String>,
    /// Only this route template (`/users/{id}`), or a prefix ending in `*`.
    #[arg(long)]
    route: Option<String>,
    /// Only requests with this header, as NAME=VALUE; repeat for more.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// Hold each hit request this long, e.g. 300ms.
    #[arg(long, group = "action")]
    delay: Option<String>,
    /// With --delay: up to this much more, drawn uniformly.
    #[arg(long, requires = "delay")]
    jitter: Option<String>,
    /// Answer hit requests with this status (400–599) and a problem document.
    #[arg(long, group = "action")]
    abort: Option<u16>,
    /// Drop hit requests' connections without an answer.
    #[arg(long, group = "action")]
    reset: bool,
    /// Never answer hit requests.
    #[arg(long, group = "action")]
    hang: bool,
    /// Share of matching requests hit, in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    probability: f64,
    /// How long the fault lives (at most 1h).
    #[arg(long, default_value = "5m")]
    ttl: String,
}

impl RuleArgs {
    fn rule(&self) -> anyhow::Result<Rule> {
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            return serde_saphyr::from_str(&text)
                .with_context(|| format!("{} is not a fault rule", path.display()));
        }
        let action = match (&self.delay, self.abort, self.reset, self.hang) {
            (Some(fixed), ..) => {
                json!({"delay": {"fixed": fixed, "jitter": self.jitter.as_deref().unwrap_or("0s")}})
            }
            (_, Some(status), ..) => json!({"abort": {"status": status}}),
            (_, _, true, _) => json!("reset"),
            (_, _, _, true) => json!("hang"),
            _ => bail!("say what the fault does: --delay, --abort, --reset or --hang (or --file)"),
        };
        let mut headers = serde_json::Map::new();
        for pair in &self.headers {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("--header `{pair}` is not NAME=VALUE"))?;
            headers.insert(name.to_owned(), json!(value));
        }
        let rule = json!({
            "match": {"method": self.method, "route": self.route, "headers": headers},
            "action": action,
            "probability": self.probability,
            "ttl": self.ttl,
        });
        let mut rule = rule;
        for field in ["method", "route"] {
            if rule["match"][field].is_null() {
                rule["match"].as_object_mut().map(|m| m.remove(field));
            }
        }
        serde_json::from_value(rule).context("the flags do not make a valid rule")
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(ref args) => run_experiment(&cli, args).await,
        _ => manage(cli).await.map(|ok| u8::from(!ok)),
    };
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            2
        }
    };
    // Exit now: background load of an experiment may still be sending, on threads the
    // runtime would otherwise wait for.
    std::process::exit(i32::from(code))
}

fn targets(cli: &Cli) -> anyhow::Result<Targets> {
    Ok(match &cli.targets {
        Some(path) => Targets::load(path)?,
        None => Targets::default(),
    })
}

/// apply, list, clear. Ok(false) when some service could not be reached or refused.
async fn manage(cli: Cli) -> anyhow::Result<bool> {
    let admin = Admin::new(targets(&cli)?, Admin::token_from_env()?, cli.timeout)?;
    let everyone = |services: Vec<String>| {
        if services.is_empty() {
            admin.targets.names().map(str::to_owned).collect()
        } else {
            services
        }
    };
    let mut all_ok = true;
    match cli.command {
        Command::Apply { services, rule } => {
            let rule = rule.rule()?;
            for service in services {
                match admin.apply(&service, &rule).await {
                    Ok(fault) => println!(
                        "{service}: applied {} (expires in {})",
                        fault["id"].as_str().unwrap_or("?"),
                        rule_ttl(&fault)
                    ),
                    Err(err) => {
                        eprintln!("{err:#}");
                        all_ok = false;
                    }
                }
            }
        }
        Command::List { services, json } => {
            let mut listed = Vec::new();
            for service in everyone(services) {
                match admin.list(&service).await {
                    Ok(body) => listed.push(body),
                    Err(err) => {
                        eprintln!("{err:#}");
                        all_ok = false;
                    }
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                print_table(&listed);
            }
        }
        Command::Clear { services } => {
            for service in everyone(services) {
                match admin.clear(&service).await {
                    Ok(body) => println!("{service}: cleared {}", body["cleared"]),
                    Err(err) => {
                        eprintln!("{err:#}");
                        all_ok = false;
                    }
                }
            }
        }
        Command::Run(_) => unreachable!("run is dispatched in main"),
    }
    Ok(all_ok)
}

/// Exit code: the verdict's (0, 1, 3); invalid files are errors (2).
async fn run_experiment(cli: &Cli, args: &RunArgs) -> anyhow::Result<u8> {
    let plan = experiment::spec::load(&args.file)?;
    let targets = targets(cli)?;
    if args.dry_run {
        print!("{}", describe(&plan, &targets));
        println!("the file is valid; nothing was injected (--dry-run)");
        return Ok(0);
    }
    let admin = Admin::new(targets, Admin::token_from_env()?, cli.timeout)?;
    let out = args.out.clone().unwrap_or_else(|| {
        Path::new("chaos-results").join(
            args.file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "experiment".into()),
        )
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let (interrupt, interrupted) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_interrupt().await;
        experiment::run::say(
            "interrupted: rolling back every fault this run applied, then stopping \
             (interrupt again to stop at once and leave them to their TTL)",
        );
        let _ = interrupt.send(true);
        wait_for_interrupt().await;
        experiment::run::say(
            "interrupted again: stopping now; faults not yet rolled back stay until their TTL \
             (`chaos list` shows them, `chaos clear` removes them)",
        );
        std::process::exit(130);
    });
    experiment::run::say(&format!("running {}: {}", args.file.display(), plan.title));
    let settings = experiment::run::Settings {
        prometheus: args.prometheus.clone(),
        alertmanager: args.alertmanager.clone(),
        admin,
        webhook: args.webhook_listen,
    };
    let journal = experiment::run::run(&plan, settings, interrupted).await;
    let write = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("journal.json", serde_json::to_string_pretty(&journal)?)?;
    write("report.md", journal.markdown())?;
    write("report.html", journal.html())?;
    println!(
        "verdict: {} — {}\njournal and reports in {}",
        journal.verdict.as_str(),
        journal.reason,
        out.display()
    );
    Ok(journal.verdict.exit_code())
}

async fn wait_for_interrupt() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

/// The plan in words, for --dry-run.
fn describe(plan: &Plan, targets: &Targets) -> String {
    use std::fmt::Write as _;
    let mut text = format!("experiment: {}\n", plan.title);
    let h = &plan.hypothesis;
    let _ = writeln!(
        text,
        "steady state: {} (during: every {}; after: within {} of the rollback)",
        h.title,
        sloop_duration::format(h.interval),
        sloop_duration::format(h.settle)
    );
    for p in &h.probes {
        let when: Vec<&str> = p.when.iter().map(|w| w.as_str()).collect();
        let what = match &p.check {
            Check::Http {
                service,
                path,
                status,
                ..
            } => format!(
                "GET {}{path} answers {status}",
                targets.url(service).unwrap_or("<unknown service>")
            ),
            Check::Promql {
                query, min, max, ..
            } => {
                format!("`{query}` within [{}, {}]", bound(*min), bound(*max))
            }
            Check::Slo {
                service,
                slo,
                severity,
                max_burn_rate,
            } => format!(
                "SLO {}/{}: no {} burn condition holds{}",
                service.service,
                slo.name,
                severity.as_str(),
                max_burn_rate
                    .map(|m| format!(", burn ≤ {m}x"))
                    .unwrap_or_default()
            ),
        };
        let _ = writeln!(text, "  probe {} [{}]: {what}", p.name, when.join(", "));
    }
    let _ = writeln!(text, "method:");
    for (i, step) in plan.method.iter().enumerate() {
        let what = match &step.action {
            Action::Fault { services, rule } => format!(
                "apply to {}: {}",
                services.join(", "),
                serde_json::to_string(rule).unwrap_or_default()
            ),
            Action::Load {
                scenario_path,
                scenario,
                target,
                background,
                ..
            } => format!(
                "load {} ({} stage(s)) at {target}{}",
                scenario_path.display(),
                scenario.stages.len(),
                if *background {
                    ", in the background"
                } else {
                    ""
                }
            ),
            Action::Wait(d) => format!("wait {}", sloop_duration::format(*d)),
            Action::AwaitAlerts(d) => format!(
                "wait until the expected alerts fire and reach their receivers, at most {}",
                sloop_duration::format(*d)
            ),
        };
        if step.name == what {
            let _ = writeln!(text, "  {}. {what}", i + 1);
        } else {
            let _ = writeln!(text, "  {}. {} — {what}", i + 1, step.name);
        }
    }
    let _ = writeln!(text, "rollback: delete every fault applied above (always)");
    for e in &plan.expect {
        if e.fires {
            let _ = writeln!(
                text,
                "expect {} to fire within {} of the first fault{}{}",
                e.describe(),
                sloop_duration::format(e.fires_within),
                e.resolves_within
                    .map(|r| format!(
                        ", resolve within {} of the rollback",
                        sloop_duration::format(r)
                    ))
                    .unwrap_or_default(),
                e.receiver
                    .as_ref()
                    .map(|r| format!(", notifying `{r}`"))
                    .unwrap_or_default()
            );
        } else {
            let _ = writeln!(text, "expect {} to stay silent", e.describe());
        }
    }
    text
}

fn bound(x: Option<f64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_else(|| "any".into())
}

fn rule_ttl(fault: &Value) -> String {
    let ms = fault["expires_in_ms"].as_u64().unwrap_or(0);
    sloop_duration::format(Duration::from_secs(ms / 1000))
}

fn print_table(listed: &[Value]) {
    println!(
        "{:<12} {:<12} {:<9} {:<8} {:<24} {:<32} {:>6} {:>9} {:>8}",
        "service", "id", "target", "method", "route", "action", "prob", "expires", "hits"
    );
    for body in listed {
        for fault in body["faults"].as_array().into_iter().flatten() {
            let rule = &fault["rule"];
            println!(
                "{:<12} {:<12} {:<9} {:<8} {:<24} {:<32} {:>6} {:>9} {:>8}",
                body["service"].as_str().unwrap_or("?"),
                fault["id"].as_str().unwrap_or("?"),
                rule["target"].as_str().unwrap_or("http"),
                rule["match"]["method"].as_str().unwrap_or("*"),
                rule["match"]["route"].as_str().unwrap_or("*"),
                rule["action"].to_string(),
                rule["probability"],
                rule_ttl(fault),
                fault["injected"],
            );
        }
    }
}
