//! What every benchmark report starts with: how the run was started, on
//! which machine, and how long it took. Reports embed a [`RunInfo`] with
//! `#[serde(flatten)]`, so its fields stand at the top level of their JSON,
//! and render it with [`RunInfo::markdown_header`].

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::machine::{self, Machine, command_line};
use crate::report::mib;

/// The facts of one benchmark run shared by every report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    /// Benchmark name.
    pub benchmark: String,
    /// The command that reproduces the run.
    pub command: String,
    /// The binary's own arguments, as given.
    pub argv: Vec<String>,
    /// When the run started (UTC, RFC 3339), if `date` could tell.
    pub started: String,
    /// Wall time of the whole run, seconds (set by [`RunInfo::finish`]).
    pub total_seconds: f64,
    /// Short run (`--quick`).
    pub quick: bool,
    /// The machine.
    pub machine: Machine,
    /// For the eBPF benchmarks: the load and the ELF measured.
    #[serde(flatten)]
    pub ebpf: Option<EbpfRun>,
    /// When the run started, for [`RunInfo::finish`].
    #[serde(skip, default = "Instant::now")]
    started_at: Instant,
}

/// The facts an eBPF benchmark adds to [`RunInfo`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EbpfRun {
    /// `/proc/loadavg` at the start (other work on the machine skews rates).
    pub loadavg_start: String,
    /// The ELF measured.
    pub elf: String,
    /// With a baseline ELF: the measured ELF's identity (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elf_identity: Option<ElfIdentity>,
    /// The ELF measured against, if any (`dataplane_bench --baseline-elf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_elf: Option<ElfIdentity>,
}

/// Which ELF a run measured: where it is, what it holds and where it came
/// from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElfIdentity {
    /// Its path.
    pub path: String,
    /// SHA-256 of its bytes (`sha256sum`; empty if that failed).
    pub sha256: String,
    /// `git describe --always --dirty` of the work tree around the ELF's
    /// directory now (empty if it is in none): where it was built from,
    /// unless that tree changed since.
    pub source: String,
}

impl EbpfRun {
    /// The paths of the identified ELFs ([`RunInfo::with_baseline`]) whose
    /// bytes differ now from when they were identified (a rebuild during
    /// the run would make the report describe ELFs it did not measure).
    pub fn changed_elfs(&self) -> Vec<String> {
        [&self.elf_identity, &self.baseline_elf]
            .into_iter()
            .flatten()
            .filter(|id| ElfIdentity::of(Path::new(&id.path)).sha256 != id.sha256)
            .map(|id| id.path.clone())
            .collect()
    }
}

impl ElfIdentity {
    /// Reads the identity of the ELF at `elf`.
    pub fn of(elf: &Path) -> Self {
        let dir = elf.parent().unwrap_or(Path::new("."));
        let sha256 = command_line("sha256sum", &[&elf.to_string_lossy()])
            .and_then(|o| o.split_whitespace().next().map(str::to_owned))
            .unwrap_or_default();
        let source = command_line(
            "git",
            &[
                "-C",
                &dir.to_string_lossy(),
                "describe",
                "--always",
                "--dirty",
            ],
        )
        .unwrap_or_default();
        Self {
            path: elf.display().to_string(),
            sha256,
            source,
        }
    }

    /// `sha256 …` and the source tree, for a table cell.
    pub fn describe(&self) -> String {
        let sha = if self.sha256.is_empty() {
            "sha256 unknown".to_owned()
        } else {
            format!("sha256 `{}`", self.sha256)
        };
        if self.source.is_empty() {
            sha
        } else {
            format!("{sha}, source tree `{}`", self.source)
        }
    }
}

/// `date -u` as RFC 3339, or empty if `date` could not tell.
fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl RunInfo {
    /// Starts the record of a run of benchmark `benchmark` by binary `bin`
    /// that began at `started_at`: reads the arguments, the machine (warning
    /// on stderr about a debug build) and the time.
    pub fn start(benchmark: &str, bin: &str, quick: bool, started_at: Instant) -> Self {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let mut command = format!("cargo run --release -p bulkhead-bench --bin {bin} --");
        for a in &argv {
            command.push(' ');
            command.push_str(a);
        }
        let machine = Machine::detect();
        if !machine.release_build {
            eprintln!("warning: debug build; run with --release for meaningful numbers");
        }
        Self {
            benchmark: benchmark.into(),
            command,
            argv,
            started: utc_now(),
            total_seconds: 0.0,
            quick,
            machine,
            ebpf: None,
            started_at,
        }
    }

    /// Adds the load average now and the ELF measured.
    pub fn with_ebpf(mut self, elf: &Path) -> Self {
        self.ebpf = Some(EbpfRun {
            loadavg_start: machine::loadavg(),
            elf: elf.display().to_string(),
            elf_identity: None,
            baseline_elf: None,
        });
        self
    }

    /// Adds the identities of the ELF measured and of `baseline`, the ELF
    /// it is measured against (after [`RunInfo::with_ebpf`]).
    pub fn with_baseline(mut self, baseline: &Path) -> Self {
        if let Some(e) = &mut self.ebpf {
            e.elf_identity = Some(ElfIdentity::of(Path::new(&e.elf)));
            e.baseline_elf = Some(ElfIdentity::of(baseline));
        }
        self
    }

    /// Sets the run's wall time, up to now.
    pub fn finish(&mut self) {
        self.total_seconds = self.started_at.elapsed().as_secs_f64();
    }

    /// Writes `# {title}`, the command and the machine table (with the
    /// memory row if `memory`, the load and ELF rows for an eBPF run).
    pub fn markdown_header(&self, s: &mut String, title: &str, memory: bool) {
        let m = &self.machine;
        let _ = writeln!(s, "# {title}\n");
        let _ = writeln!(s, "Command: `{}`\n", self.command);
        let _ = writeln!(s, "| machine | |\n| --- | --- |");
        let _ = writeln!(s, "| started | {} |", self.started);
        let _ = writeln!(s, "| nproc | {} |", m.nproc);
        let _ = writeln!(s, "| CPU | {} |", m.cpu_model);
        if memory {
            let _ = writeln!(s, "| memory | {} |", mib(m.mem_total_kib));
        }
        let _ = writeln!(s, "| kernel | {} |", m.kernel);
        let _ = writeln!(s, "| rustc | {} |", m.rustc);
        let build = if m.release_build {
            "release"
        } else {
            "DEBUG (numbers meaningless)"
        };
        let _ = writeln!(s, "| build | {build} |");
        let _ = writeln!(s, "| git | {} |", m.git);
        if let Some(e) = &self.ebpf {
            let _ = writeln!(s, "| load average at start | {} |", e.loadavg_start);
            let _ = writeln!(s, "| eBPF ELF | `{}` |", e.elf);
            if let Some(id) = &e.elf_identity {
                let _ = writeln!(s, "| eBPF ELF identity | {} |", id.describe());
            }
            if let Some(id) = &e.baseline_elf {
                let _ = writeln!(s, "| baseline eBPF ELF | `{}` |", id.path);
                let _ = writeln!(s, "| baseline ELF identity | {} |", id.describe());
            }
        }
        let _ = writeln!(
            s,
            "| run time | {:.1} s{} |\n",
            self.total_seconds,
            if self.quick { " (--quick)" } else { "" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &impl Serialize) -> Vec<String> {
        let text = serde_json::to_string(v).unwrap();
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
        // `preserve_order` may be off: check the order in the text instead.
        let mut keys: Vec<String> = map.keys().cloned().collect();
        keys.sort_by_key(|k| text.find(&format!("\"{k}\":")).unwrap());
        keys
    }

    #[test]
    fn flattens_to_the_reports_top_level_fields() {
        let run = RunInfo::start("b", "b_bench", true, Instant::now());
        assert_eq!(
            keys(&run),
            [
                "benchmark",
                "command",
                "argv",
                "started",
                "total_seconds",
                "quick",
                "machine"
            ]
        );
        let run = run.with_ebpf(Path::new("/x.o"));
        assert_eq!(
            keys(&run)[7..],
            ["loadavg_start".to_string(), "elf".to_string()]
        );
        let mut s = String::new();
        run.markdown_header(&mut s, "T", false);
        assert!(s.starts_with(
            "# T\n\nCommand: `cargo run --release -p bulkhead-bench --bin b_bench --"
        ));
        assert!(s.contains("| eBPF ELF | `/x.o` |\n| run time | 0.0 s (--quick) |\n\n"));
        assert!(!s.contains("| memory |"));
        assert!(!s.contains("identity"));
    }

    #[test]
    fn baseline_identities_join_the_header_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let (elf, old) = (dir.path().join("new.o"), dir.path().join("old.o"));
        std::fs::write(&elf, "abc").unwrap();
        std::fs::write(&old, "").unwrap();
        let run = RunInfo::start("b", "b_bench", false, Instant::now())
            .with_ebpf(&elf)
            .with_baseline(&old);
        assert_eq!(
            keys(&run)[7..],
            ["loadavg_start", "elf", "elf_identity", "baseline_elf"].map(String::from)
        );
        let e = run.ebpf.as_ref().unwrap();
        let id = e.baseline_elf.as_ref().unwrap();
        // Not in a git work tree: no source.
        assert_eq!(id.source, "");
        assert_eq!(
            id.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut s = String::new();
        run.markdown_header(&mut s, "T", false);
        assert!(s.contains(&format!(
            "| eBPF ELF | `{}` |\n\
             | eBPF ELF identity | sha256 `ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad` |\n\
             | baseline eBPF ELF | `{}` |\n\
             | baseline ELF identity | sha256 `e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855` |\n",
            elf.display(),
            old.display()
        )), "{s}");
        let with_source = ElfIdentity {
            source: "a2717ac".into(),
            ..id.clone()
        };
        assert!(with_source.describe().ends_with(", source tree `a2717ac`"));
        assert!(e.changed_elfs().is_empty());
        std::fs::write(&old, "rebuilt").unwrap();
        assert_eq!(e.changed_elfs(), [old.display().to_string()]);
    }
}
