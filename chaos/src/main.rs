//! `chaos`: apply, list and clear faults on the platform's services by name, through each
//! service's `/chaos/faults` admin API.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use chaos::Rule;
use chaos::targets::Targets;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

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
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// YAML file mapping service names to base URLs (defaults: the platform's ports on
    /// 127.0.0.1 — gateway 8080, auth 8081, user 8082, …).
    #[arg(long, env = "CHAOS_TARGETS", global = true)]
    targets: Option<PathBuf>,

    /// How long to wait for each service.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, global = true)]
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

struct Admin {
    client: reqwest::Client,
    targets: Targets,
    token: String,
}

impl Admin {
    async fn call(
        &self,
        service: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Rule>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.targets.url(service)?);
        let mut request = self.client.request(method, &url).bearer_auth(&self.token);
        if let Some(rule) = body {
            request = request.json(rule);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{service}: no answer from {url}; is it running?"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status.as_u16() {
            200..=299 => Ok(body),
            404 => bail!(
                "{service}: {url} has no chaos admin API; start it with --chaos and CHAOS_TOKEN set"
            ),
            401 => {
                bail!("{service}: the token was refused; set CHAOS_TOKEN to the service's token")
            }
            _ => bail!(
                "{service}: {status}: {}",
                body["detail"].as_str().unwrap_or("no detail")
            ),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Ok(false) when some service could not be reached or refused.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let targets = match &cli.targets {
        Some(path) => Targets::load(path)?,
        None => Targets::default(),
    };
    let token = std::env::var("CHAOS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .context("set CHAOS_TOKEN to the token the services were started with")?;
    let admin = Admin {
        client: reqwest::Client::builder().timeout(cli.timeout).build()?,
        token,
        targets,
    };
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
                match admin
                    .call(
                        &service,
                        reqwest::Method::POST,
                        "/chaos/faults",
                        Some(&rule),
                    )
                    .await
                {
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
                match admin
                    .call(&service, reqwest::Method::GET, "/chaos/faults", None)
                    .await
                {
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
                match admin
                    .call(&service, reqwest::Method::DELETE, "/chaos/faults", None)
                    .await
                {
                    Ok(body) => println!("{service}: cleared {}", body["cleared"]),
                    Err(err) => {
                        eprintln!("{err:#}");
                        all_ok = false;
                    }
                }
            }
        }
    }
    Ok(all_ok)
}

fn rule_ttl(fault: &Value) -> String {
    let ms = fault["expires_in_ms"].as_u64().unwrap_or(0);
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

fn print_table(listed: &[Value]) {
    println!(
        "{:<12} {:<12} {:<8} {:<24} {:<32} {:>6} {:>9} {:>8}",
        "service", "id", "method", "route", "action", "prob", "expires", "hits"
    );
    for body in listed {
        for fault in body["faults"].as_array().into_iter().flatten() {
            let rule = &fault["rule"];
            println!(
                "{:<12} {:<12} {:<8} {:<24} {:<32} {:>6} {:>9} {:>8}",
                body["service"].as_str().unwrap_or("?"),
                fault["id"].as_str().unwrap_or("?"),
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
