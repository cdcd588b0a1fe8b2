//! A real Prometheus and Alertmanager for tests (the Debian packages), each on a free
//! loopback port with its data in a temporary directory, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The repository's root, for its `alerts/` and `slos/`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first of `names` that runs, or `$env`; panics saying how to install it.
pub fn tool(env: &str, names: &[&str], package: &str) -> String {
    if let Ok(path) = std::env::var(env) {
        return path;
    }
    for name in names {
        if Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
        {
            return (*name).to_owned();
        }
    }
    panic!(
        "{} is not installed: `apt-get install {package}` (or run ./scripts/test.sh), or set {env}",
        names[0]
    );
}

/// A server process with a temporary directory.
pub struct Server {
    child: Child,
    pub url: String,
    dir: PathBuf,
}

impl Server {
    /// Where it keeps its configuration and data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's own output, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sloop-{kind}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

fn spawn(binary: &str, args: Vec<String>, dir: PathBuf, package: &str) -> Server {
    let port = free_port();
    let log = std::fs::File::create(dir.join("server.log")).expect("create the server log");
    let child = Command::new(binary)
        .args(args.iter().map(|a| a.replace("{port}", &port.to_string())))
        .stdout(Stdio::from(log.try_clone().expect("log handle")))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `{binary}` ({e}): apt-get install {package}, or run ./scripts/test.sh"
            )
        });
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        dir,
    }
}

/// Polls `check` every 200 ms until it holds; fails after 30 s with `server`'s log,
/// saying it did not `what`.
async fn wait_until<F: Future<Output = bool>>(server: &Server, what: &str, check: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{} did not {what} within 30 s:\n{}",
            server.url,
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `{url}/-/ready` answers 200.
pub async fn wait_ready(server: &Server) {
    let url = format!("{}/-/ready", server.url);
    wait_until(server, "become ready", || async {
        reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
}

/// Prometheus with `config` (YAML) as its configuration file.
pub async fn prometheus(config: &str) -> Server {
    let binary = tool("PROMETHEUS", &["prometheus"], "prometheus");
    let dir = temp_dir("prometheus");
    std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
    let args = vec![
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        "--web.listen-address=127.0.0.1:{port}".to_owned(),
        // Keeps the exemplars the services' OpenMetrics exposition carries.
        "--enable-feature=exemplar-storage".to_owned(),
    ];
    let server = spawn(&binary, args, dir, "prometheus");
    wait_ready(&server).await;
    server
}

/// Waits until `prometheus` has scraped `job` successfully once, so a query made next
/// sees the job's series instead of no data.
pub async fn wait_scraped(prometheus: &Server, job: &str) {
    let query = format!("up{{job=\"{job}\"}} == 1");
    let scraped = || async {
        let answer: Option<serde_json::Value> = async {
            reqwest::Client::new()
                .get(format!("{}/api/v1/query", prometheus.url))
                .query(&[("query", query.as_str())])
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        }
        .await;
        answer
            .as_ref()
            .and_then(|a| a["data"]["result"].as_array())
            .is_some_and(|series| !series.is_empty())
    };
    wait_until(prometheus, &format!("scrape job {job}"), scraped).await;
}

/// `alerts/alertmanager.yml` as the repository has it, its webhooks pointed at `webhook`
/// (instead of `http://127.0.0.1:9095`) and its waits shortened, so a test sees in seconds
/// what production sees in minutes.
pub fn alertmanager_config_for_tests(webhook: &str) -> String {
    std::fs::read_to_string(repo_root().join("alerts/alertmanager.yml"))
        .expect("read alerts/alertmanager.yml")
        .replace("http://127.0.0.1:9095", webhook)
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_wait: 10s", "group_wait: 1s")
        .replace("group_interval: 5m", "group_interval: 1s")
}

/// Alertmanager with `config` (YAML), clustering off.
pub async fn alertmanager(config: &str) -> Server {
    let binary = tool(
        "ALERTMANAGER",
        &["prometheus-alertmanager", "alertmanager"],
        "prometheus-alertmanager",
    );
    let dir = temp_dir("alertmanager");
    std::fs::write(dir.join("alertmanager.yml"), config).expect("write alertmanager.yml");
    let args = vec![
        format!("--config.file={}", dir.join("alertmanager.yml").display()),
        format!("--storage.path={}", dir.join("data").display()),
        "--web.listen-address=127.0.0.1:{port}".to_owned(),
        "--cluster.listen-address=".to_owned(),
    ];
    let server = spawn(&binary, args, dir, "prometheus-alertmanager");
    wait_ready(&server).await;
    server
}

/// The result of an instant PromQL query; fails the test on a query Prometheus refuses.
pub async fn query(prometheus: &str, promql: &str) -> serde_json::Value {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "success", "{promql}: {body}");
    body["data"]["result"].clone()
}
