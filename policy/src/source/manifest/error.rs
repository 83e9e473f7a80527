//! Errors of the manifest loader: each names the file, the object and the
//! field, so a user can go straight to the mistake.

use std::fmt;
use std::path::PathBuf;

use crate::model::Origin;
use crate::model::addressing::AddressingError;

/// The object an error is about: `Kind namespace/name`, as far as known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectRef {
    /// `kind`, if the document had one.
    pub kind: Option<String>,
    /// Namespace (defaulted), if the object has a name.
    pub namespace: Option<String>,
    /// `metadata.name`, if present.
    pub name: Option<String>,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_deref().unwrap_or("object"))?;
        match (&self.namespace, &self.name) {
            (Some(ns), Some(n)) => write!(f, " {ns}/{n}"),
            (None, Some(n)) => write!(f, " {n}"),
            _ => Ok(()),
        }
    }
}

/// What is wrong with a field.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A field the object's schema does not have.
    #[error("unknown field")]
    UnknownField,
    /// A required field is absent.
    #[error("required field is missing")]
    Missing,
    /// The value does not decode as the schema's type.
    #[error("{0}")]
    Decode(serde_json::Error),
    /// A policy kind Bulkhead does not enforce yet: better to stop than to
    /// compute connectivity that ignores it.
    #[error(
        "kind {kind} ({api_version}) is not supported; only networking.k8s.io/v1 NetworkPolicy \
         and policy.networking.k8s.io ClusterNetworkPolicy (v1alpha2), AdminNetworkPolicy and \
         BaselineAdminNetworkPolicy (v1alpha1) are"
    )]
    UnsupportedPolicyKind {
        /// The kind.
        kind: String,
        /// Its apiVersion.
        api_version: String,
    },
    /// A NetworkPolicy with another apiVersion.
    #[error("apiVersion {0:?} is not supported for NetworkPolicy (expected networking.k8s.io/v1)")]
    UnsupportedApiVersion(String),
    /// A kind of another apiVersion than the one Bulkhead reads.
    #[error("apiVersion {given:?} is not supported for {kind} (expected {expected})")]
    WrongApiVersion {
        /// The kind.
        kind: &'static str,
        /// The apiVersion given.
        given: String,
        /// The one supported.
        expected: &'static str,
    },
    /// Not exactly one of a set of fields (the schema's
    /// MinProperties/MaxProperties of 1).
    #[error("exactly one of {fields} must be set ({found} are)")]
    OneOf {
        /// The fields.
        fields: &'static str,
        /// How many are set.
        found: usize,
    },
    /// A list shorter or longer than the schema allows.
    #[error("has {found} items (the API server accepts {min} to {max})")]
    Count {
        /// Items given.
        found: usize,
        /// MinItems.
        min: usize,
        /// MaxItems.
        max: usize,
    },
    /// A field the API accepts that Bulkhead does not implement.
    #[error("{0}")]
    UnsupportedField(&'static str),
    /// A `*List` without `items`, or items that are not objects.
    #[error("list items must be objects")]
    BadListItem,
    /// Not a CIDR.
    #[error("invalid CIDR {value:?}: {reason}")]
    InvalidCidr {
        /// The text.
        value: String,
        /// Parser's message.
        reason: String,
    },
    /// An `except` not strictly inside its `cidr`.
    #[error("except {except} is not strictly inside cidr {cidr}")]
    ExceptOutsideCidr {
        /// The except entry.
        except: String,
        /// The block.
        cidr: String,
    },
    /// A selector operator other than In, NotIn, Exists, DoesNotExist.
    #[error("unknown selector operator {0:?} (expected In, NotIn, Exists or DoesNotExist)")]
    BadOperator(String),
    /// In/NotIn without values, or Exists/DoesNotExist with values.
    #[error("operator {operator} {expectation}")]
    OperatorValues {
        /// The operator.
        operator: String,
        /// "needs at least one value" / "takes no values".
        expectation: &'static str,
    },
    /// A protocol other than TCP, UDP, SCTP.
    #[error("unknown protocol {0:?} (expected TCP, UDP or SCTP)")]
    BadProtocol(String),
    /// A port number outside 1..=65535.
    #[error("port {0} is outside 1-65535")]
    PortOutOfRange(i64),
    /// A named port that is not a valid IANA service name.
    #[error(
        "port name {0:?} is not valid (1-15 lower-case letters, digits and '-', with a letter)"
    )]
    BadPortName(String),
    /// endPort with a named or missing port.
    #[error("endPort needs a numeric port")]
    EndPortWithoutNumericPort,
    /// endPort below port.
    #[error("endPort {end} is below port {port}")]
    EndPortBelowPort {
        /// port.
        port: u16,
        /// endPort.
        end: i64,
    },
    /// A peer with nothing in it, or ipBlock together with selectors.
    #[error("{0}")]
    BadPeer(&'static str),
    /// A policyTypes entry other than Ingress and Egress.
    #[error("unknown policy type {0:?} (expected Ingress or Egress)")]
    BadPolicyType(String),
    /// A named port no pod declares (a warning: the entry allows nothing).
    #[error("named port {name:?} ({protocol}) is not a container port of any pod")]
    NamedPortUnresolved {
        /// The name.
        name: String,
        /// Protocol of the rule.
        protocol: String,
    },
    /// A value outside a closed set (a Service's type, policies, families).
    #[error("unsupported value {value:?} (expected {})", .supported.join(", "))]
    NotSupported {
        /// The value.
        value: String,
        /// What the API server accepts.
        supported: &'static [&'static str],
    },
    /// A value the API server refuses, and why.
    #[error("invalid value {value:?}: {reason}")]
    Invalid {
        /// The value, as written.
        value: String,
        /// Why.
        reason: String,
    },
    /// A field the API server refuses in this object's state.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A value given twice where it must be unique.
    #[error("duplicate value {0}")]
    DuplicateValue(String),
    /// A Service's named targetPort that no pod it selects declares (a
    /// warning: those pods are no backends of that port).
    #[error(
        "target port {name:?} ({protocol}) is not a container port of any pod the Service selects"
    )]
    TargetPortUnresolved {
        /// The name.
        name: String,
        /// Protocol of the Service port.
        protocol: String,
    },
    /// One of several Service ports without a name: the API server
    /// refuses it; nothing here refers to Service ports by name, so the
    /// Service is kept (a warning).
    #[error(
        "required field is missing (the API server requires a name on each of several ports; \
         kept, as nothing here refers to a port by name)"
    )]
    UnnamedPort,
    /// A field the API server accepts that has no effect here (a warning).
    #[error("{0}")]
    NoEffect(&'static str),
    /// A `bulkhead.io/mode` annotation that is not a mode.
    #[error("{0}")]
    BadMode(crate::model::UnknownMode),
    /// Two objects produce the same namespace/name.
    #[error("{what} {key} is also defined at {other}")]
    Duplicate {
        /// "pod", "policy", "namespace", "service".
        what: &'static str,
        /// namespace/name.
        key: String,
        /// The other definition.
        other: Origin,
    },
}

/// One problem in one field of one object of one file.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {object}: {field}: {problem}")]
pub struct ObjectError {
    /// File and document.
    pub origin: Origin,
    /// The object.
    pub object: ObjectRef,
    /// Path of the field, e.g. `spec.ingress[0].from[1].ipBlock.cidr`
    /// (`(object)` for the whole object).
    pub field: String,
    /// What is wrong.
    pub problem: Problem,
}

/// Any error of loading a manifest directory.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The directory or a file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A YAML file that does not parse.
    #[error("{}: invalid YAML: {source}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser error (with line and column).
        source: serde_yaml_ng::Error,
    },
    /// A JSON file that does not parse.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser error (with line and column).
        source: serde_json::Error,
    },
    /// A problem in an object.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// Addresses could not be assigned.
    #[error(transparent)]
    Addressing(#[from] AddressingError),
    /// The walk or a read went over a limit or met something it cannot
    /// read (see [`super::walk`]; its I/O errors become [`ManifestError::Io`]).
    #[error(transparent)]
    Walk(super::walk::WalkError),
    /// No manifest file under the directory.
    #[error("{}: no .yaml, .yml or .json file found", .0.display())]
    Empty(PathBuf),
}

impl From<super::walk::WalkError> for ManifestError {
    fn from(e: super::walk::WalkError) -> Self {
        match e {
            super::walk::WalkError::Io { path, source } => ManifestError::Io { path, source },
            e => ManifestError::Walk(e),
        }
    }
}

/// Every error found in a load; the load as a whole failed and nothing of it
/// is used.
#[derive(Debug)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}
