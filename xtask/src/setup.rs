//! `cargo xtask setup`: installs what building and testing Bulkhead need.
//!
//! Idempotent, and fast (a few seconds) when everything is already there:
//! each piece is checked first and installed only when missing.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, tools};

/// Debian packages the tests and the demo use (Debian 12 bookworm names):
/// - `iproute2`: `ip netns`, `ip link` for the netns tests and the demo lab;
/// - `iputils-ping`: `ping` as test traffic;
/// - `bpftool`: inspecting loaded programs and maps when debugging;
/// - `nfdump`: `nfcapd` collects the IPFIX the flow exporter sends, and
///   `nfdump -r` decodes it, in the flow-export tests;
/// - `prometheus`: a real server scrapes the agent's `/metrics` in the
///   metrics tests;
/// - `prometheus-alertmanager`: a real Alertmanager (v2 API) the alert
///   tests deliver baseline-deviation alerts to and read them back from;
/// - `iptables`, `ipset`, `nftables`: the contenders of the comparison
///   benchmark (`cargo xtask compare`), run inside its namespaces only;
/// - `sockperf`, `iperf3`: its latency and bulk-throughput measurements;
/// - `fonts-dejavu-core`: the font its PNG plots are drawn with;
/// - `unzip`, `python3-venv`: installing the validators of `deploy/`
///   (see [`crate::tools`]);
/// - `containernetworking-plugins`: the CNI reference plugins (`ptp`,
///   `host-local`, ... under `/usr/lib/cni`) that the CNI tests chain
///   `bulkhead-cni` after, as a node's runtime does;
/// - `chromium`: the headless browser the web UI's end-to-end tests and
///   benchmark drive (through `playwright-core`, an npm package of `ui/`,
///   which never downloads a browser of its own).
///
/// `nodejs` and `npm` (building the web UI) are installed too when `node`
/// is missing or older than [`NODE_MAJOR`].
///
/// The tests start `nfcapd`, `prometheus` and `prometheus-alertmanager` themselves, inside network
/// namespaces; the packages' own services must not run (see
/// [`NO_SERVICE_START`]).
pub const APT_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "bpftool",
    "nfdump",
    "prometheus",
    "prometheus-alertmanager",
    "iptables",
    "ipset",
    "nftables",
    "sockperf",
    "iperf3",
    "fonts-dejavu-core",
    "unzip",
    "python3-venv",
    "containernetworking-plugins",
    "chromium",
];

/// The oldest major version of node that builds the web UI (Vite 7).
pub const NODE_MAJOR: u32 = 20;

/// Debian's `nodejs` and `npm` if `node` is missing or older than
/// [`NODE_MAJOR`], else nothing.
fn node_packages() -> &'static [&'static str] {
    let major = cmd::output(cmd::clean("node").arg("--version")).and_then(|v| {
        v.trim()
            .trim_start_matches('v')
            .split('.')
            .next()?
            .parse::<u32>()
            .ok()
    });
    match major {
        Some(m) if m >= NODE_MAJOR => &[],
        _ => &["nodejs", "npm"],
    }
}

/// Debian's package of `kubectl`, which the fake API server's test drives
/// (`netns-tests/tests/apiserver_wire.rs`). Installed only when no `kubectl`
/// is on `PATH`: another package of it (Google Cloud's `kubectl`, in some
/// machine images) owns `/usr/bin/kubectl` too, so the two conflict.
pub const KUBECTL_PACKAGE: &str = "kubernetes-client";

/// [`KUBECTL_PACKAGE`] if no `kubectl` runs yet, else nothing.
fn kubectl_package() -> Option<&'static str> {
    let present = cmd::output(cmd::clean("kubectl").args(["version", "--client"])).is_some();
    (!present).then_some(KUBECTL_PACKAGE)
}

/// Denies every `invoke-rc.d` action (exit status 101, see
/// `/usr/share/doc/init-system-helpers/README.policy-rc.d.gz`).
///
/// The `nfdump` and `prometheus` postinst scripts run
/// `invoke-rc.d NAME start`, which on a machine without systemd would start
/// `/etc/init.d/prometheus` (listening on `:9090` of the host's namespace)
/// and `/etc/init.d/nfdump` as daemons nobody reaps. While setup installs
/// packages, and only if the machine has no `/usr/sbin/policy-rc.d` of its
/// own, this script is put there and removed afterwards.
pub const NO_SERVICE_START: &str = "#!/bin/sh\n\
# Written by `cargo xtask setup` while it installs packages; removed after.\n\
exit 101\n";

/// Where `invoke-rc.d` looks for the local service policy.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// Services of [`APT_PACKAGES`] that their packages enable (for systemd and
/// for sysvinit) and that setup disables: nothing but the tests should run
/// these, and `prometheus` would listen on `:9090` of the host
/// (`prometheus-alertmanager` on `:9093`, and it would gossip on `:9094`).
pub const DISABLED_SERVICES: &[&str] = &["nfdump", "prometheus", "prometheus-alertmanager"];

/// The rustup toolchain that builds the eBPF crate (it needs `-Z build-std`).
/// Undated on purpose: the machine's `nightly` is the one known to exist.
pub const NIGHTLY: &str = "nightly";

/// bpf-linker releases accepted (a semver requirement for `cargo install`).
/// 0.13 links against a shared LLVM 21, 22 or 23.
pub const BPF_LINKER_VERSION: &str = "^0.13";

/// What the eBPF build needs from setup.
#[derive(Debug, Clone)]
pub struct EbpfToolchain {
    /// Directory holding the `bpf-linker` binary; put first on `PATH` of the
    /// nightly cargo that builds the eBPF crate.
    pub linker_bin_dir: PathBuf,
}

/// Runs the whole setup: Debian packages, the validators of `deploy/`,
/// then the eBPF toolchain.
pub fn run() -> Result<EbpfToolchain> {
    let packages: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .chain(kubectl_package())
        .chain(node_packages().iter().copied())
        .collect();
    ensure_apt_packages(&packages)?;
    disable_services(DISABLED_SERVICES)?;
    tools::ensure()?;
    ebpf_toolchain()
}

/// Makes sure nightly has `rust-src` and bpf-linker is built; no apt.
pub fn ebpf_toolchain() -> Result<EbpfToolchain> {
    ensure_rust_src()?;
    ensure_bpf_linker()
}

/// Bulkhead's cache directory for tools built by setup (`~/.cache/bulkhead`).
pub fn cache_dir() -> PathBuf {
    cmd::home().join(".cache").join("bulkhead")
}

fn is_installed(package: &str) -> bool {
    // `db:Status-Abbrev` is "ii " for an installed package.
    cmd::output(cmd::clean("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}", package]))
        .is_some_and(|s| s.starts_with("ii"))
}

/// Installs the Debian packages of `packages` that are not installed yet
/// (running `apt-get update` first, and only then).
pub fn ensure_apt_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        eprintln!("setup: Debian packages present: {}", packages.join(" "));
        return Ok(());
    }
    eprintln!("setup: installing Debian packages: {}", missing.join(" "));
    let sudo = !cmd::is_root();
    let apt = |args: &[&str]| {
        let mut c = if sudo {
            let mut c = cmd::clean("sudo");
            c.args(["-n", "--preserve-env=DEBIAN_FRONTEND", "apt-get"]);
            c
        } else {
            cmd::clean("apt-get")
        };
        c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        c
    };
    cmd::run(&mut apt(&["update", "-q"])).context("apt-get update")?;
    let _policy = NoServiceStart::install(sudo)?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    cmd::run(&mut install).context("apt-get install")?;
    Ok(())
}

/// The systemd unit link that enables `service` at boot.
fn systemd_wants(service: &str) -> PathBuf {
    Path::new("/etc/systemd/system/multi-user.target.wants").join(format!("{service}.service"))
}

/// Whether `service` is enabled to start at boot by sysvinit (an `S` link in
/// `/etc/rc[2-5].d`).
fn sysv_enabled(service: &str) -> bool {
    (2..=5).any(|level| {
        fs::read_dir(format!("/etc/rc{level}.d")).is_ok_and(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .any(|n| n.starts_with('S') && n.get(3..) == Some(service))
        })
    })
}

/// Disables the boot-time start of each of `services` that is enabled:
/// `update-rc.d NAME disable` (which also disables the systemd unit when
/// `systemctl` is installed), then `systemctl disable` if the unit is still
/// enabled. Package upgrades keep them disabled.
pub fn disable_services(services: &[&str]) -> Result<()> {
    let sudo = !cmd::is_root();
    for service in services {
        if sysv_enabled(service) {
            eprintln!("setup: disabling the {service} init script (the tests run their own)");
            cmd::run(as_root(sudo, "update-rc.d").args([service, "disable"]))?;
        }
        if systemd_wants(service).exists() {
            eprintln!("setup: disabling {service}.service (the tests run their own)");
            cmd::run(as_root(sudo, "systemctl").args(["disable", &format!("{service}.service")]))?;
        }
        if sysv_enabled(service) || systemd_wants(service).exists() {
            bail!("the {service} service is still enabled");
        }
    }
    Ok(())
}

/// A `command` run as root: directly, or through `sudo -n`.
fn as_root(sudo: bool, program: &str) -> std::process::Command {
    if sudo {
        let mut c = cmd::clean("sudo");
        c.args(["-n", program]);
        c
    } else {
        cmd::clean(program)
    }
}

/// [`NO_SERVICE_START`] installed as `/usr/sbin/policy-rc.d` for as long as
/// this lives; a machine's own policy (a container's usually denies all
/// already) is left alone.
struct NoServiceStart {
    /// Whether this put the policy there (and so must remove it); `None`
    /// when the machine had one.
    sudo: Option<bool>,
}

impl NoServiceStart {
    fn install(sudo: bool) -> Result<Self> {
        if Path::new(POLICY_RC_D).exists() {
            return Ok(Self { sudo: None });
        }
        let tmp = std::env::temp_dir().join(format!("bulkhead-policy-rc.d.{}", std::process::id()));
        fs::write(&tmp, NO_SERVICE_START)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let installed = cmd::run(
            as_root(sudo, "install")
                .args(["-m", "0755"])
                .arg(&tmp)
                .arg(POLICY_RC_D),
        );
        let _ = fs::remove_file(&tmp);
        installed.context("cannot keep package services from starting")?;
        Ok(Self { sudo: Some(sudo) })
    }
}

impl Drop for NoServiceStart {
    fn drop(&mut self) {
        if let Some(sudo) = self.sudo
            && let Err(e) = cmd::run(as_root(sudo, "rm").args(["-f", POLICY_RC_D]))
        {
            eprintln!("setup: warning: cannot remove {POLICY_RC_D}: {e:#}");
        }
    }
}

/// Adds `rust-src` to the nightly toolchain if it is missing
/// (`-Z build-std=core` compiles `core` from it).
fn ensure_rust_src() -> Result<()> {
    let installed = cmd::output(cmd::clean("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))
    .with_context(|| {
        format!(
            "cannot list the components of the `{NIGHTLY}` toolchain; \
             is it installed (`rustup toolchain list`)?"
        )
    })?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: {NIGHTLY} has rust-src");
        return Ok(());
    }
    eprintln!("setup: adding rust-src to {NIGHTLY}");
    cmd::run(cmd::clean("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

/// Reads nightly's LLVM major version from `rustc +nightly -vV`.
fn nightly_llvm_major() -> Result<u32> {
    let vv = cmd::output(cmd::clean("rustc").args([&format!("+{NIGHTLY}"), "-vV"]))
        .context("`rustc +nightly -vV` failed")?;
    let version = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .context("no `LLVM version:` line in `rustc +nightly -vV`")?;
    let major = version.trim().split('.').next().unwrap_or_default();
    major
        .parse()
        .with_context(|| format!("unexpected LLVM version {version:?}"))
}

/// Finds the shared libLLVM that nightly ships in its sysroot.
fn nightly_libllvm(major: u32) -> Result<PathBuf> {
    let sysroot =
        cmd::output(cmd::clean("rustc").args([&format!("+{NIGHTLY}"), "--print", "sysroot"]))
            .context("`rustc +nightly --print sysroot` failed")?;
    let lib = Path::new(sysroot.trim()).join("lib");
    // Current naming is `libLLVM.so.22.1-rust-1.97.0-nightly`; older
    // toolchains used `libLLVM-22-rust-1.97.0-nightly.so`.
    let candidates = [format!("libLLVM.so.{major}."), format!("libLLVM-{major}-")];
    let mut names: Vec<String> = fs::read_dir(&lib)
        .with_context(|| format!("cannot read {}", lib.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    for prefix in &candidates {
        if let Some(name) = names.iter().find(|n| n.starts_with(prefix.as_str())) {
            return Ok(lib.join(name));
        }
    }
    bail!(
        "no libLLVM {major} in {} (looked for {candidates:?})",
        lib.display()
    )
}

/// Builds bpf-linker against nightly's own LLVM unless a working one is in
/// the cache. Debian 12 has no LLVM new enough, so the shared libLLVM that
/// rustup ships with nightly is linked through a `libLLVM.so` symlink in
/// `~/.cache/bulkhead/llvm/lib` (the binary keeps an rpath to it). When
/// nightly is updated, the old library disappears, `bpf-linker --version`
/// fails, and this rebuilds.
fn ensure_bpf_linker() -> Result<EbpfToolchain> {
    let root = cache_dir().join("bpf-linker");
    let bin_dir = root.join("bin");
    let linker = bin_dir.join("bpf-linker");
    if linker.exists()
        && let Some(version) = cmd::output(cmd::clean(&linker).arg("--version"))
    {
        eprintln!("setup: {} ({})", linker.display(), version.trim());
        return Ok(EbpfToolchain {
            linker_bin_dir: bin_dir,
        });
    }

    let major = nightly_llvm_major()?;
    let libllvm = nightly_libllvm(major)?;
    let llvm_prefix = cache_dir().join("llvm");
    link_libllvm(&libllvm, &llvm_prefix.join("lib"))?;
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {major} \
         ({}); this takes a few minutes",
        libllvm.display()
    );
    let mut install = cmd::clean_for_cross("cargo");
    install
        .env("LLVM_PREFIX", &llvm_prefix)
        .args(["install", "bpf-linker", "--locked", "--force"])
        .args(["--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{major}"))
        .arg("--root")
        .arg(&root);
    cmd::run(&mut install).context("building bpf-linker")?;
    let version = cmd::output(cmd::clean(&linker).arg("--version"))
        .with_context(|| format!("{} was installed but does not run", linker.display()))?;
    eprintln!("setup: {} ({})", linker.display(), version.trim());
    Ok(EbpfToolchain {
        linker_bin_dir: bin_dir,
    })
}

/// Points `lib_dir` at nightly's libLLVM: `libLLVM.so` for the build
/// (llvm-sys links `-lLLVM` from `$LLVM_PREFIX/lib`) and the library's own
/// file name, which is its soname, for the built binary's rpath, so that
/// bpf-linker also runs outside rustup's `LD_LIBRARY_PATH`. Links left by an
/// older nightly are removed first.
fn link_libllvm(libllvm: &Path, lib_dir: &Path) -> Result<()> {
    fs::create_dir_all(lib_dir).with_context(|| format!("cannot create {}", lib_dir.display()))?;
    for entry in
        fs::read_dir(lib_dir).with_context(|| format!("cannot read {}", lib_dir.display()))?
    {
        let path = entry?.path();
        let is_llvm = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("libLLVM"));
        if is_llvm && path.is_symlink() {
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    let soname = libllvm
        .file_name()
        .context("libLLVM path has no file name")?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), soname] {
        let link = lib_dir.join(name);
        std::os::unix::fs::symlink(libllvm, &link)
            .with_context(|| format!("cannot link {} to {}", link.display(), libllvm.display()))?;
    }
    Ok(())
}
