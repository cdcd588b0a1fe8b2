//! The rules, tests and dashboards committed under alerts/ and dashboards/ are what
//! `slo generate` makes from slos/, and Prometheus' own promtool accepts and passes them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn promtool() -> String {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    if Command::new(&promtool).arg("--version").output().is_err() {
        panic!(
            "`{promtool}` is not installed: apt-get install prometheus, or run ./scripts/test.sh"
        );
    }
    promtool
}

fn run(mut command: Command) -> String {
    let out = command.output().expect("run command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

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
    let out = tempdir();
    let mut generate = Command::new(env!("CARGO_BIN_EXE_slo"));
    generate
        .current_dir(repo())
        .args(["generate", "slos", "--rules-dir"])
        .arg(&out)
        .arg("--dashboards-dir")
        .arg(&out);
    run(generate);

    let files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let rules: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".rules.yml"))
        .collect();
    let tests: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".test.yml"))
        .collect();
    assert!(
        !rules.is_empty() && tests.len() >= 2,
        "generated: {files:?}"
    );
    for file in &rules {
        let mut check = Command::new(&promtool);
        check.args(["check", "rules"]).arg(file);
        assert!(run(check).contains("SUCCESS"));
    }
    // Each test file takes promtool tens of seconds; run them side by side.
    let handles: Vec<_> = tests
        .into_iter()
        .map(|file| {
            let (promtool, file) = (promtool.clone(), file.clone());
            std::thread::spawn(move || {
                let mut test = Command::new(&promtool);
                test.current_dir(file.parent().unwrap())
                    .args(["test", "rules"])
                    .arg(&file);
                run(test)
            })
        })
        .collect();
    for handle in handles {
        assert!(handle.join().unwrap().contains("SUCCESS"));
    }
    let _ = std::fs::remove_dir_all(out);
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("slo-generated-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
