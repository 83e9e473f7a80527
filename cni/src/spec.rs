//! The CNI protocol as the plugin needs it (CNI spec 1.1, and the
//! earlier 0.3.0, 0.3.1, 0.4.0 and 1.0.0): the `CNI_*` environment, the
//! plugin configuration on stdin, the previous result, error results and
//! version negotiation. Results are passed through as JSON values, so
//! every version's result shape is returned exactly as received.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The spec versions this plugin speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Error codes of the spec ("Error" section); 100 and up are the plugin's.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODE_FAILURE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin is not available (cannot serve ADD).
    pub const NOT_AVAILABLE: u32 = 50;
    /// The agent did not enforce the pod's policy in time.
    pub const NOT_ENFORCED: u32 = 100;
    /// The agent answered with an error.
    pub const AGENT_ERROR: u32 = 101;
}

/// A CNI error result, printed on stdout with a non-zero exit status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg}: {details} (CNI error {code})")]
pub struct CniError {
    /// The code (see [`code`]).
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// Details.
    pub details: String,
}

impl CniError {
    /// An error with `code`.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The error result JSON for `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> Value {
        serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

/// `CNI_COMMAND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Add a container to the network.
    Add,
    /// Remove it.
    Del,
    /// Check it is as ADD left it.
    Check,
    /// Report the supported versions.
    Version,
    /// Clean up everything but the valid attachments (1.1.0).
    Gc,
    /// Whether ADD can be served (1.1.0).
    Status,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "VERSION" => Self::Version,
            "GC" => Self::Gc,
            "STATUS" => Self::Status,
            _ => return None,
        })
    }
}

/// The `CNI_*` environment of one invocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, split at `;` and `=`.
    pub args: BTreeMap<String, String>,
}

impl Env {
    /// Reads the variables of `command` through `var` (e.g.
    /// `std::env::var`); the ones the spec requires for it must be set.
    pub fn read(command: Command, var: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let need = |name: &str, required: bool| match var(name).filter(|v| !v.is_empty()) {
            Some(v) => Ok(v),
            None if required => Err(CniError::new(
                code::INVALID_ENV,
                "missing environment variable",
                format!("{name} must be set for CNI_COMMAND {command:?}"),
            )),
            None => Ok(String::new()),
        };
        let attach = matches!(command, Command::Add | Command::Del | Command::Check);
        let strict = matches!(command, Command::Add | Command::Check);
        Ok(Self {
            container_id: need("CNI_CONTAINERID", attach)?,
            netns: need("CNI_NETNS", strict)?,
            ifname: need("CNI_IFNAME", attach)?,
            args: parse_args(&var("CNI_ARGS").unwrap_or_default()),
        })
    }

    /// `K8S_POD_NAMESPACE` and `K8S_POD_NAME` of `CNI_ARGS`.
    pub fn pod(&self) -> Option<(&str, &str)> {
        let ns = self
            .args
            .get("K8S_POD_NAMESPACE")
            .filter(|s| !s.is_empty())?;
        let name = self.args.get("K8S_POD_NAME").filter(|s| !s.is_empty())?;
        Some((ns, name))
    }
}

/// `K1=V1;K2=V2` (entries without `=` are skipped).
pub fn parse_args(s: &str) -> BTreeMap<String, String> {
    s.split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// What to do when the agent does not confirm enforcement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// ADD fails: the pod does not start (fail-closed).
    #[default]
    Fail,
    /// ADD passes and says so on stderr: the pod starts unenforced.
    Ignore,
}

/// Default `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The plugin's configuration as the runtime passes it on stdin: the
/// list's `cniVersion` and `name`, this plugin's entry, and (chained)
/// `prevResult`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// The protocol version of this invocation.
    pub cni_version: String,
    /// The network's name.
    #[serde(default)]
    pub name: String,
    /// The plugin type (`bulkhead-cni`).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The agent's API socket.
    #[serde(default = "default_socket")]
    pub socket: String,
    /// How long ADD waits for the agent (`"30s"`, `"1m"`, `"500ms"`).
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    /// [`FailurePolicy`].
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// The previous plugin's result (ADD, CHECK, and DEL when known).
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// GC: the attachments still valid.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidAttachment {
    /// `containerID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The interface.
    #[serde(default)]
    pub ifname: String,
}

fn default_socket() -> String {
    crate::wire::DEFAULT_SOCKET.to_owned()
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("timeout {s:?}: {e}")))
}

impl NetConf {
    /// Parses stdin; a version this plugin does not speak is refused.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let conf: NetConf = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                "decoding the network configuration",
                e.to_string(),
            )
        })?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                "incompatible CNI version",
                format!(
                    "cniVersion {} is not one of {}",
                    conf.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        Ok(conf)
    }

    /// The configured timeout, or [`DEFAULT_TIMEOUT`].
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// Whether the version has CHECK (0.4.0 and later).
    pub fn has_check(&self) -> bool {
        !self.cni_version.starts_with("0.3.")
    }
}

/// The `VERSION` answer for the requested version (`None`: stdin had
/// none). A version this plugin does not speak is an error.
pub fn version_result(requested: Option<&str>) -> Result<Value, CniError> {
    let latest = SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1];
    let version = match requested {
        None => latest,
        Some(v) if SUPPORTED_VERSIONS.contains(&v) => v,
        Some(v) => {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                "incompatible CNI version",
                format!(
                    "cniVersion {v} is not one of {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
    };
    Ok(serde_json::json!({ "cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS }))
}

/// The pod's attachment as a previous result describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The container-side interface's MAC, if given.
    pub mac: Option<String>,
    /// Host-side interfaces (no `sandbox`), in order.
    pub host_interfaces: Vec<String>,
    /// Addresses on the container-side interface.
    pub ips: Vec<IpAddr>,
}

#[derive(Deserialize)]
struct PrevResult {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
}

#[derive(Deserialize)]
struct Interface {
    name: String,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    sandbox: Option<String>,
}

#[derive(Deserialize)]
struct IpConfig {
    address: String,
    #[serde(default)]
    interface: Option<usize>,
}

/// Reads the attachment of `ifname` from a previous result: the
/// container-side interface is the one with a `sandbox` (named `ifname`
/// if several are), the host side every interface without one, and the
/// addresses those of `ips` on the container interface (or on none).
pub fn attachment(prev: &Value, ifname: &str) -> Result<Attachment, CniError> {
    let bad = |details: String| CniError::new(code::INVALID_CONFIG, "unusable prevResult", details);
    let r: PrevResult = serde_json::from_value(prev.clone()).map_err(|e| bad(e.to_string()))?;
    let in_sandbox = |i: &Interface| i.sandbox.as_deref().is_some_and(|s| !s.is_empty());
    let container = r
        .interfaces
        .iter()
        .position(|i| in_sandbox(i) && i.name == ifname)
        .or_else(|| r.interfaces.iter().position(in_sandbox));
    let host_interfaces: Vec<String> = r
        .interfaces
        .iter()
        .filter(|i| !in_sandbox(i))
        .map(|i| i.name.clone())
        .collect();
    let mut ips = Vec::new();
    for ip in &r.ips {
        if ip.interface.is_some() && ip.interface != container {
            continue;
        }
        let addr = ip.address.split('/').next().unwrap_or_default();
        ips.push(
            addr.parse::<IpAddr>()
                .map_err(|_| bad(format!("ips: {:?} is not an address/prefix", ip.address)))?,
        );
    }
    if ips.is_empty() {
        return Err(bad(
            "it has no address for the pod (is an IPAM plugin configured?)".into(),
        ));
    }
    if host_interfaces.is_empty() {
        return Err(bad(
            "it names no host-side interface (one without \"sandbox\")".into(),
        ));
    }
    let mac = container
        .and_then(|c| r.interfaces[c].mac.clone())
        .filter(|m| !m.is_empty());
    if let Some(m) = &mac
        && crate::wire::parse_mac(m).is_none()
    {
        return Err(bad(format!("interface MAC {m:?} is not aa:bb:cc:dd:ee:ff")));
    }
    Ok(Attachment {
        mac,
        host_interfaces,
        ips,
    })
}

#[cfg(test)]
mod tests;
