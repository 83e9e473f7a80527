//! Running a CNI chain as a container runtime does (CNI spec, "Execution
//! of network configurations"): each plugin of the list in order on ADD,
//! with the `CNI_*` environment, its configuration (plus the list's
//! `cniVersion` and `name`, and the previous plugin's result as
//! `prevResult`) on stdin, its result on stdout; DEL in reverse order with
//! the final result; CHECK in order with it. Plugins run under
//! `ip netns exec NODE`, so host-side interfaces land in the test's node
//! namespace. Debian's reference plugins come from `/usr/lib/cni`,
//! `bulkhead-cni` from the workspace build ([`crate::cni_bin`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where Debian's `containernetworking-plugins` installs the plugins.
pub const CNI_PLUGIN_DIR: &str = "/usr/lib/cni";

/// A network configuration list.
#[derive(Clone, Debug)]
pub struct Chain {
    /// `cniVersion`.
    pub cni_version: String,
    /// `name`.
    pub name: String,
    /// `plugins`.
    pub plugins: Vec<Value>,
}

/// One attachment's invocation parameters.
#[derive(Clone, Debug)]
pub struct Attach {
    /// The node namespace plugins run in.
    pub node_netns: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (a path).
    pub netns_path: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
}

/// A plugin that failed (boxed in results: it is large).
#[derive(Clone, Debug)]
pub struct Failure {
    /// Its type.
    pub plugin: String,
    /// Its exit status.
    pub status: Option<i32>,
    /// Its stdout as JSON (the error result), if it was JSON.
    pub error: Option<Value>,
    /// Its stderr.
    pub stderr: String,
    /// How long it ran.
    pub took: Duration,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CNI plugin {} exited {:?} after {:?}: {:?}; stderr: {}",
            self.plugin, self.status, self.took, self.error, self.stderr
        )
    }
}

impl Chain {
    /// ADD through every plugin; the final result.
    pub fn add(&self, a: &Attach) -> Result<Value, Box<Failure>> {
        let mut prev: Option<Value> = None;
        for p in &self.plugins {
            let out = self.exec(p, "ADD", a, prev.as_ref())?;
            prev = Some(out.unwrap_or(Value::Null));
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL through every plugin, last first, with the final result if known.
    pub fn del(&self, a: &Attach, result: Option<&Value>) -> Result<(), Box<Failure>> {
        for p in self.plugins.iter().rev() {
            self.exec(p, "DEL", a, result)?;
        }
        Ok(())
    }

    /// CHECK through every plugin with the final result.
    pub fn check(&self, a: &Attach, result: &Value) -> Result<(), Box<Failure>> {
        for p in &self.plugins {
            self.exec(p, "CHECK", a, Some(result))?;
        }
        Ok(())
    }

    fn exec(
        &self,
        plugin: &Value,
        command: &str,
        a: &Attach,
        prev: Option<&Value>,
    ) -> Result<Option<Value>, Box<Failure>> {
        let kind = plugin["type"].as_str().expect("a plugin type").to_owned();
        let mut conf = plugin.clone();
        conf["cniVersion"] = self.cni_version.clone().into();
        conf["name"] = self.name.clone().into();
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        let bin: PathBuf = if kind == "bulkhead-cni" {
            crate::cni_bin().to_owned()
        } else {
            PathBuf::from(CNI_PLUGIN_DIR).join(&kind)
        };
        let started = Instant::now();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &a.node_netns])
            .arg(&bin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &a.container_id)
            .env("CNI_NETNS", &a.netns_path)
            .env("CNI_IFNAME", &a.ifname)
            .env("CNI_ARGS", &a.args)
            .env("CNI_PATH", CNI_PLUGIN_DIR)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
        let stdin = serde_json::to_vec(&conf).expect("JSON");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&stdin)
            .expect("writing the configuration");
        let out = child.wait_with_output().expect("waiting for the plugin");
        let stdout: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        if !out.status.success() {
            return Err(Box::new(Failure {
                plugin: kind,
                status: out.status.code(),
                error: stdout,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                took: started.elapsed(),
            }));
        }
        Ok(stdout)
    }
}
