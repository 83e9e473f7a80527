//! Errors of the lab.

use std::net::IpAddr;
use std::path::PathBuf;

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab name is not usable in interface-sized names.
    #[error("invalid lab name {name:?}: use 1 to 6 characters of [a-z0-9]")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// `lab up` on a lab that exists (state or namespaces).
    #[error("lab {name:?} already exists ({what}); run `bulkhead lab down --name {name}` first")]
    Exists {
        /// The lab.
        name: String,
        /// What was found.
        what: String,
    },
    /// A command that needs a running lab found none.
    #[error("lab {name:?} is not up (no state at {})", path.display())]
    NotUp {
        /// The lab.
        name: String,
        /// Where the state was looked for.
        path: PathBuf,
    },
    /// A helper program could not be started.
    #[error("running {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The error.
        source: std::io::Error,
    },
    /// A helper program failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The state file is not valid JSON of the expected shape.
    #[error("state file {}: {source}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
    /// A pod address has no gateway, collides with one, or is otherwise unusable.
    #[error("pod {pod}: address {addr} {why}")]
    PodAddress {
        /// The pod.
        pod: String,
        /// The address.
        addr: IpAddr,
        /// What is wrong.
        why: &'static str,
    },
    /// An external host address is unusable.
    #[error("external host {addr}: {why}")]
    External {
        /// The address.
        addr: IpAddr,
        /// What is wrong.
        why: String,
    },
    /// Two hosts hash to one veth name (astronomically unlikely).
    #[error("hosts {first} and {second} both get veth name {veth}")]
    VethCollision {
        /// The name.
        veth: String,
        /// One host.
        first: String,
        /// The other.
        second: String,
    },
    /// A server did not report ready.
    #[error("server in {netns} did not become ready: {why}")]
    ServerNotReady {
        /// Its namespace.
        netns: String,
        /// Why.
        why: String,
    },
    /// The manifests no longer give the pods the lab was made with.
    #[error(
        "the manifests in {} changed since `lab up` ({what}); recreate the lab",
        manifests.display()
    )]
    ManifestsChanged {
        /// The directory.
        manifests: PathBuf,
        /// What differs.
        what: String,
    },
    /// A probe helper printed something unreadable.
    #[error("probe helper in {netns}: {why}")]
    ProbeHelper {
        /// Its namespace.
        netns: String,
        /// Why.
        why: String,
    },
    /// Socket set-up of a server or probe failed.
    #[error("{what}: {source}")]
    Socket {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl LabError {
    /// An [`LabError::Io`].
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io { path, source }
    }
}
