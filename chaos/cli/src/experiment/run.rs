//! Running a plan: the steady state checked before (a gate), during and after; the method's
//! faults, load and waits; expected alerts watched in Alertmanager and at the webhooks; the
//! rollback that always runs; and the verdict.

use std::io::Write as _;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaos::Rule;
use futures::FutureExt as _;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::alerts::{Alertmanager, Inbox};
use super::journal::{AlertRecord, Entry, Journal, Series, Verdict, now_rfc3339};
use super::probe::{self, Outcome, Sources};
use super::spec::{Action, Check, ExpectedAlert, Phase, Plan};
use crate::admin::Admin;

/// Where the run finds what it talks to.
pub struct Settings {
    pub prometheus: String,
    pub alertmanager: String,
    pub admin: Admin,
    /// Listen here for Alertmanager's webhook notifications.
    pub webhook: Option<SocketAddr>,
}

/// How often Alertmanager is asked about the expected alerts.
const ALERT_POLL: Duration = Duration::from_secs(2);

/// Writes one line of progress to stderr. A closed stderr (the terminal went, a pipe's
/// reader quit) must not stop a run halfway, before its rollback.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The journal being written, shared by the tasks that watch while the method runs.
#[derive(Clone)]
struct Recorder {
    start: Instant,
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Recorder {
    fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn record(
        &self,
        phase: &'static str,
        kind: &'static str,
        name: &str,
        ok: bool,
        detail: serde_json::Value,
    ) {
        let entry = Entry {
            t: self.t(),
            at: now_rfc3339(),
            phase,
            kind,
            name: name.to_owned(),
            ok,
            detail,
        };
        say(&format!(
            "[{:>7.1}s] {:<8} {:<8} {} {} {}",
            entry.t,
            phase,
            kind,
            if ok { "ok  " } else { "FAIL" },
            name,
            match &entry.detail {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            }
        ));
        self.entries.lock().expect("journal lock").push(entry);
    }

    fn probe(&self, phase: Phase, outcome: &Outcome) {
        self.record(
            phase.as_str(),
            "probe",
            &outcome.probe,
            outcome.held,
            json!(
                outcome
                    .error
                    .clone()
                    .unwrap_or_else(|| outcome.observed.clone())
            ),
        );
    }
}

/// What the watchers learn about one expected alert.
#[derive(Debug, Clone, Default)]
struct Seen {
    fired_at: Option<f64>,
    resolved_at: Option<f64>,
}

/// Runs `plan`. `interrupted` turns true on Ctrl-C or SIGTERM: the run rolls back and ends
/// as aborted.
pub async fn run(
    plan: &Plan,
    settings: Settings,
    mut interrupted: watch::Receiver<bool>,
) -> Journal {
    let recorder = Recorder {
        start: Instant::now(),
        entries: Arc::default(),
    };
    let started_at = now_rfc3339();
    let mut run = Run {
        plan,
        recorder: recorder.clone(),
        sources: Arc::new(Sources {
            prometheus: settings.prometheus.clone(),
            targets: settings.admin.targets.clone(),
            http: reqwest::Client::new(),
        }),
        alertmanager: Arc::new(Alertmanager::new(&settings.alertmanager)),
        admin: settings.admin,
        applied: Vec::new(),
        fault_window: None,
        deviations: Arc::default(),
        broken_loads: Arc::default(),
        seen: Arc::new(Mutex::new(vec![Seen::default(); plan.expect.len()])),
        inbox: None,
        alerts: Vec::new(),
    };
    let (verdict, reason) = run.execute(settings.webhook, &mut interrupted).await;
    let series = run.burn_series().await;
    let alerts = std::mem::take(&mut run.alerts);
    Journal {
        experiment: plan.path.display().to_string(),
        title: plan.title.clone(),
        description: plan.description.clone(),
        started_at,
        ended_at: now_rfc3339(),
        duration_seconds: recorder.t(),
        verdict,
        reason,
        fault_window: run.fault_window,
        entries: recorder.entries.lock().expect("journal lock").clone(),
        alerts,
        notifications: run.inbox.as_ref().map(Inbox::all).unwrap_or_default(),
        series,
    }
}

struct Run<'a> {
    plan: &'a Plan,
    recorder: Recorder,
    sources: Arc<Sources>,
    alertmanager: Arc<Alertmanager>,
    admin: Admin,
    /// Every fault this run asked for, for the rollback.
    applied: Vec<Applied>,
    fault_window: Option<(f64, f64)>,
    deviations: Arc<Mutex<Vec<String>>>,
    /// Background load steps that failed: the experiment did not run as written.
    broken_loads: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    inbox: Option<Inbox>,
    /// What became of each expected alert, judged once the watchers have stopped.
    alerts: Vec<AlertRecord>,
}

/// A fault this run asked a service for.
struct Applied {
    service: String,
    /// As the service answered; `None` when the call failed in a way that leaves it
    /// unknown whether the service applied it (a timeout, an answer without an id).
    id: Option<String>,
    rule: Rule,
}

/// Why the method stopped early.
enum Stop {
    Interrupted,
    Failed(String),
}

impl Run<'_> {
    async fn execute(
        &mut self,
        webhook: Option<SocketAddr>,
        interrupted: &mut watch::Receiver<bool>,
    ) -> (Verdict, String) {
        if let Some(address) = webhook {
            let recorder = self.recorder.clone();
            match super::alerts::listen(address, Arc::new(move || recorder.t())).await {
                Ok(inbox) => self.inbox = Some(inbox),
                Err(err) => {
                    return (
                        Verdict::Aborted,
                        format!("cannot listen for webhooks on {address}: {err}"),
                    );
                }
            }
        }
        if let Err(reason) = self.baseline().await {
            return (Verdict::Aborted, reason);
        }

        let (stop_during, during) = watch::channel(false);
        let during = self.watch_during(during);
        let (stop_alerts, watching) = watch::channel(false);
        let alerts = self.watch_alerts(watching);
        let mut loads = Vec::new();
        // A panic in the method must not skip the rollback.
        let stopped = AssertUnwindSafe(self.method(&mut loads, interrupted))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                Some(Stop::Failed(format!("the method panicked ({what})")))
            });
        let left = self.rollback().await;
        // The during probes watch the faults; after the rollback the after probes judge.
        let _ = stop_during.send(true);
        let _ = during.await;

        let outcome = match stopped {
            Some(Stop::Interrupted) => Some((
                Verdict::Aborted,
                match left {
                    0 => format!(
                        "interrupted; {} fault(s) rolled back, nothing left active",
                        self.applied.len()
                    ),
                    left => format!(
                        "interrupted; {left} of {} fault(s) could not be rolled back and stay until their TTL",
                        self.applied.len()
                    ),
                },
            )),
            Some(Stop::Failed(reason)) => Some((Verdict::Aborted, reason)),
            None => None,
        };
        if outcome.is_none() {
            self.after(interrupted).await;
        }
        let _ = stop_alerts.send(true);
        let _ = alerts.await;
        for load in loads {
            load.abort();
        }
        // Judged before the verdict: an alert that did not fire, resolve or notify in time
        // is a deviation.
        self.alerts = self.alert_records();
        if let Some(outcome) = outcome {
            return outcome;
        }
        if *interrupted.borrow() {
            return (
                Verdict::Aborted,
                "interrupted after the rollback; the after checks did not finish".into(),
            );
        }
        let broken = self.broken_loads.lock().expect("loads lock").clone();
        if !broken.is_empty() {
            return (
                Verdict::Aborted,
                format!(
                    "the experiment did not run as written: {}",
                    broken.join("; ")
                ),
            );
        }
        let deviations = self.deviations.lock().expect("deviations lock").clone();
        if deviations.is_empty() {
            (
                Verdict::Passed,
                "the steady state held where it had to and every expected alert behaved".into(),
            )
        } else {
            (Verdict::Deviated, deviations.join("; "))
        }
    }

    /// The gate: every `before` probe holds and no alert the experiment expects is firing
    /// already, or nothing is injected.
    async fn baseline(&self) -> Result<(), String> {
        let mut failed = Vec::new();
        for p in self.probes(Phase::Before) {
            let outcome = probe::check(p, &self.sources).await;
            self.recorder.probe(Phase::Before, &outcome);
            if !outcome.held {
                failed.push(format!(
                    "{}: {}",
                    outcome.probe,
                    outcome.error.unwrap_or(outcome.observed)
                ));
            }
        }
        for expected in &self.plan.expect {
            match self.alertmanager.firing(expected).await {
                Ok(false) => {}
                Ok(true) => failed.push(format!(
                    "{} is firing already, so the experiment cannot show what the faults do to it",
                    expected.describe()
                )),
                Err(err) => failed.push(err),
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        Err(format!(
            "the steady state did not hold before anything was injected, so nothing was: {}",
            failed.join("; ")
        ))
    }

    fn probes(&self, phase: Phase) -> impl Iterator<Item = &super::spec::Probe> {
        self.plan
            .hypothesis
            .probes
            .iter()
            .filter(move |p| p.when.contains(&phase))
    }

    async fn method(
        &mut self,
        loads: &mut Vec<JoinHandle<()>>,
        interrupted: &mut watch::Receiver<bool>,
    ) -> Option<Stop> {
        for step in &self.plan.method {
            if *interrupted.borrow() {
                return Some(Stop::Interrupted);
            }
            if let Some(broken) = self.broken_loads.lock().expect("loads lock").first() {
                return Some(Stop::Failed(broken.clone()));
            }
            let result = match &step.action {
                Action::Fault { services, rule } => {
                    let mut result = Ok(());
                    for service in services {
                        let answer = self.admin.apply(service, rule).await;
                        let id = answer
                            .as_ref()
                            .ok()
                            .and_then(|fault| fault["id"].as_str())
                            .map(str::to_owned);
                        self.applied.push(Applied {
                            service: service.clone(),
                            id: id.clone(),
                            rule: (**rule).clone(),
                        });
                        match answer {
                            Ok(_) => {
                                if self.fault_window.is_none() {
                                    let t = self.recorder.t();
                                    self.fault_window = Some((t, t));
                                }
                                self.recorder.record(
                                    "method",
                                    "fault",
                                    &step.name,
                                    id.is_some(),
                                    json!({"service": service, "id": id, "rule": rule}),
                                );
                                if id.is_none() {
                                    result = Err(format!(
                                        "{}: {service} answered without a fault id",
                                        step.name
                                    ));
                                    break;
                                }
                            }
                            Err(err) => {
                                self.recorder.record(
                                    "method",
                                    "fault",
                                    &step.name,
                                    false,
                                    json!(format!("{err:#}")),
                                );
                                result = Err(format!("{}: {err:#}", step.name));
                                break;
                            }
                        }
                    }
                    result
                }
                Action::Load {
                    scenario,
                    target,
                    background,
                    ..
                } => {
                    let base = if target.starts_with("http://") || target.starts_with("https://") {
                        target.clone()
                    } else {
                        match self.admin.targets.url(target) {
                            Ok(url) => url.to_owned(),
                            Err(err) => return Some(Stop::Failed(err.to_string())),
                        }
                    };
                    let handle = tokio::spawn(load(
                        (**scenario).clone(),
                        base,
                        step.name.clone(),
                        self.recorder.clone(),
                        self.broken_loads.clone(),
                    ));
                    self.recorder.record(
                        "method",
                        "load",
                        &step.name,
                        true,
                        json!(if *background {
                            "started in the background"
                        } else {
                            "started"
                        }),
                    );
                    if *background {
                        loads.push(handle);
                        Ok(())
                    } else {
                        tokio::select! {
                            done = handle => match done {
                                Ok(()) => match self.broken_loads.lock().expect("loads lock").first() {
                                    Some(broken) => Err(broken.clone()),
                                    None => Ok(()),
                                },
                                Err(err) => Err(format!("{}: {err}", step.name)),
                            },
                            _ = interrupted.changed() => return Some(Stop::Interrupted),
                        }
                    }
                }
                Action::Wait(duration) => {
                    self.recorder
                        .record("method", "wait", &step.name, true, json!(null));
                    tokio::select! {
                        _ = tokio::time::sleep(*duration) => Ok(()),
                        _ = interrupted.changed() => return Some(Stop::Interrupted),
                    }
                }
                Action::AwaitAlerts(most) => {
                    self.recorder
                        .record("method", "wait", &step.name, true, json!(null));
                    let deadline = tokio::time::Instant::now() + *most;
                    loop {
                        if self.all_fired() || tokio::time::Instant::now() >= deadline {
                            break Ok(());
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = interrupted.changed() => return Some(Stop::Interrupted),
                        }
                    }
                }
            };
            if let Err(reason) = result {
                return Some(Stop::Failed(reason));
            }
        }
        None
    }

    /// Whether every alert expected to fire has, and has reached the receiver it names.
    /// Waiting for the notification too keeps the fault on until the page is delivered: an
    /// alert that resolves within Alertmanager's group wait is never sent at all.
    fn all_fired(&self) -> bool {
        let seen = self.seen.lock().expect("seen lock").clone();
        self.plan
            .expect
            .iter()
            .zip(seen.iter())
            .all(|(e, s)| !e.fires || (s.fired_at.is_some() && self.notified(e, "firing")))
    }

    /// Whether `e` reached its receiver with `status` since the first fault; true when
    /// nothing listens for webhooks or the expectation names no receiver.
    fn notified(&self, e: &ExpectedAlert, status: &str) -> bool {
        self.inbox.as_ref().is_none_or(|inbox| {
            e.receiver.is_none() || inbox.first(e, status, self.first_fault()).is_some()
        })
    }

    /// Deletes every fault this run asked for, whatever happened; a fault that expired
    /// already counts as removed. A fault whose id never came back (its call timed out,
    /// say) is looked for among the service's faults by its rule, so one the service did
    /// apply is deleted too. Answers how many could not be removed, or not checked.
    async fn rollback(&mut self) -> usize {
        let known: Vec<&str> = self
            .applied
            .iter()
            .filter_map(|a| a.id.as_deref())
            .collect();
        let mut left = 0;
        for applied in &self.applied {
            let service = &applied.service;
            let listed = self.admin.list(service).await;
            let faults = listed
                .as_ref()
                .ok()
                .and_then(|l| l["faults"].as_array().cloned())
                .unwrap_or_default();
            let ids = match (&applied.id, &listed) {
                (Some(id), _) => vec![id.clone()],
                (None, Err(err)) => {
                    left += 1;
                    self.recorder.record(
                        "rollback",
                        "rollback",
                        service,
                        false,
                        json!(format!(
                            "cannot tell whether {service} applied the fault whose call failed \
                             ({err:#}); if it did, it expires by its TTL"
                        )),
                    );
                    continue;
                }
                (None, Ok(_)) => unclaimed_copies(&faults, &applied.rule, &known),
            };
            if ids.is_empty() {
                self.recorder.record(
                    "rollback",
                    "rollback",
                    service,
                    true,
                    json!("the fault whose call failed was not applied"),
                );
            }
            for id in ids {
                // How often it struck, for the journal: a fault that hit nothing proved
                // nothing.
                let injected = faults
                    .iter()
                    .find(|f| f["id"] == id.as_str())
                    .map_or(serde_json::Value::Null, |f| f["injected"].clone());
                let name = format!("{service} {id}");
                match self.admin.delete(service, &id).await {
                    Ok(existed) => {
                        if existed && injected == 0 {
                            self.deviations
                                .lock()
                                .expect("deviations lock")
                                .push(format!(
                                    "fault {id} on {service} struck nothing, so the run shows \
                                 nothing about it"
                                ));
                        }
                        self.recorder.record(
                            "rollback",
                            "rollback",
                            &name,
                            true,
                            json!({
                                "outcome": if existed { "deleted" } else { "already gone (expired or cleared)" },
                                "injected": injected,
                            }),
                        )
                    }
                    Err(err) => {
                        left += 1;
                        self.recorder.record(
                            "rollback",
                            "rollback",
                            &name,
                            false,
                            json!(format!("{err:#}; it expires by its TTL")),
                        )
                    }
                }
            }
        }
        if let Some((from, _)) = self.fault_window {
            self.fault_window = Some((from, self.recorder.t()));
        }
        left
    }

    /// Checks the `during` probes every interval until told to stop; a failure is a
    /// deviation.
    fn watch_during(&self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let checks: Vec<super::spec::Probe> = self.probes(Phase::During).cloned().collect();
        let interval = self.plan.hypothesis.interval;
        let sources = self.sources.clone();
        let recorder = self.recorder.clone();
        let deviations = self.deviations.clone();
        tokio::spawn(async move {
            if checks.is_empty() {
                return;
            }
            loop {
                for p in &checks {
                    let outcome = probe::check(p, &sources).await;
                    recorder.probe(Phase::During, &outcome);
                    if !outcome.held {
                        deviations.lock().expect("deviations lock").push(format!(
                            "during the method, {}: {}",
                            outcome.probe,
                            outcome.error.unwrap_or(outcome.observed)
                        ));
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    }

    /// Polls Alertmanager for every expected alert until told to stop, noting when each
    /// fired and resolved; an alert expected to stay silent that fires is a deviation.
    fn watch_alerts(&self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let expected = self.plan.expect.clone();
        let alertmanager = self.alertmanager.clone();
        let recorder = self.recorder.clone();
        let seen = self.seen.clone();
        let deviations = self.deviations.clone();
        tokio::spawn(async move {
            loop {
                for (i, e) in expected.iter().enumerate() {
                    let firing = match alertmanager.firing(e).await {
                        Ok(firing) => firing,
                        Err(err) => {
                            recorder.record("during", "alert", &e.describe(), false, json!(err));
                            // Not knowing is not the same as silent.
                            let unknown = format!("the state of {} is unknown", e.describe());
                            let mut deviations = deviations.lock().expect("deviations lock");
                            if !deviations.iter().any(|d| d.starts_with(&unknown)) {
                                deviations.push(format!("{unknown}: {err}"));
                            }
                            continue;
                        }
                    };
                    let mut seen = seen.lock().expect("seen lock");
                    let s = &mut seen[i];
                    if firing && s.fired_at.is_none() {
                        s.fired_at = Some(recorder.t());
                        recorder.record(
                            "during",
                            "alert",
                            &e.describe(),
                            e.fires,
                            json!("firing in Alertmanager"),
                        );
                        if !e.fires {
                            deviations
                                .lock()
                                .expect("deviations lock")
                                .push(format!("{} fired, and it should not have", e.describe()));
                        }
                    }
                    if !firing && s.fired_at.is_some() && s.resolved_at.is_none() {
                        s.resolved_at = Some(recorder.t());
                        recorder.record(
                            "after",
                            "alert",
                            &e.describe(),
                            true,
                            json!("resolved in Alertmanager"),
                        );
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(ALERT_POLL) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    }

    /// After the rollback: every expected alert must have fired in time and resolve in
    /// time (and reach its receiver, when the run listens), and the `after` probes must
    /// hold again within the settle time.
    async fn after(&self, interrupted: &mut watch::Receiver<bool>) {
        let (_, rolled_back) = self.fault_window.unwrap_or_default();
        let first_fault = self.fault_window.map(|(from, _)| from).unwrap_or_default();
        let settle_until = rolled_back + self.plan.hypothesis.settle.as_secs_f64();
        let alerts_until = self
            .plan
            .expect
            .iter()
            .filter(|e| e.fires)
            .map(|e| {
                let fired_by = first_fault + e.fires_within.as_secs_f64();
                let resolved_by = rolled_back + e.resolves_within.unwrap_or_default().as_secs_f64();
                fired_by.max(resolved_by)
            })
            .fold(0.0, f64::max);
        let mut probes_held = false;
        // Judged by the first check at or past the settle time at the latest: a pass later
        // on, while the alerts are still awaited, is too late to count.
        let mut probes_judged = false;
        loop {
            let now = self.recorder.t();
            if !probes_judged {
                let last_try = now >= settle_until;
                probes_held = self.after_probes_hold(last_try).await;
                probes_judged = probes_held || last_try;
            }
            let alerts_done = self
                .plan
                .expect
                .iter()
                .enumerate()
                .all(|(i, e)| self.alert_settled(i, e));
            if probes_judged && (alerts_done || now >= alerts_until) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(ALERT_POLL) => {}
                _ = interrupted.changed() => return,
            }
        }
        if !probes_held {
            self.deviations
                .lock()
                .expect("deviations lock")
                .push(format!(
                    "the steady state did not hold again within {} of the rollback",
                    sloop_duration::format(self.plan.hypothesis.settle)
                ));
        }
    }

    /// Checks the `after` probes once; failures are recorded, and become a deviation only
    /// on the last try.
    async fn after_probes_hold(&self, last_try: bool) -> bool {
        let mut all = true;
        for p in self.probes(Phase::After) {
            let outcome = probe::check(p, &self.sources).await;
            if outcome.held || last_try {
                self.recorder.probe(Phase::After, &outcome);
            }
            all &= outcome.held;
        }
        all
    }

    /// Whether nothing more can change for expected alert `i`.
    fn alert_settled(&self, i: usize, e: &ExpectedAlert) -> bool {
        if !e.fires {
            return true;
        }
        let seen = self.seen.lock().expect("seen lock")[i].clone();
        match (seen.fired_at, e.resolves_within) {
            (None, _) => false,
            (Some(_), None) => self.notified(e, "firing"),
            (Some(_), Some(_)) => {
                seen.resolved_at.is_some()
                    && self.notified(e, "firing")
                    && self.notified(e, "resolved")
            }
        }
    }

    /// When the first fault went in; never, when none did.
    fn first_fault(&self) -> f64 {
        self.fault_window.map_or(f64::INFINITY, |(from, _)| from)
    }

    fn alert_records(&self) -> Vec<AlertRecord> {
        let (first_fault, rolled_back) = self.fault_window.unwrap_or_default();
        let seen = self.seen.lock().expect("seen lock").clone();
        let mut deviations = self.deviations.lock().expect("deviations lock");
        self.plan
            .expect
            .iter()
            .zip(seen)
            .map(|(e, s)| {
                let notified = |status| {
                    self.inbox
                        .as_ref()
                        .and_then(|inbox| inbox.first(e, status, self.first_fault()))
                        .map(|n| n.t)
                };
                let (met, detail) = judge(
                    e,
                    &s,
                    first_fault,
                    rolled_back,
                    notified("firing"),
                    notified("resolved"),
                    self.inbox.is_some(),
                );
                if !met && e.fires {
                    deviations.push(format!("{}: {detail}", e.describe()));
                }
                AlertRecord {
                    alert: e.alert.clone(),
                    expected: e.describe(),
                    fires: e.fires,
                    fired_at: s.fired_at,
                    resolved_at: s.resolved_at,
                    notified_at: notified("firing"),
                    notified_resolved_at: notified("resolved"),
                    met,
                    detail,
                }
            })
            .collect()
    }

    /// The burn rate over 5m and 1m of every SLO a probe gates on, for the report's chart.
    async fn burn_series(&self) -> Vec<Series> {
        let end = self.recorder.t();
        let mut series = Vec::new();
        for p in &self.plan.hypothesis.probes {
            let Check::Slo { service, slo, .. } = &p.check else {
                continue;
            };
            let id = slo::rules::slo_id(&service.service, slo);
            if series.iter().any(|s: &Series| s.name.starts_with(&id)) {
                continue;
            }
            for window in [Duration::from_secs(300), Duration::from_secs(60)] {
                let query = format!(
                    "({}) / {}",
                    slo::promql::error_ratio(&slo.sli, window),
                    slo.error_budget()
                );
                let points =
                    range(&self.sources.prometheus, &query, self.recorder.start, end).await;
                series.push(Series {
                    name: format!("{id} burn over {}", slo::spec::prom_duration(window)),
                    points,
                });
            }
        }
        series
    }
}

/// The ids of listed faults with exactly `rule` that no known id of this run claims: what
/// a call that failed midway may have applied. (Another run's identical rule would match
/// too; deleting it early is the lesser harm than leaving this run's fault behind.)
fn unclaimed_copies(faults: &[serde_json::Value], rule: &Rule, known: &[&str]) -> Vec<String> {
    faults
        .iter()
        .filter(|f| serde_json::from_value::<Rule>(f["rule"].clone()).is_ok_and(|r| r == *rule))
        .filter_map(|f| f["id"].as_str())
        .filter(|id| !known.contains(id))
        .map(str::to_owned)
        .collect()
}

fn judge(
    e: &ExpectedAlert,
    s: &Seen,
    first_fault: f64,
    rolled_back: f64,
    notified: Option<f64>,
    notified_resolved: Option<f64>,
    listening: bool,
) -> (bool, String) {
    if !e.fires {
        return match s.fired_at {
            None => (true, "stayed silent, as expected".into()),
            Some(t) => (
                false,
                format!("fired at {t:.0} s; it should have stayed silent"),
            ),
        };
    }
    let Some(fired) = s.fired_at else {
        return (
            false,
            format!(
                "never fired (expected within {} of the first fault)",
                sloop_duration::format(e.fires_within)
            ),
        );
    };
    let took = fired - first_fault;
    if took > e.fires_within.as_secs_f64() {
        return (
            false,
            format!(
                "fired {took:.0} s after the first fault, later than {}",
                sloop_duration::format(e.fires_within)
            ),
        );
    }
    let mut detail = format!("fired {took:.0} s after the first fault");
    if listening && e.receiver.is_some() && notified.is_none() {
        return (
            false,
            format!(
                "{detail}, but its receiver `{}` was never notified",
                e.receiver.as_deref().unwrap_or_default()
            ),
        );
    }
    if let Some(within) = e.resolves_within {
        let Some(resolved) = s.resolved_at else {
            return (
                false,
                format!(
                    "{detail}, and had not resolved {} after the rollback",
                    sloop_duration::format(within)
                ),
            );
        };
        let after = resolved - rolled_back;
        if after > within.as_secs_f64() {
            return (
                false,
                format!(
                    "{detail}, resolved {after:.0} s after the rollback, later than {}",
                    sloop_duration::format(within)
                ),
            );
        }
        detail = format!("{detail}; resolved {after:.0} s after the rollback");
        if listening && e.receiver.is_some() && notified_resolved.is_none() {
            return (
                false,
                format!(
                    "{detail}, but no resolved notification reached `{}`",
                    e.receiver.as_deref().unwrap_or_default()
                ),
            );
        }
    }
    (true, detail)
}

/// Runs one load step to its end and records what it measured. A load that cannot run
/// goes on `broken`: the experiment did not do what it says.
async fn load(
    scenario: loadtest::scenario::Scenario,
    base: String,
    name: String,
    recorder: Recorder,
    broken: Arc<Mutex<Vec<String>>>,
) {
    let live = Arc::new(loadtest::engine::Live::default());
    match loadtest::engine::run(&scenario, &base, live, 1).await {
        Ok(result) => {
            let o = &result.overall;
            recorder.record(
                "method",
                "load",
                &name,
                true,
                json!(format!(
                    "finished: {} requests, {} failed, {} dropped, p99 {:.1} ms",
                    o.completed(),
                    o.failed,
                    o.dropped,
                    o.latency_ms(99.0)
                )),
            );
        }
        Err(err) => {
            recorder.record("method", "load", &name, false, json!(err.to_string()));
            broken
                .lock()
                .expect("loads lock")
                .push(format!("load step `{name}` failed: {err}"));
        }
    }
}

/// `query` every 5 s from `start` until `end` seconds after it, as (seconds since start,
/// value); an empty list when Prometheus cannot say.
async fn range(prometheus: &str, query: &str, start: Instant, end: f64) -> Vec<(f64, f64)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let began = now - start.elapsed().as_secs_f64();
    let (base, query) = (prometheus.to_owned(), query.to_owned());
    let points = tokio::task::spawn_blocking(move || {
        slo::evaluate::Prometheus::new(&base).points(
            &query,
            began,
            began + end,
            Duration::from_secs(5),
        )
    })
    .await;
    match points {
        Ok(Ok(points)) => points
            .into_iter()
            .map(|(t, v)| ((t - began).max(0.0), v))
            .collect(),
        _ => Vec::new(),
    }
}
