//! The real `sloop-user` binary as a child process, shared by the tests that need one.

#![allow(dead_code)] // each test file uses part of it

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running `sloop-user` with JSON logs on stdout, its address, and its stdout lines.
pub struct Service {
    child: Child,
    pub addr: String,
    logs: Option<JoinHandle<Vec<String>>>,
    db: PathBuf,
}

impl Service {
    /// Starts the binary on a fresh SQLite database with `env` added (where telemetry goes).
    pub fn start(env: &[(&str, &str)]) -> Self {
        let db = std::env::temp_dir().join(format!("sloop-process-{}.db", uuid::Uuid::new_v4()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_sloop-user"))
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", format!("sqlite://{}", db.display()))
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sloop-user");

        // The service logs its bound address; port 0 means we must read it from there.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("sloop-user exited before listening")
                .unwrap();
            let entry: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
            if entry["message"] == "listening" {
                break entry["address"].as_str().unwrap().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe; keep the lines.
        let logs = std::thread::spawn(move || lines.map_while(Result::ok).collect());
        Self {
            child,
            addr,
            logs: Some(logs),
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn sigterm(&self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    }

    /// Waits for the process to exit after SIGTERM; returns its stdout lines.
    pub async fn wait_for_clean_exit(mut self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "sloop-user did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(status.code(), Some(0), "clean exit after SIGTERM");
        let _ = std::fs::remove_file(&self.db);
        self.logs
            .take()
            .expect("logs are taken once")
            .join()
            .unwrap()
    }
}

impl Drop for Service {
    /// A test that fails half-way must not leave the process behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = std::fs::remove_file(&self.db);
    }
}
