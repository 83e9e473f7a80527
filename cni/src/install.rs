//! Installing the plugin on a node as chained plugins are installed: the
//! binary into the runtime's CNI `bin` directory, and an entry
//! `{"type": "bulkhead-cni", ...}` at the end of the `plugins` of the
//! node's primary network configuration (the lexically first `*.conflist`,
//! `*.conf` or `*.json` of the configuration directory, the one runtimes
//! use). A single-plugin `.conf` becomes a `.conflist` of that plugin and
//! ours (the `.conf` is removed, so the list is what the runtime reads).
//!
//! Every write is atomic (a temporary file in the same directory, renamed
//! over), idempotent (an entry already there is updated in place, and an
//! unchanged file is not written), and keeps the rest of the file as it
//! was (fields and their order; the JSON is re-indented).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The plugin's `type` (and binary name).
pub const PLUGIN_TYPE: &str = "bulkhead-cni";

/// Installing or uninstalling failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A configuration is not JSON.
    #[error("{} is not JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// The configuration is not an object (or its `plugins` not a list).
    #[error("{}: {reason}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The directory has no network configuration (the node's CNI is not
    /// installed yet).
    #[error("no network configuration (*.conflist, *.conf, *.json) in {}", dir.display())]
    NoConfig {
        /// The directory.
        dir: PathBuf,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// What [`install`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// The binary written.
    pub binary: PathBuf,
    /// The configuration list chained into.
    pub conflist: PathBuf,
    /// Whether the list was written (false: our entry was there as given).
    pub changed: bool,
}

/// Copies `exe` to `bin_dir/bulkhead-cni` and chains `entry` (whose
/// `type` is set to [`PLUGIN_TYPE`]) into the primary configuration of
/// `conf_dir`.
pub fn install(
    exe: &Path,
    bin_dir: &Path,
    conf_dir: &Path,
    mut entry: Map<String, Value>,
) -> Result<Installed, InstallError> {
    let binary = bin_dir.join(PLUGIN_TYPE);
    copy_atomic(exe, &binary)?;
    entry.insert("type".into(), PLUGIN_TYPE.into());
    let primary = primary_conf(conf_dir)?;
    let conf = read_json(&primary)?;
    let is_list = primary.extension().is_some_and(|e| e == "conflist");
    let list = if is_list {
        conf.clone()
    } else {
        to_conflist(conf.clone(), &primary)?
    };
    let chained = chain(list, &Value::Object(entry), &primary)?;
    let conflist = if is_list {
        primary.clone()
    } else {
        primary.with_extension("conflist")
    };
    let changed = !is_list || chained != conf;
    if changed {
        write_json_atomic(&conflist, &chained)?;
        if !is_list {
            fs::remove_file(&primary).map_err(io_err("removing", &primary))?;
        }
    }
    Ok(Installed {
        binary,
        conflist,
        changed,
    })
}

/// Removes our entry from every configuration list of `conf_dir` and the
/// binary from `bin_dir`; what was changed. Absent ones are fine.
pub fn uninstall(bin_dir: &Path, conf_dir: &Path) -> Result<Vec<PathBuf>, InstallError> {
    let mut changed = Vec::new();
    for path in conf_files(conf_dir)? {
        let conf = read_json(&path)?;
        let Some(plugins) = conf.get("plugins").and_then(Value::as_array) else {
            continue;
        };
        let kept: Vec<Value> = plugins.iter().filter(|p| !is_ours(p)).cloned().collect();
        if kept.len() != plugins.len() {
            let mut conf = conf.clone();
            conf["plugins"] = Value::Array(kept);
            write_json_atomic(&path, &conf)?;
            changed.push(path);
        }
    }
    let binary = bin_dir.join(PLUGIN_TYPE);
    match fs::remove_file(&binary) {
        Ok(()) => changed.push(binary),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("removing", &binary)(e)),
    }
    Ok(changed)
}

/// The network configuration files of `dir`, sorted (as libcni does).
pub fn conf_files(dir: &Path) -> Result<Vec<PathBuf>, InstallError> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_err("reading", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e == "conflist" || e == "conf" || e == "json")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The configuration the runtime uses: the lexically first.
pub fn primary_conf(dir: &Path) -> Result<PathBuf, InstallError> {
    conf_files(dir)?
        .into_iter()
        .next()
        .ok_or_else(|| InstallError::NoConfig {
            dir: dir.to_owned(),
        })
}

fn is_ours(plugin: &Value) -> bool {
    plugin.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE)
}

/// A single-plugin configuration as a list of it (libcni's
/// `ConfListFromConf`: `cniVersion` and `name` move up, the plugin keeps
/// the rest).
pub fn to_conflist(conf: Value, path: &Path) -> Result<Value, InstallError> {
    let Value::Object(mut plugin) = conf else {
        return Err(InstallError::Shape {
            path: path.to_owned(),
            reason: "a network configuration must be a JSON object",
        });
    };
    let mut list = Map::new();
    for key in ["cniVersion", "name"] {
        if let Some(v) = plugin.remove(key) {
            list.insert(key.into(), v);
        }
    }
    list.insert("plugins".into(), Value::Array(vec![Value::Object(plugin)]));
    Ok(Value::Object(list))
}

/// `list` with `entry` as its last plugin (replacing an entry of ours
/// wherever it was).
pub fn chain(mut list: Value, entry: &Value, path: &Path) -> Result<Value, InstallError> {
    let shape = |reason| InstallError::Shape {
        path: path.to_owned(),
        reason,
    };
    let plugins = list
        .as_object_mut()
        .ok_or(shape("a network configuration list must be a JSON object"))?
        .get_mut("plugins")
        .and_then(Value::as_array_mut)
        .ok_or(shape(
            "a network configuration list needs a \"plugins\" array",
        ))?;
    if plugins.is_empty() {
        return Err(shape(
            "\"plugins\" is empty: nothing makes the pod's interface",
        ));
    }
    plugins.retain(|p| !is_ours(p));
    plugins.push(entry.clone());
    Ok(list)
}

fn read_json(path: &Path) -> Result<Value, InstallError> {
    let bytes = fs::read(path).map_err(io_err("reading", path))?;
    serde_json::from_slice(&bytes).map_err(|source| InstallError::Json {
        path: path.to_owned(),
        source,
    })
}

/// A temporary name next to `path` that no runtime reads as a
/// configuration (hidden, no configuration extension).
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    let tmp = temp_path(path);
    let result = fs::write(&tmp, bytes)
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)))
        .and_then(|()| fs::File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err("writing", path))
}

fn write_json_atomic(path: &Path, value: &Value) -> Result<(), InstallError> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("JSON values serialize");
    bytes.push(b'\n');
    write_atomic(path, &bytes, 0o644)
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), InstallError> {
    let bytes = fs::read(from).map_err(io_err("reading", from))?;
    write_atomic(to, &bytes, 0o755)
}

#[cfg(test)]
mod tests;
