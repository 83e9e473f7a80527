//! Errors of the dataplane (load, pin, attach, sync).

use std::path::PathBuf;

use bulkhead_policy::compile::maps::ImageTooLarge;

/// What went wrong in the dataplane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The binary carries no eBPF ELF.
    #[error(
        "built without the eBPF dataplane: build with `cargo xtask build-ebpf` (or `cargo xtask test`/`demo`), \
         then rebuild bulkhead (or set BULKHEAD_EBPF_ELF when building)"
    )]
    NoElf,
    /// The pin directory is not on a bpffs that outlives this process.
    #[error("{path}: {reason}")]
    Bpffs {
        /// The pin directory.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A filesystem operation on the pin directory failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Loading the ELF (maps, BTF) failed.
    #[error("loading the eBPF ELF: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    /// A program is missing from the ELF or has the wrong type.
    #[error("the eBPF ELF has no {kind} program {name:?}")]
    MissingProgram {
        /// Program name.
        name: &'static str,
        /// Expected kind.
        kind: &'static str,
    },
    /// A map is missing from the ELF or the pins, or has the wrong type.
    #[error("map {name}: {reason}")]
    Map {
        /// Map name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A program operation (load, pin, attach, query) failed.
    #[error("{action} {name}: {source}")]
    Program {
        /// What was done.
        action: &'static str,
        /// Program (and device) concerned.
        name: String,
        /// The error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Pinning or opening a pinned object failed.
    #[error("{action} {path}: {reason}")]
    Pin {
        /// What was done.
        action: &'static str,
        /// The pin.
        path: PathBuf,
        /// The error, rendered.
        reason: String,
    },
    /// A map read or write failed.
    #[error("{action} {map}: {source}")]
    MapOp {
        /// What was done.
        action: &'static str,
        /// Which map.
        map: &'static str,
        /// The error.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// The new image does not fit a slot; the policy in force stays.
    #[error("rejected: {0}; the policy in force stays")]
    TooLarge(#[from] ImageTooLarge),
}

impl DataplaneError {
    pub(crate) fn map_op(
        action: &'static str,
        map: &'static str,
    ) -> impl FnOnce(aya::maps::MapError) -> Self {
        move |e| DataplaneError::MapOp {
            action,
            map,
            source: Box::new(e),
        }
    }

    pub(crate) fn program(
        action: &'static str,
        name: impl Into<String>,
    ) -> impl FnOnce(aya::programs::ProgramError) -> Self {
        let name = name.into();
        move |e| DataplaneError::Program {
            action,
            name,
            source: Box::new(e),
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| DataplaneError::Io {
            action,
            path,
            source,
        }
    }
}
