//! The rules, tests and dashboards committed under alerts/ and dashboards/ are what
//! `slo generate` makes from slos/, and Prometheus' own promtool accepts and passes them.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{generate, promtool, promtool_tests_pass, repo, run};

#[test]
fn committed_artifacts_are_up_to_date() {
    let mut check = Command::new(env!("CARGO_BIN_EXE_slo"));
    check
        .current_dir(repo())
        .args(["generate", "slos", "--check"]);
    run(check);
}

#[test]
fn promtool_checks_and_tests_every_generated_rule_file() {
    let promtool = promtool();
    let out = generate(&repo().join("slos"));
    let rules: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".rules.yml"))
        .collect();
    assert!(!rules.is_empty(), "nothing generated in {}", out.display());
    for file in &rules {
        let mut check = Command::new(&promtool);
        check.args(["check", "rules"]).arg(file);
        assert!(run(check).contains("SUCCESS"));
    }
    assert!(promtool_tests_pass(&out) >= 2);
    let _ = std::fs::remove_dir_all(out);
}
