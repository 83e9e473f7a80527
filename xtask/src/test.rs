//! `cargo xtask test`: everything CI checks, in order, stopping at the first
//! failure.

use anyhow::{Result, bail};

use crate::{cmd, cmd::step, ebpf, setup, tools, ui};

// These two names must match `bulkhead-netns-tests`.

/// Environment variable that turns a skipped privileged test into a failure.
pub const REQUIRE_PRIVILEGED: &str = "BULKHEAD_REQUIRE_PRIVILEGED";
/// Environment variable naming the eBPF ELF for the tests.
pub const EBPF_ELF: &str = "BULKHEAD_EBPF_ELF";
/// Environment variable that turns a browser test skipped for want of a
/// browser into a failure (`bulkhead_testkit::browser::REQUIRE_ENV`).
pub const REQUIRE_BROWSER: &str = "BULKHEAD_REQUIRE_BROWSER";

/// Package of the privileged tests, run in their own step.
const NETNS_TESTS: &str = "bulkhead-netns-tests";
/// The namespace toolkit: its integration tests make namespaces, so they
/// run in the privileged step (with its unit tests).
const NETKIT: &str = "bulkhead-netkit";

/// Runs setup, the eBPF and web UI builds, fmt, clippy, the UI's and the
/// workspace's tests and, as root, the privileged netns tests.
pub fn run() -> Result<()> {
    let root = cmd::repo_root();
    let toolchain = step("setup", setup::run)?;
    let elf = step("build-ebpf", || ebpf::build_with(&toolchain))?;
    // Before any cargo step: the agent crate embeds the bundle (agent/build.rs).
    step("build-ui", ui::build)?;
    step("fmt", || {
        cmd::run(
            cmd::clean("cargo")
                .current_dir(root)
                .args(["fmt", "--all", "--", "--check"]),
        )?;
        // The eBPF crate is outside the workspace, so `--all` misses it;
        // its manifest uses a nightly cargo feature (profile rustflags),
        // which stable `cargo fmt` refuses to read: rustfmt itself formats
        // the crate from its root, following the `mod` declarations.
        cmd::run(cmd::clean("rustfmt").current_dir(ebpf::crate_dir()).args([
            "--edition",
            "2024",
            "--check",
            "src/main.rs",
        ]))
    })?;
    step("clippy", || {
        // The same BULKHEAD_EBPF_ELF in every cargo step: bulkhead-dataplane
        // embeds the ELF (dataplane/build.rs) and is not rebuilt between steps.
        cmd::run(
            cmd::clean("cargo")
                .current_dir(root)
                .env(EBPF_ELF, &elf)
                .args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]),
        )
    })?;
    step("clippy (eBPF)", || ebpf::clippy(&toolchain))?;
    step("ui unit tests", ui::test)?;
    step("unit tests", || {
        cmd::run(
            cmd::clean("cargo")
                .current_dir(root)
                .env(EBPF_ELF, &elf)
                // controller/tests/deploy.rs validates deploy/ with them,
                // and fails rather than skips when they are given.
                .env(tools::HELM_ENV, tools::helm())
                .env(tools::VALIDATE_ENV, tools::kubernetes_validate())
                // Setup installed chromium and build-ui playwright-core:
                // the browser tests (testkit/src/browser.rs) must not skip.
                .env(REQUIRE_BROWSER, "1")
                .args(["test", "--workspace", "--exclude", NETNS_TESTS])
                .args(["--exclude", NETKIT]),
        )
    })?;
    if cmd::is_root() {
        step("netns tests (privileged)", || {
            cmd::run(
                cmd::clean("cargo")
                    .current_dir(root)
                    .env(EBPF_ELF, &elf)
                    .env(REQUIRE_PRIVILEGED, "1")
                    .env(REQUIRE_BROWSER, "1")
                    // `--tests`: integration tests only, so the closing
                    // summary is theirs, not an empty doc-test run's.
                    .args(["test", "-p", NETNS_TESTS, "-p", NETKIT, "--tests"])
                    .args(["--", "--test-threads=1"]),
            )
        })?;
    } else if std::env::var_os("CI").is_some() {
        bail!("CI must run as root: the privileged netns tests cannot be skipped there");
    } else {
        eprintln!("test: not root, skipping the privileged netns tests");
    }
    eprintln!("test: all steps passed");
    Ok(())
}
