//! OpenSLO's own example files, as their authors wrote them (`tests/fixtures/openslo`,
//! origin noted there): the SDK's example reads, with its calendar week and time slices; the
//! spec repository's examples, whose metric sources are the placeholder `type: Any`, are
//! refused with the line and what sloop supports, and read once a Prometheus query fills the
//! placeholder; the rules for each budgeting method and window pass promtool.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use slo::calendar::CalendarUnit;
use slo::spec::{Budgeting, ServiceSlos, Sli, Window, load_path};
use support::{generate, promtool, promtool_tests_pass, run, tempdir, validate};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openslo")
        .join(name)
}

/// The example with its `type: Any` placeholders filled with Prometheus queries (good
/// events first, then total, in the order the examples write them).
fn with_prometheus(name: &str) -> PathBuf {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let text = text
        .replace("type: Any", "type: Prometheus")
        .replacen(
            "query: Any",
            r#"query: 'sum(rate(http_requests_total{code!~"5.."}[{{window}}]))'"#,
            1,
        )
        .replacen(
            "query: Any",
            "query: 'sum(rate(http_requests_total[{{window}}]))'",
            1,
        );
    assert!(!text.contains("Any #"), "{name} has more placeholders");
    let dir = tempdir();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn only(services: &[ServiceSlos]) -> &slo::spec::Slo {
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].slos.len(), 1);
    &services[0].slos[0]
}

#[test]
fn the_sdk_example_reads_with_its_calendar_week_and_time_slices() {
    let (ok, text) = validate(&fixture("go-sdk/slos.yaml"));
    assert!(ok, "{text}");
    let services = load_path(&fixture("go-sdk/slos.yaml")).unwrap();
    let slo = only(&services);
    assert_eq!(services[0].service, "web");
    assert_eq!(slo.name, "web-availability");
    assert!((slo.objective - 0.995).abs() < 1e-12);
    assert_eq!(
        slo.budgeting,
        Budgeting::Timeslices {
            slice: Duration::from_secs(60),
            slice_objective: 0.95
        }
    );
    let Window::Calendar(calendar) = &slo.window else {
        panic!("{:?}", slo.window)
    };
    assert_eq!(calendar.unit, CalendarUnit::Week);
    assert_eq!(calendar.zone.iana_name(), Some("America/New_York"));
    assert_eq!(calendar.anchor.to_string(), "2022-01-01T12:00:00");
    // Its counters are read bare (`sum(http_requests{…})`, counter: true): sloop rates them.
    let Sli::Ratio { errors, total } = &slo.sli else {
        panic!("{:?}", slo.sli)
    };
    assert_eq!(
        total,
        r#"sum(rate(http_requests{k8s_cluster="prod",component="web"}[{{window}}]))"#
    );
    assert!(errors.contains(r#"code=~"2xx|4xx""#), "{errors}");
}

#[test]
fn placeholder_sources_are_refused_with_the_line_and_what_is_supported() {
    for (name, line) in [
        ("occurences-slo.yaml", 10),
        ("ratio-timeslices.yaml", 10),
        (
            "treat-low-traffic-as-equally-important-timeslices-slo.yaml",
            8,
        ),
    ] {
        let (ok, text) = validate(&fixture(name));
        assert!(!ok, "{name}: {text}");
        let at = format!("{name}:{line}: SLO[");
        assert!(text.contains(&at), "{name}: expected {at} in {text}");
        assert!(
            text.contains("metricSource type `Any` is not supported")
                && text.contains("type: Prometheus"),
            "{name}: {text}"
        );
    }
}

#[test]
fn each_budgeting_method_reads_once_prometheus_fills_the_placeholder() {
    let occurrences = with_prometheus("occurences-slo.yaml");
    let slo = only(&load_path(&occurrences).unwrap()).clone();
    assert_eq!(slo.budgeting, Budgeting::Occurrences);

    let ratio = with_prometheus("ratio-timeslices.yaml");
    let slo = only(&load_path(&ratio).unwrap()).clone();
    assert_eq!(
        slo.budgeting,
        Budgeting::RatioTimeslices {
            slice: Duration::from_secs(60)
        }
    );
    assert_eq!(
        slo.window,
        Window::Rolling(Duration::from_secs(14 * 86_400))
    );

    let low_traffic = with_prometheus("treat-low-traffic-as-equally-important-timeslices-slo.yaml");
    let slo = only(&load_path(&low_traffic).unwrap()).clone();
    assert!(matches!(slo.budgeting, Budgeting::Timeslices { .. }));
    assert!(matches!(&slo.window, Window::Calendar(c) if c.unit == CalendarUnit::Week));

    // Its author wrote `duration: 1m` meaning a month; in OpenSLO `m` is minutes.
    let minute = with_prometheus("budgeting-method-timeslices-slo.yaml");
    let (ok, text) = validate(&minute);
    assert!(!ok);
    assert!(
        text.contains(".spec.timeWindow") && text.contains("months are written 1M"),
        "{text}"
    );
    assert!(!text.contains(":0:"), "{text}");

    for spec in [occurrences, ratio, low_traffic, minute] {
        let _ = std::fs::remove_dir_all(spec.parent().unwrap());
    }
}

#[test]
fn rules_for_slices_and_calendar_windows_pass_promtool() {
    for example in [
        "ratio-timeslices.yaml",
        "treat-low-traffic-as-equally-important-timeslices-slo.yaml",
    ] {
        let spec = with_prometheus(example);
        let out = generate(&spec);
        let rules: Vec<PathBuf> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".rules.yml"))
            .collect();
        assert_eq!(rules.len(), 1, "{example}");
        let mut check = Command::new(promtool());
        check.args(["check", "rules"]).arg(&rules[0]);
        assert!(run(check).contains("SUCCESS"));
        // The zero-traffic test: no NaN where there is no traffic, for these rules too.
        assert_eq!(promtool_tests_pass(&out), 1, "{example}");
        let _ = std::fs::remove_dir_all(out);
        let _ = std::fs::remove_dir_all(spec.parent().unwrap());
    }
}
