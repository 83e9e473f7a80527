//! Real collectors for the flow-export acceptance tests: `nfcapd` (Debian
//! `nfdump`) receives IPFIX and `nfdump` decodes it, and a real `prometheus`
//! server scrapes `/metrics`; a real Alertmanager receives alerts.
//!
//! Each runs inside a given network namespace (a `Command` that enters it
//! before exec: `bulkhead_netkit::NsHandle::command`),
//! bound to that namespace's `127.0.0.1` only, with their files in a fresh
//! temporary directory. Dropping one (also while a test panics) stops the
//! process, reaps it and removes the directory. `cargo xtask setup`
//! installs their packages.
//!
//! Sockets that must live in the namespace (a UDP exporter, a `/metrics`
//! server, an HTTP client) are made with [`in_netns`]: the closure runs on a
//! short-lived thread that has entered the namespace, and a socket it creates
//! stays in that namespace wherever it is used afterwards.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use bulkhead_netkit::NsHandle;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// How long [`Nfcapd::start`] and [`Prometheus::start`] wait for the
/// process to listen.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a collector gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Seconds between `nfcapd` file rotations (`-t`; 2 is its minimum). A
/// record becomes readable through [`Nfcapd::records`] once the file it was
/// written to is rotated, so at most this long after it arrived.
pub const NFCAPD_ROTATE_SECS: u32 = 2;

/// Runs `f` on a new thread that has entered network namespace `netns`
/// (`/run/netns/NAME`, as `ip netns add` makes it) and returns its result.
/// The calling thread, and so the host's namespace, is not touched; sockets
/// `f` creates stay in `netns`.
pub fn in_netns<T, F>(netns: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    Ok(NsHandle::open(netns)?.run(f)?)
}

/// A TCP port on `127.0.0.1` that is free in `netns` right now.
pub fn free_tcp_port(netns: &str) -> Result<u16> {
    let listener = in_netns(netns, || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))??;
    Ok(listener.local_addr()?.port())
}

/// A UDP port on `127.0.0.1` that is free in `netns` right now.
pub fn free_udp_port(netns: &str) -> Result<u16> {
    let socket = in_netns(netns, || UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)))??;
    Ok(socket.local_addr()?.port())
}

/// A fresh, empty directory under the system temporary directory, removed
/// by [`Drop`].
struct TempDir(PathBuf);

impl TempDir {
    fn new(kind: &str) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("bulkhead-{kind}-{}-{n}", std::process::id()));
        // A leftover of an earlier process with the same pid.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A collector process started in a network namespace; stopped and reaped
/// on drop.
struct Daemon {
    /// `None` once reaped.
    child: Option<Child>,
    name: &'static str,
    log: PathBuf,
}

impl Daemon {
    /// Runs `program args` in `netns` with stdout and stderr appended to
    /// `log`.
    fn spawn(
        name: &'static str,
        netns: &str,
        program: &str,
        args: &[&str],
        log: PathBuf,
    ) -> Result<Self> {
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = NsHandle::open(netns)?
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot run {program} in network namespace {netns}"))?;
        Ok(Self {
            child: Some(child),
            name,
            log,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process's output so far.
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails (with the process's output) if it has exited.
    fn check_running(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} was stopped", self.name);
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!("{} exited ({status}):\n{}", self.name, self.log());
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; reaps the process.
    /// Returns whether it exited on SIGTERM.
    fn stop(&mut self) -> Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(true);
        };
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        // The child is not reaped yet, so its pid cannot have been reused.
        let pid = Pid::from_raw(i32::try_from(child.id())?);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(true);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait()?;
        Ok(false)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("cannot stop {}: {e:#}", self.name);
        }
    }
}

/// Polls `ready` every 50 ms until it returns true, the daemon exits, or
/// [`START_TIMEOUT`] passes.
fn wait_ready(daemon: &mut Daemon, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        daemon.check_running()?;
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not become ready within {START_TIMEOUT:?}:\n{}",
                daemon.name,
                daemon.log()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// One flow record as `nfdump -o json` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct NfRecord {
    /// Source address (`src4_addr` or `src6_addr`).
    pub src: IpAddr,
    /// Destination address (`dst4_addr` or `dst6_addr`).
    pub dst: IpAddr,
    /// Source port (`src_port`); 0 when nfdump shows none (ICMP).
    pub sport: u16,
    /// Destination port (`dst_port`); 0 when nfdump shows none (ICMP shows
    /// `icmp_type` and `icmp_code` instead, see [`NfRecord::raw`]).
    pub dport: u16,
    /// IP protocol number (`proto`).
    pub proto: u8,
    /// Packets (`in_packets`: the IPFIX `packetDeltaCount`).
    pub packets: u64,
    /// Bytes (`in_bytes`: the IPFIX `octetDeltaCount`).
    pub bytes: u64,
    /// Start of the flow (`first`, millisecond resolution); the epoch when
    /// the exporter sent no start time.
    pub first: SystemTime,
    /// End of the flow (`last`).
    pub last: SystemTime,
    /// Every field nfdump printed, as printed (`ip4_router` is the
    /// exporter's address, `received` when nfcapd got the record,
    /// `out_packets`/`out_bytes` for bidirectional counters, ...).
    pub raw: BTreeMap<String, Value>,
}

impl NfRecord {
    /// Builds a record from one object of `nfdump -o json` (run with
    /// `TZ=UTC`, as [`nfdump_file`] does: nfdump prints local time without
    /// an offset).
    pub fn from_json(object: &serde_json::Map<String, Value>) -> Result<Self> {
        let raw: BTreeMap<String, Value> =
            object.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let str_field = |names: &[&str]| -> Result<&str> {
            names
                .iter()
                .find_map(|n| raw.get(*n).and_then(Value::as_str))
                .with_context(|| format!("no {names:?} in nfdump record {object:?}"))
        };
        let num = |name: &str| -> Result<u64> {
            match raw.get(name) {
                None => Ok(0),
                Some(v) => v
                    .as_u64()
                    .with_context(|| format!("{name} is not a number in {object:?}")),
            }
        };
        let ip = |names: &[&str]| -> Result<IpAddr> {
            let s = str_field(names)?;
            s.parse()
                .with_context(|| format!("bad address {s:?} in nfdump record"))
        };
        Ok(Self {
            src: ip(&["src4_addr", "src6_addr"])?,
            dst: ip(&["dst4_addr", "dst6_addr"])?,
            sport: u16::try_from(num("src_port")?)?,
            dport: u16::try_from(num("dst_port")?)?,
            proto: u8::try_from(num("proto")?)?,
            packets: num("in_packets")?,
            bytes: num("in_bytes")?,
            first: parse_nfdump_time(str_field(&["first"])?)?,
            last: parse_nfdump_time(str_field(&["last"])?)?,
            raw,
        })
    }
}

/// Parses nfdump's `2026-11-22T17:50:31.000` (in UTC, see
/// [`NfRecord::from_json`]).
pub fn parse_nfdump_time(s: &str) -> Result<SystemTime> {
    let bad = || anyhow!("bad nfdump time {s:?}");
    let (date, time) = s.split_once('T').ok_or_else(bad)?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(day)), None) = (d.next(), d.next(), d.next(), d.next())
    else {
        return Err(bad());
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(str::parse::<i64>);
    let (Some(Ok(h)), Some(Ok(min)), Some(Ok(sec)), None) =
        (t.next(), t.next(), t.next(), t.next())
    else {
        return Err(bad());
    };
    ensure!(
        !frac.is_empty() && frac.len() <= 9 && frac.bytes().all(|b| b.is_ascii_digit()),
        "bad fraction in nfdump time {s:?}"
    );
    let nanos: u32 = format!("{frac:0<9}").parse()?;
    // Days from 1970-01-01 to y-m-day (proleptic Gregorian; H. Hinnant's
    // days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3_600 + min * 60 + sec;
    let secs = u64::try_from(secs).map_err(|_| bad())?;
    Ok(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Decodes one nfcapd file with `nfdump -r FILE -o json`.
pub fn nfdump_file(file: &Path) -> Result<Vec<NfRecord>> {
    let out = Command::new("nfdump")
        .env("TZ", "UTC")
        .arg("-r")
        .arg(file)
        .args(["-o", "json"])
        .output()
        .context("cannot run nfdump (is the `nfdump` package installed? `cargo xtask setup`)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "nfdump -r {} failed ({}): {}{}",
        file.display(),
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    // An empty file prints `[\nNo matching flows\n]`, which is not JSON.
    if stdout.contains("No matching flows") {
        return Ok(Vec::new());
    }
    let objects: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&stdout)
        .with_context(|| format!("nfdump -o json printed no JSON array:\n{stdout}"))?;
    objects.iter().map(NfRecord::from_json).collect()
}

/// `nfcapd` collecting IPFIX (and NetFlow v5/v9) on `127.0.0.1:port` of a
/// network namespace.
///
/// It runs as `nfcapd -b 127.0.0.1 -p PORT -w DIR -t 2`: it writes into
/// `nfcapd.current.PID` and renames that to `nfcapd.YYYYMMDDhhmmss` every
/// [`NFCAPD_ROTATE_SECS`] and when it exits on SIGTERM; only renamed files
/// are complete, so [`Nfcapd::records`] reads those. [`Nfcapd::stop`] flushes
/// everything received.
pub struct Nfcapd {
    // Field order: the process stops before its directory goes.
    daemon: Daemon,
    port: u16,
    flows: PathBuf,
    /// Records of the files decoded so far (rotated files never change).
    decoded: Mutex<BTreeMap<PathBuf, Vec<NfRecord>>>,
    _dir: TempDir,
}

impl Nfcapd {
    /// Starts `nfcapd` in `netns` on UDP `127.0.0.1:port` and waits until
    /// its socket is bound.
    pub fn start(netns: &str, port: u16) -> Result<Self> {
        let dir = TempDir::new("nfcapd")?;
        let flows = dir.0.join("flows");
        fs::create_dir(&flows)?;
        let flows_arg = flows.to_str().context("temp dir is not UTF-8")?;
        let (port_arg, rotate) = (port.to_string(), NFCAPD_ROTATE_SECS.to_string());
        let args = [
            "-b",
            "127.0.0.1",
            "-p",
            &port_arg,
            "-w",
            flows_arg,
            "-t",
            &rotate,
        ];
        let mut daemon = Daemon::spawn("nfcapd", netns, "nfcapd", &args, dir.0.join("nfcapd.log"))?;
        let pid = daemon.pid().context("nfcapd not running")?;
        // The child enters the namespace and execs nfcapd, so once the
        // process is nfcapd, /proc/PID/net/udp lists the namespace's sockets.
        let local = format!("0100007F:{port:04X}");
        wait_ready(&mut daemon, || {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let udp = fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap_or_default();
            comm.trim() == "nfcapd"
                && udp
                    .lines()
                    .any(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        })?;
        Ok(Self {
            daemon,
            port,
            flows,
            decoded: Mutex::default(),
            _dir: dir,
        })
    }

    /// Where exporters send to: `127.0.0.1:port` (inside the namespace).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// The directory nfcapd writes its files into.
    pub fn flow_dir(&self) -> &Path {
        &self.flows
    }

    /// nfcapd's output so far (it logs each new exporter and, per rotation,
    /// counts of flows, sequence errors and bad packets).
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// The completed (rotated) files, oldest first.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.flows)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let rotated = name.strip_prefix("nfcapd.").is_some_and(|stamp| {
                !stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit())
            });
            if rotated {
                files.push(self.flows.join(name));
            }
        }
        files.sort();
        Ok(files)
    }

    /// Every record in the completed files: all received once
    /// [`Nfcapd::stop`] returned, otherwise those received up to the last
    /// rotation (at most [`NFCAPD_ROTATE_SECS`] ago).
    pub fn records(&self) -> Result<Vec<NfRecord>> {
        let mut decoded = self.decoded.lock().unwrap_or_else(|e| e.into_inner());
        let mut records = Vec::new();
        for file in self.files()? {
            if !decoded.contains_key(&file) {
                let new = nfdump_file(&file)?;
                decoded.insert(file.clone(), new);
            }
            records.extend_from_slice(&decoded[&file]);
        }
        Ok(records)
    }

    /// Polls [`Nfcapd::records`] every 500 ms until `predicate` holds, and
    /// returns them; fails after `timeout` with what was received.
    pub fn wait_for_records(
        &self,
        mut predicate: impl FnMut(&[NfRecord]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<NfRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            let records = self.records()?;
            if predicate(&records) {
                return Ok(records);
            }
            if Instant::now() >= deadline {
                bail!(
                    "nfcapd records did not match within {timeout:?}: {records:#?}\nnfcapd log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// Stops nfcapd (SIGTERM: it writes and renames its current file) and
    /// reaps it; afterwards [`Nfcapd::records`] has everything it received.
    /// Idempotent.
    pub fn stop(&mut self) -> Result<()> {
        ensure!(
            self.daemon.stop()?,
            "nfcapd did not exit on SIGTERM within {STOP_GRACE:?}; killed:\n{}",
            self.log()
        );
        Ok(())
    }
}

/// A series of a Prometheus instant query: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// A Prometheus server in a network namespace, scraping targets there.
pub struct Prometheus {
    daemon: Daemon,
    netns: String,
    addr: SocketAddr,
    _dir: TempDir,
}

/// The scrape job name [`Prometheus::start`] configures (the `job` label).
pub const PROMETHEUS_JOB: &str = "bulkhead";

impl Prometheus {
    /// Starts `prometheus` in `netns` scraping `targets` (`host:port`,
    /// path `/metrics`, job [`PROMETHEUS_JOB`]) every `scrape_interval`,
    /// its web API on a free port of `127.0.0.1`, and waits for `/-/ready`.
    ///
    /// Even static targets go through service discovery, which hands
    /// updates over at most every 5 s (fixed in 2.42), and the scrape
    /// manager applies them every `--scrape.discovery-reload-interval`
    /// (hidden flag, 5 s by default, 500 ms here); so the first scrape
    /// comes about 5 to 6 s plus up to one interval after the start: give
    /// [`Prometheus::wait_for`] 15 s or more.
    pub fn start(netns: &str, targets: &[&str], scrape_interval: Duration) -> Result<Self> {
        let dir = TempDir::new("prometheus")?;
        let interval_ms = scrape_interval.as_millis().max(1);
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: {interval_ms}ms\n  scrape_timeout: {interval_ms}ms\n  \
             evaluation_interval: {interval_ms}ms\n\
             scrape_configs:\n  - job_name: {PROMETHEUS_JOB}\n    static_configs:\n      \
             - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.0.join("prometheus.yml");
        fs::write(&config_path, config)?;
        let port = free_tcp_port(netns)?;
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let utf8 = |p: &Path| -> Result<String> {
            Ok(p.to_str().context("temp dir is not UTF-8")?.to_owned())
        };
        let args = [
            format!("--config.file={}", utf8(&config_path)?),
            format!("--storage.tsdb.path={}", utf8(&dir.0.join("data"))?),
            format!("--web.listen-address={addr}"),
            "--scrape.discovery-reload-interval=500ms".to_owned(),
            "--log.level=warn".to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = Daemon::spawn(
            "prometheus",
            netns,
            "prometheus",
            &args,
            dir.0.join("prometheus.log"),
        )?;
        let mut prometheus = Self {
            daemon,
            netns: netns.to_owned(),
            addr,
            _dir: dir,
        };
        let (netns, addr) = (prometheus.netns.clone(), prometheus.addr);
        wait_ready(&mut prometheus.daemon, || {
            http_get(&netns, addr, "/-/ready").is_ok_and(|(status, _)| status == 200)
        })?;
        Ok(prometheus)
    }

    /// The web API's address (`127.0.0.1:PORT` inside the namespace).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Prometheus's output so far (warnings and errors).
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// `GET path` (with its query string) from the web server: the HTTP
    /// status and body, e.g. `/api/v1/targets` to see scrape errors.
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        http_get(&self.netns, self.addr, path)
    }

    /// Evaluates `expr` now through `/api/v1/query`: one [`Sample`] per
    /// series of a vector (labels include `__name__`, `job`, `instance`),
    /// or one with no labels for a scalar.
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>> {
        let (status, body) = self.get(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("query {expr:?}: HTTP {status}, not JSON: {body}"))?;
        ensure!(
            status == 200 && v["status"] == "success",
            "query {expr:?} failed (HTTP {status}): {body}"
        );
        let data = &v["data"];
        let value = |pair: &Value| -> Result<f64> {
            let s = pair[1]
                .as_str()
                .with_context(|| format!("no value in {pair}"))?;
            s.parse()
                .with_context(|| format!("bad sample value {s:?} in {body}"))
        };
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .context("vector result is not an array")?
                .iter()
                .map(|series| {
                    let labels = series["metric"]
                        .as_object()
                        .context("series without metric")?
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect();
                    Ok((labels, value(&series["value"])?))
                })
                .collect(),
            Some("scalar") => Ok(vec![(BTreeMap::new(), value(&data["result"])?)]),
            other => bail!("query {expr:?}: unsupported result type {other:?}: {body}"),
        }
    }

    /// Polls [`Prometheus::query`] every 250 ms until `predicate` holds on
    /// the result, and returns it; fails after `timeout` with the last
    /// result, the scrape targets' state and Prometheus's log.
    pub fn wait_for(
        &self,
        expr: &str,
        mut predicate: impl FnMut(&[Sample]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Sample>> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(expr);
            if let Ok(samples) = &result
                && predicate(samples)
            {
                return result;
            }
            if Instant::now() >= deadline {
                let targets = self
                    .get("/api/v1/targets")
                    .map(|(_, body)| body)
                    .unwrap_or_else(|e| format!("{e:#}"));
                bail!(
                    "{expr:?} did not match within {timeout:?}; last result: {result:?}\n\
                     targets: {targets}\nprometheus log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A real Alertmanager (`prometheus-alertmanager`, API v2) in a network
/// namespace: its web API on a free port of `127.0.0.1`, clustering off
/// (no gossip port), its data in a fresh temporary directory. One receiver
/// that notifies nobody: the tests read the alerts back through the API.
pub struct Alertmanager {
    daemon: Daemon,
    netns: String,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Alertmanager {
    /// Starts `prometheus-alertmanager` in `netns` on a free port and
    /// waits for `/-/ready`.
    pub fn start(netns: &str) -> Result<Self> {
        Self::start_on(netns, free_tcp_port(netns)?)
    }

    /// Starts `prometheus-alertmanager` in `netns` on `127.0.0.1:port`
    /// (a port fixed before the namespace's other users start) and waits
    /// for `/-/ready`.
    pub fn start_on(netns: &str, port: u16) -> Result<Self> {
        let dir = TempDir::new("alertmanager")?;
        let config = "route:\n  receiver: nobody\n  group_wait: 1s\n  group_interval: 1s\n\
                      receivers:\n  - name: nobody\n";
        let config_path = dir.0.join("alertmanager.yml");
        fs::write(&config_path, config)?;
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let utf8 = |p: &Path| -> Result<String> {
            Ok(p.to_str().context("temp dir is not UTF-8")?.to_owned())
        };
        let args = [
            format!("--config.file={}", utf8(&config_path)?),
            format!("--storage.path={}", utf8(&dir.0.join("data"))?),
            format!("--web.listen-address={addr}"),
            // No cluster: it would gossip on 0.0.0.0:9094.
            "--cluster.listen-address=".to_owned(),
            "--log.level=warn".to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = Daemon::spawn(
            "alertmanager",
            netns,
            "/usr/bin/prometheus-alertmanager",
            &args,
            dir.0.join("alertmanager.log"),
        )?;
        let mut am = Self {
            daemon,
            netns: netns.to_owned(),
            addr,
            _dir: dir,
        };
        let (netns, addr) = (am.netns.clone(), am.addr);
        wait_ready(&mut am.daemon, || {
            http_get(&netns, addr, "/-/ready").is_ok_and(|(status, _)| status == 200)
        })?;
        Ok(am)
    }

    /// The web API's address (`127.0.0.1:PORT` inside the namespace).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for a client inside the namespace.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Alertmanager's output so far (warnings and errors).
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// `GET /api/v2/alerts`: every alert it holds (`gettableAlert`s).
    pub fn alerts(&self) -> Result<Vec<Value>> {
        let (status, body) = http_get(&self.netns, self.addr, "/api/v2/alerts")?;
        ensure!(status == 200, "GET /api/v2/alerts: HTTP {status}: {body}");
        let v: Value = serde_json::from_str(&body).context("alerts are not JSON")?;
        v.as_array()
            .cloned()
            .with_context(|| format!("alerts are not an array: {body}"))
    }

    /// Polls [`Alertmanager::alerts`] every 100 ms until `predicate` holds,
    /// and returns them; fails after `timeout` with the last answer and the
    /// log.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut(&[Value]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.alerts();
            if let Ok(alerts) = &result
                && predicate(alerts)
            {
                return result;
            }
            if Instant::now() >= deadline {
                bail!(
                    "Alertmanager's alerts did not match within {timeout:?}; last: {result:?}\n\
                     alertmanager log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Percent-encodes `s` for a URL query value (RFC 3986 unreserved
/// characters are kept).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A plain HTTP/1.0 `GET` to `addr` inside `netns`: status and body.
pub fn http_get(netns: &str, addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let timeout = Duration::from_secs(10);
    let mut stream = in_netns(netns, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
    })?
    .with_context(|| format!("cannot connect to {addr} in {netns}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the response to GET {path}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP header in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfdump_times_parse_as_utc() {
        let t = parse_nfdump_time("2026-11-22T17:50:31.250").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_795_369_831_250)
        );
        assert_eq!(
            parse_nfdump_time("1970-01-01T00:00:00.000").unwrap(),
            UNIX_EPOCH
        );
        assert_eq!(
            parse_nfdump_time("2000-03-01T00:00:00").unwrap(),
            UNIX_EPOCH + Duration::from_secs(951_868_800)
        );
        assert!(parse_nfdump_time("2026-11-22 17:50:31").is_err());
    }

    #[test]
    fn nfdump_json_record() {
        let json = r#"{"type":"FLOW","first":"2026-11-22T17:50:31.000",
            "last":"2026-11-22T17:50:32.000","in_packets":5,"in_bytes":1234,"proto":6,
            "src_port":40000,"dst_port":8080,"src4_addr":"10.1.2.3","dst4_addr":"10.4.5.6"}"#;
        let obj: serde_json::Map<String, Value> = serde_json::from_str(json).unwrap();
        let r = NfRecord::from_json(&obj).unwrap();
        assert_eq!(r.src, "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!((r.sport, r.dport, r.proto), (40000, 8080, 6));
        assert_eq!((r.packets, r.bytes), (5, 1234));
        assert_eq!(r.raw["type"], "FLOW");
    }

    #[test]
    fn query_values_are_url_encoded() {
        assert_eq!(
            url_encode(r#"a_total{r="x y"}"#),
            "a_total%7Br%3D%22x%20y%22%7D"
        );
    }
}
