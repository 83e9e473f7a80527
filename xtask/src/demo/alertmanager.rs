//! A real Alertmanager for the demo: Debian's `prometheus-alertmanager`
//! (installed by `cargo xtask setup`, its service left disabled), run
//! inside the lab's node namespace on [`LISTEN`], where the agent posts its
//! alerts, so the traffic stays in the lab's namespaces. Clustering is off
//! (no gossip port); one receiver that notifies nobody: the demo reads the
//! alerts back with the package's `amtool`, run in the node namespace too
//! (as `netns-tests`' `collectors::Alertmanager` does through the API).
//!
//! Stopped (and reaped), its configuration and data removed, when dropped:
//! also when a scene fails. `lab down` would stop it anyway, with every
//! other process of the lab's namespaces.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use super::checks::wait_until;

/// Where it listens, in the node namespace.
pub const LISTEN: &str = "127.0.0.1:9093";
/// Its URL, for the agent and amtool in the node namespace.
pub const URL: &str = "http://127.0.0.1:9093";
/// The daemon.
const BIN: &str = "/usr/bin/prometheus-alertmanager";
/// Its command-line client, from the same package.
const AMTOOL: &str = "/usr/bin/amtool";
/// How long it gets to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Alertmanager, stopped when dropped.
pub struct Alertmanager {
    child: Option<Child>,
    netns: String,
    dir: PathBuf,
}

impl Alertmanager {
    /// Starts it in `netns`, its files in `dir` (created; removed when
    /// dropped), and waits until it says it is ready (`GET /-/ready`).
    pub fn start(netns: &str, dir: &Path) -> Result<Alertmanager> {
        ensure!(
            Path::new(BIN).is_file() && Path::new(AMTOOL).is_file(),
            "no {BIN} or {AMTOOL}: `cargo xtask setup` installs Debian's prometheus-alertmanager"
        );
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: nobody\n  group_wait: 1s\n  group_interval: 1s\n\
             receivers:\n  - name: nobody\n",
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let log = std::fs::File::create(dir.join("alertmanager.log")).context("its log")?;
        let args = [
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.join("data").display()),
            format!("--web.listen-address={LISTEN}"),
            // No cluster: it would gossip on 0.0.0.0:9094.
            "--cluster.listen-address=".to_owned(),
            "--log.level=warn".to_owned(),
        ];
        println!(
            "$ ip netns exec {netns} prometheus-alertmanager {} &",
            args.join(" ")
        );
        let child = Command::new("ip")
            .args(["netns", "exec", netns, BIN])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting prometheus-alertmanager")?;
        let mut am = Alertmanager {
            child: Some(child),
            netns: netns.to_owned(),
            dir: dir.to_owned(),
        };
        wait_until("Alertmanager ready", START_TIMEOUT, || {
            if let Some(status) = am.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("prometheus-alertmanager exited ({status}): {}", am.log());
            }
            Ok(if am.ready() { Ok(()) } else { Err(am.log()) })
        })?;
        Ok(am)
    }

    /// Whether `GET /-/ready` answers 200 (asked from inside the namespace).
    fn ready(&self) -> bool {
        let (host, port) = LISTEN.split_once(':').expect("host:port");
        let get = format!(
            "exec 3<>/dev/tcp/{host}/{port} && printf 'GET /-/ready HTTP/1.0\\r\\n\\r\\n' >&3 \
             && head -n 1 <&3"
        );
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "timeout",
                "2",
                "bash",
                "-c",
                &get,
            ])
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(" 200 "))
    }

    /// Its output so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("alertmanager.log")).unwrap_or_default()
    }

    /// `amtool ARGS` against it, in the node namespace: the command.
    fn amtool(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, AMTOOL])
            .arg(format!("--alertmanager.url={URL}"))
            .args(args);
        c
    }

    /// Shows `amtool alert query ARGS` (the alerts as Alertmanager has
    /// them).
    pub fn show(&self, args: &[&str]) -> Result<()> {
        println!(
            "$ ip netns exec {} amtool --alertmanager.url={URL} alert query {}",
            self.netns,
            args.join(" ")
        );
        let status = self
            .amtool(&["alert", "query"])
            .args(args)
            .status()
            .context("running amtool")?;
        ensure!(status.success(), "amtool alert query failed ({status})");
        Ok(())
    }

    /// Its active alerts (`amtool alert query -o json`: API v2
    /// `gettableAlert`s).
    pub fn alerts(&self) -> Result<Vec<Value>> {
        let out = self
            .amtool(&["alert", "query", "-o", "json"])
            .output()
            .context("running amtool")?;
        ensure!(
            out.status.success(),
            "amtool alert query failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
        let v: Value = serde_json::from_slice(&out.stdout).context("amtool's JSON")?;
        v.as_array().cloned().context("amtool's answer is no list")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `ip netns exec` execs the daemon: this is its PID.
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
