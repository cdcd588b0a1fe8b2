//! A real Kafka-protocol broker for tests: Tansu, started on a free loopback port with its
//! SQLite storage in a temporary directory, so messages and committed offsets survive a
//! restart in the middle of a test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::bus::BusUrl;

/// How to get the broker when it is missing.
const INSTALL: &str = "run ./scripts/test.sh, or `source scripts/lib.sh && ensure_tansu`, which \
                       builds Tansu 0.6.0 with the fix in third_party/tansu into ~/.cache/sloop";

/// Where `ensure_tansu` (scripts/lib.sh) builds the patched broker, under the home folder.
const PATCHED_BUILD: &str = ".cache/sloop/tansu-0.6.0-sloop3/bin/tansu";

/// A running Tansu broker, stopped when dropped.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    binary: PathBuf,
    /// Internal panics already answered with a restart.
    panics_seen: usize,
}

impl Broker {
    /// Starts a broker and waits until it accepts connections. Panics, saying how to
    /// install it, when the `tansu` binary is missing.
    pub async fn start() -> Self {
        let binary = find_binary().unwrap_or_else(|| {
            panic!("the Tansu broker is not installed (set TANSU_BIN or put `tansu` on PATH): {INSTALL}")
        });
        let dir =
            std::env::temp_dir().join(format!("sloop-tansu-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create the broker's directory");
        let port = free_port();
        let mut broker = Self {
            child: None,
            port,
            dir,
            binary,
            panics_seen: 0,
        };
        broker.launch().await;
        broker
    }

    /// `kafka://127.0.0.1:PORT`.
    pub fn url(&self) -> BusUrl {
        BusUrl::Kafka {
            bootstrap: self.bootstrap(),
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 10 s); its data stays.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }

    /// Starts it again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Restarts the broker if it panicked inside since the last look, as a supervisor
    /// (systemd, Kubernetes) would. Unpatched Tansu 0.6 panics in its storage task
    /// (`tansu-storage` service.rs:337, `unreachable!`) and then serves no requests while
    /// its process lives on; third_party/tansu fixes that, and this stays for a broker
    /// found elsewhere. Data and offsets survive, so what the tests check (nothing lost,
    /// nothing applied twice, order kept) must hold across it. Returns whether it restarted.
    pub async fn restart_if_crashed(&mut self) -> bool {
        let panics = self.log().matches("panicked at").count();
        if panics <= self.panics_seen {
            return false;
        }
        self.panics_seen = panics;
        eprintln!("the Tansu broker panicked internally; restarting it as a supervisor would");
        self.restart().await;
        true
    }

    /// The broker's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    async fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .expect("open the broker log");
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&self.binary)
            .current_dir(&self.dir)
            .args([
                "broker",
                "--cluster-id",
                "sloop-test",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &listener,
                // Relative to the working directory, as Tansu reads it.
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(log.try_clone().expect("clone the log handle")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL}", self.binary.display()));
        self.child = Some(child);
        self.wait_until_ready().await;
    }

    async fn wait_until_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("the Tansu broker exited with {status}:\n{}", self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Tansu broker did not listen within 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `TANSU_BIN`, else the patched build, else a `tansu` on PATH or in cargo's bin folder
/// (an unpatched 0.6.0 works, but its storage can stop after one failed request).
fn find_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return Some(PathBuf::from(path));
    }
    if let Some(patched) = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(PATCHED_BUILD))
        .filter(|p| p.is_file())
    {
        return Some(patched);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tansu"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
        Some(cargo_home.join("bin/tansu")).filter(|p| p.is_file())
    })
}

/// A port nobody listens on right now. The broker must advertise its real port, so port 0
/// (the kernel's choice) cannot be passed to it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
