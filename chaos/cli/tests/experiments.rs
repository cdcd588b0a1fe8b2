//! The experiment runner against real processes: the user service (its own binary, chaos
//! on), a real Prometheus running the generated rules unchanged (1 s scrape and
//! evaluation), a real Alertmanager with alerts/alertmanager.yml (waits shortened), and
//! `chaos run` itself catching the webhooks. Every experiment in chaos/experiments/ reaches
//! its expected verdict, and its journal shows each page reaching the webhook and
//! resolving; a failing baseline aborts before injecting; Ctrl-C leaves no fault behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use platform_tests::monitoring::{self, Server, repo_root};
use platform_tests::{Process, free_port, workspace_binary};
use serde_json::Value;

const TOKEN: &str = "experiments-token";

/// One user service with the monitoring an experiment needs.
struct Stack {
    user: Process,
    _prometheus: Server,
    _alertmanager: Server,
    prometheus_url: String,
    alertmanager_url: String,
    webhook: String,
    dir: PathBuf,
}

impl Stack {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "sloop-experiment-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let webhook = format!("127.0.0.1:{}", free_port());
        let alertmanager = monitoring::alertmanager(&monitoring::alertmanager_config_for_tests(
            &format!("http://{webhook}"),
        ))
        .await;
        let port = free_port();
        let mut user =
            Process::standalone(&workspace_binary("sloop-user", "sloop-user"), "user", port)
                .arg("--chaos")
                .env("CHAOS_TOKEN", TOKEN)
                .env(
                    "DATABASE_URL",
                    format!("sqlite://{}", dir.join("user.db").display()),
                )
                .env("RUST_LOG", "warn");
        user.start().await;
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\nscrape_configs:\n  - job_name: user\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
            rules = repo_root().join("alerts/user.rules.yml").display(),
            am = alertmanager.url.trim_start_matches("http://"),
        );
        let prometheus = monitoring::prometheus(&config).await;
        // Probes judged at once must find the service's series, as in a long-running stack.
        monitoring::wait_scraped(&prometheus, "user").await;
        std::fs::write(
            dir.join("targets.yaml"),
            format!("user: http://127.0.0.1:{port}\n"),
        )
        .unwrap();
        Self {
            user,
            prometheus_url: prometheus.url.clone(),
            alertmanager_url: alertmanager.url.clone(),
            _prometheus: prometheus,
            _alertmanager: alertmanager,
            webhook,
            dir,
        }
    }

    /// `chaos run FILE` against this stack, as a child process.
    fn command(&self, file: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaos"));
        command
            .current_dir(repo_root())
            .env("CHAOS_TOKEN", TOKEN)
            .arg("--targets")
            .arg(self.dir.join("targets.yaml"))
            .arg("run")
            .arg(file)
            .args(["--prometheus", &self.prometheus_url])
            .args(["--alertmanager", &self.alertmanager_url])
            .args(["--webhook-listen", &self.webhook])
            .arg("--out")
            .arg(self.dir.join("results"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        command
    }

    fn journal(&self) -> Value {
        let text = std::fs::read_to_string(self.dir.join("results/journal.json"))
            .expect("the run wrote its journal");
        serde_json::from_str(&text).expect("the journal is JSON")
    }

    fn report(&self) -> String {
        std::fs::read_to_string(self.dir.join("results/report.md")).unwrap_or_default()
    }

    async fn active_faults(&self) -> Vec<Value> {
        let body: Value = reqwest::Client::new()
            .get(self.user.url("/chaos/faults"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["faults"].as_array().cloned().unwrap_or_default()
    }

    async fn stop(mut self) {
        self.user.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `file` to its end (at most 12 minutes); the exit code and what it printed.
async fn run(stack: &Stack, file: &Path) -> (i32, String) {
    let child = stack.command(file).spawn().expect("chaos runs");
    let output = tokio::time::timeout(Duration::from_secs(720), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} ran for over 12 minutes", file.display()))
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), printed)
}

fn library() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("chaos/experiments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "the library has {} experiments",
        files.len()
    );
    files
}

/// One library experiment on a stack of its own; the failure, if it did not pass.
async fn library_experiment(file: PathBuf) -> Result<(), String> {
    let stack = Stack::start().await;
    let (code, printed) = run(&stack, &file).await;
    let journal = stack.journal();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut problems = Vec::new();
    if code != 0 || journal["verdict"] != "passed" {
        problems.push(format!(
            "exit {code}, verdict {}: {}",
            journal["verdict"], journal["reason"]
        ));
    }
    for alert in journal["alerts"].as_array().unwrap() {
        if alert["fires"] == true
            && (alert["notified_at"].is_null() || alert["notified_resolved_at"].is_null())
        {
            problems.push(format!(
                "{}: the webhook did not see it fire and resolve",
                alert["expected"]
            ));
        }
    }
    let injected: u64 = journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "rollback")
        .map(|e| e["detail"]["injected"].as_u64().unwrap_or(0))
        .sum();
    // A fault that struck nothing proves nothing, whatever the verdict.
    if injected == 0 {
        problems.push("the faults struck nothing".to_owned());
    }
    let leftover = stack.active_faults().await;
    if !leftover.is_empty() {
        problems.push(format!("faults left active: {leftover:?}"));
    }
    let report = stack.report();
    // The HTML report as a person opens it: nothing overflows a laptop screen.
    let html = std::fs::read_to_string(stack.dir.join("results/report.html")).unwrap_or_default();
    let layout = tokio::task::spawn_blocking(move || {
        report_kit::browser::layout_problems(&html, report_kit::browser::LAYOUT_WIDTH)
    })
    .await
    .unwrap();
    match layout {
        Ok(found) if found.is_empty() => {}
        Ok(found) => problems.push(format!("report.html layout: {found:?}")),
        Err(e) => problems.push(e.to_string()),
    }
    stack.stop().await;
    if problems.is_empty() {
        eprintln!("{name}: passed");
        return Ok(());
    }
    Err(format!(
        "{name}: {}\n--- output\n{printed}\n--- report\n{report}",
        problems.join("; ")
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_experiment_in_the_library_reaches_its_verdict() {
    // Each on its own stack, all at once: a page takes minutes to fire and resolve.
    let runs = library()
        .into_iter()
        .map(|file| tokio::spawn(library_experiment(file)));
    let mut failures = Vec::new();
    for run in runs {
        if let Err(failure) = run.await.unwrap() {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn experiment_file(stack: &Stack, name: &str, text: &str) -> PathBuf {
    let path = stack.dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_baseline_aborts_without_injecting_anything() {
    let stack = Stack::start().await;
    let file = experiment_file(
        &stack,
        "broken-baseline.yaml",
        "title: baseline fails\nsteady_state:\n  title: a route that does not exist answers 200\n  probes:\n    - name: missing route\n      http: { service: user, path: /no-such-route, status: 200 }\nmethod:\n  - fault:\n      service: user\n      rule: { action: { abort: { status: 503 } }, ttl: 5m }\n  - wait: 5s\n",
    );
    let (code, printed) = run(&stack, &file).await;
    assert_eq!(code, 3, "aborted exits 3:\n{printed}");
    let journal = stack.journal();
    assert_eq!(journal["verdict"], "aborted");
    assert!(
        journal["reason"]
            .as_str()
            .unwrap()
            .contains("before anything was injected"),
        "{}",
        journal["reason"]
    );
    assert!(
        !journal["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "fault"),
        "nothing may be injected: {journal}"
    );
    let metrics = reqwest::get(stack.user.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("chaos_faults_injected_total{"),
        "{metrics}"
    );
    assert!(stack.active_faults().await.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fault_that_strikes_nothing_deviates_and_a_load_that_cannot_run_aborts() {
    let stack = Stack::start().await;
    let steady = "steady_state:\n  title: ready\n  probes:\n    - name: ready\n      http: { service: user, path: /readyz }\n";
    let idle = experiment_file(
        &stack,
        "idle.yaml",
        &format!(
            "title: a fault nothing reaches\n{steady}method:\n  - fault:\n      service: user\n      rule: {{ match: {{ method: PUT, route: \"/users/{{id}}/status\" }}, action: {{ abort: {{ status: 503 }} }}, ttl: 5m }}\n  - wait: 3s\n"
        ),
    );
    let (code, printed) = run(&stack, &idle).await;
    assert_eq!(code, 1, "a deviation exits 1:\n{printed}");
    let journal = stack.journal();
    assert_eq!(journal["verdict"], "deviated", "{journal}");
    assert!(
        journal["reason"]
            .as_str()
            .unwrap()
            .contains("struck nothing"),
        "{}",
        journal["reason"]
    );

    std::fs::write(
        stack.dir.join("broken-load.yaml"),
        "name: broken\nsetup:\n  - name: seed\n    method: POST\n    path: /no-such-route\n    json: {}\nstages:\n  - { duration: 5s, rate: 1 }\nsteps:\n  - name: ready\n    path: /readyz\n",
    )
    .unwrap();
    let broken = experiment_file(
        &stack,
        "broken.yaml",
        &format!(
            "title: a load that cannot run\n{steady}method:\n  - fault:\n      service: user\n      rule: {{ action: {{ delay: {{ fixed: 1ms }} }}, ttl: 5m }}\n  - name: load\n    load: {{ scenario: {}, target: user }}\n  - wait: 1m\n",
            stack.dir.join("broken-load.yaml").display()
        ),
    );
    let (code, printed) = run(&stack, &broken).await;
    assert_eq!(code, 3, "aborted exits 3:\n{printed}");
    let journal = stack.journal();
    assert_eq!(journal["verdict"], "aborted", "{journal}");
    assert!(
        journal["reason"].as_str().unwrap().contains("set-up step"),
        "{}",
        journal["reason"]
    );
    assert!(stack.active_faults().await.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_in_the_middle_leaves_no_fault_active() {
    let stack = Stack::start().await;
    let file = experiment_file(
        &stack,
        "long.yaml",
        "title: long\nsteady_state:\n  title: ready\n  probes:\n    - name: ready\n      http: { service: user, path: /readyz }\nmethod:\n  - fault:\n      service: user\n      rule: { match: { route: \"/users/{id}\" }, action: { delay: { fixed: 50ms } }, ttl: 30m }\n  - fault:\n      service: user\n      rule: { match: { method: PUT }, action: { abort: { status: 503 } }, ttl: 30m }\n  - wait: 10m\n",
    );
    let mut child = stack.command(&file).spawn().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stack.active_faults().await.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the faults were never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = child.id().unwrap().to_string();
    let signal = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(signal.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("chaos stops soon after Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(3), "an interrupted run is aborted");
    assert!(
        stack.active_faults().await.is_empty(),
        "Ctrl-C left faults active"
    );
    let journal = stack.journal();
    assert_eq!(journal["verdict"], "aborted");
    let rollbacks = journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "rollback" && e["ok"] == true)
        .count();
    assert_eq!(rollbacks, 2, "{journal}");
    stack.stop().await;
}
