//! Issue 12, end to end on a lab: files in the watched directory cannot
//! stall policy updates (links to `.` and an oversized manifest are
//! reported at once, memory stays small, and updates work again when they
//! are gone); everything in the lab's directory is owner-only; a killed
//! agent is reported as not running and can be started again with
//! `lab restart-agent`, adopting the pinned dataplane.

mod lab_support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use lab_support::{
    Lab, bulkhead, bulkhead_ok, json_lines, mount_points, pods_yaml, privileged, processes_with,
    serial,
};

/// Namespace y accepts no ingress.
const DENY_Y: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: y, name: default-deny}
spec: {podSelector: {}, policyTypes: [Ingress]}
";

/// Whether x/a reaches y/a on TCP 80 (IPv4).
fn xa_reaches_ya(lab: &Lab) -> bool {
    let out = lab.ok(
        "probe",
        &[
            "--from",
            "x/a",
            "--to",
            "y/a",
            "--protocols",
            "TCP",
            "--ports",
            "80",
            "--family",
            "4",
            "--output",
            "json",
        ],
    );
    let probes = json_lines(&out);
    assert_eq!(probes.len(), 1, "{out}");
    probes[0]["allowed"] == true
}

/// Longest a `lab sync` may take here: it must report, not hang.
const SYNC_BOUND: Duration = Duration::from_secs(20);

/// `lab sync`, killed (and the test failed) if it runs past [`SYNC_BOUND`].
fn sync(lab: &Lab) -> std::process::Output {
    let args = ["lab", "sync", "--name", lab.name.as_str()];
    let dir = lab.manifests.path();
    let (out_path, err_path) = (dir.join("sync.out"), dir.join("sync.err"));
    let start = Instant::now();
    let mut child = std::process::Command::new(lab_support::bulkhead_bin())
        .args(args)
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("run bulkhead");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > SYNC_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`bulkhead lab sync` still runs after {SYNC_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::process::Output {
        status,
        stdout: std::fs::read(&out_path).expect("stdout"),
        stderr: std::fs::read(&err_path).expect("stderr"),
    };
    eprintln!(
        "$ bulkhead {} ({:?})\n{}",
        args.join(" "),
        start.elapsed(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    out
}

/// `bulkhead status --lab` as JSON.
fn status(lab: &Lab) -> serde_json::Value {
    let out = bulkhead_ok(&["status", "--lab", &lab.name, "--output", "json"]);
    serde_json::from_str(&out).expect("status JSON")
}

/// Resident memory of `pid` in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u64) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("agent status");
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Every path under `dir` whose mode is not owner-only (files 0600,
/// directories 0700, the API socket 0600; what the CNI plugins make in
/// `cni/`, modes of their choosing, only without any group or other bit);
/// the lab's bpffs (mounted 0700, holding kernel objects) is checked at
/// its mount point only.
fn loose_modes(dir: &Path, bpffs: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).expect("read lab dir").flatten() {
        let path = e.path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        // Permission bits (the bpffs root also has the sticky bit).
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        let plugins = path.components().any(|c| c.as_os_str() == "cni");
        if (plugins && mode & 0o077 != 0) || (!plugins && mode != want) {
            out.push(format!("{} is {mode:o}, not {want:o}", path.display()));
        }
        if meta.is_dir() && path != bpffs {
            loose_modes(&path, bpffs, out);
        }
    }
}

/// Writes a manifest of `bytes` bytes of YAML comment, quickly.
fn write_big_manifest(path: &Path, bytes: usize) {
    let line = format!("# {}\n", "x".repeat(1021));
    let chunk = line.repeat(1024);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create big"));
    for _ in 0..bytes / chunk.len() {
        f.write_all(chunk.as_bytes()).expect("write big");
    }
    f.flush().expect("flush big");
}

#[test]
fn the_watched_directory_cannot_stall_updates_and_a_dead_agent_restarts() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    {
        let lab = Lab::new("hrd", &pods_yaml());
        assert!(lab.up(&[]).status.success(), "lab up failed");
        let watched = lab.watched();

        // B: everything the lab made is owner-only.
        let mut loose = Vec::new();
        loose_modes(&lab.dir(), &lab.dir().join("bpf"), &mut loose);
        assert!(loose.is_empty(), "not owner-only:\n{}", loose.join("\n"));
        let lab_mode = std::fs::metadata(lab.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(lab_mode, 0o700);
        assert!(xa_reaches_ya(&lab));

        // A: two links to `.` beside a policy change: the agent and `lab
        // sync` walk each file once, and the change is enforced.
        std::os::unix::fs::symlink(".", watched.join("self1")).unwrap();
        std::os::unix::fs::symlink(".", watched.join("self2")).unwrap();
        lab.write_policy("deny.yaml", DENY_Y);
        let out = sync(&lab);
        assert!(out.status.success(), "lab sync with links to . failed");
        assert!(!xa_reaches_ya(&lab), "the policy change is enforced");

        // An oversized manifest: reported at once, the policy in force stays.
        let big = watched.join("big.yaml");
        write_big_manifest(&big, 50 << 20);
        let out = sync(&lab);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("big.yaml") && err.contains("4 MiB") && err.contains("invalid manifests"),
            "{err}"
        );
        let pid = lab.state()["agent"]["pid"].as_u64().expect("agent pid");
        for _ in 0..10 {
            let rss = rss_kib(pid);
            eprintln!("agent RSS {rss} KiB");
            assert!(rss < 200 << 10, "the agent holds {rss} KiB");
            std::thread::sleep(Duration::from_millis(200));
        }
        let conn = bulkhead(&[
            "connectivity",
            "--manifests",
            &watched.display().to_string(),
        ]);
        assert_eq!(conn.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&conn.stderr).contains("big.yaml"));
        assert!(!xa_reaches_ya(&lab), "the policy in force stays");
        let s = status(&lab);
        assert!(
            s["agent_error"]
                .as_str()
                .is_some_and(|e| e.contains("big.yaml")),
            "{s}"
        );

        // Gone again: the next change is enforced.
        for name in ["big.yaml", "self1", "self2", "deny.yaml"] {
            std::fs::remove_file(watched.join(name)).unwrap();
        }
        let out = sync(&lab);
        assert!(out.status.success(), "lab sync after the cleanup failed");
        assert!(xa_reaches_ya(&lab), "the removal is enforced");
        let rss = rss_kib(pid);
        eprintln!("agent RSS {rss} KiB after the cleanup");
        assert!(rss < 200 << 10, "the agent holds {rss} KiB");

        // C: a killed agent is not running (even while a zombie)...
        assert_eq!(status(&lab)["agent_running"], true);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut s = status(&lab);
        while s["agent_running"] != false && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            s = status(&lab);
        }
        assert_eq!(s["agent_running"], false, "{s}");
        assert_eq!(s["agent_pid"], serde_json::Value::Null, "{s}");
        assert!(xa_reaches_ya(&lab), "enforcement stays as pinned");

        // ... and `lab restart-agent` starts it again on the same pins.
        lab.ok("restart-agent", &[]);
        let new_pid = lab.state()["agent"]["pid"].as_u64().expect("new pid");
        assert_ne!(new_pid, pid);
        let s = status(&lab);
        assert_eq!(s["agent_running"], true, "{s}");
        assert_eq!(s["agent_pid"], new_pid, "{s}");
        let again = bulkhead(&["lab", "restart-agent", "--name", &lab.name]);
        assert_eq!(again.status.code(), Some(2), "refused while it runs");
        lab.write_policy("deny.yaml", DENY_Y);
        let out = sync(&lab);
        assert!(out.status.success(), "lab sync after the restart failed");
        assert!(!xa_reaches_ya(&lab), "the restarted agent enforces changes");
    }
    assert_nothing_left("hrd");
}

/// Nothing of lab `name` is left: namespaces, mounts, its directory,
/// processes. (Only this lab's: other labs may come and go meanwhile.)
fn assert_nothing_left(name: &str) {
    let dir = format!("/run/bulkhead/lab/{name}");
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let prefix = format!("bh-{name}-");
    assert!(
        !String::from_utf8_lossy(&netns.stdout)
            .lines()
            .any(|l| l.starts_with(&prefix)),
        "namespaces left"
    );
    assert!(
        !mount_points().iter().any(|m| m.starts_with(&dir)),
        "mounts left"
    );
    assert!(!Path::new(&dir).exists(), "{dir} left");
    assert_eq!(processes_with(&format!("{dir}/")), Vec::<String>::new());
}
