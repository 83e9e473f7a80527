//! Errors of the fake API server, and their `Status` objects as the real
//! server sends them (`reason`, `code`, `details`).

use serde_json::{Value, json};

/// Why a request or a handle call failed. Each maps to the HTTP code and
/// `Status.reason` a real kube-apiserver uses ([`ApiServerError::code`],
/// [`ApiServerError::reason`]).
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// The object does not exist (404 `NotFound`).
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// Plural resource name, e.g. `pods`.
        resource: String,
        /// Object name.
        name: String,
    },
    /// Create of an object that exists (409 `AlreadyExists`).
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
    },
    /// A precondition (resourceVersion or uid) does not hold (409 `Conflict`).
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {why}")]
    Conflict {
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
        /// What did not match.
        why: String,
    },
    /// The request is malformed (400 `BadRequest`).
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
    },
    /// The object is not valid (422 `Invalid`).
    #[error("{kind} \"{name}\" is invalid: {field}: {message}")]
    Invalid {
        /// Kind of the object.
        kind: String,
        /// Name of the object (may be empty).
        name: String,
        /// The offending field path, e.g. `metadata.name`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No resource of this apiVersion and kind is served (404 `NotFound`).
    #[error("no resource of apiVersion {api_version:?}, kind {kind:?} is served")]
    UnknownKind {
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's `kind`.
        kind: String,
    },
    /// The requested resourceVersion or continue token is older than the
    /// compaction point (410 `Expired`).
    #[error("{message}")]
    Expired {
        /// The real server's wording for the case.
        message: String,
        /// For an expired continue token: a token that continues from the
        /// latest snapshot instead (inconsistent), as the real server gives.
        continue_token: Option<String>,
    },
    /// The requested resourceVersion is newer than the store (504 `Timeout`).
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion {
        /// What the client asked for.
        requested: u64,
        /// The store's resourceVersion.
        current: u64,
    },
    /// The verb is not supported on this path (405 `MethodNotAllowed`).
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// A body of a content type the server does not take (415).
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {accepted}"
    )]
    UnsupportedMediaType {
        /// The media types accepted for this request.
        accepted: &'static str,
    },
    /// A YAML document given to `apply_yaml` does not parse (handle only).
    #[error("YAML document {index}: {source}")]
    Yaml {
        /// 0-based index of the document.
        index: usize,
        /// The parser's error.
        source: serde_yaml_ng::Error,
    },
}

impl ApiServerError {
    /// Shorthand for [`ApiServerError::BadRequest`].
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
        }
    }

    /// The HTTP status code the real server answers with.
    pub fn code(&self) -> u16 {
        match self {
            Self::NotFound { .. } | Self::UnknownKind { .. } => 404,
            Self::AlreadyExists { .. } | Self::Conflict { .. } => 409,
            Self::BadRequest { .. } | Self::Yaml { .. } => 400,
            Self::Invalid { .. } => 422,
            Self::Expired { .. } => 410,
            Self::TooLargeResourceVersion { .. } => 504,
            Self::MethodNotAllowed => 405,
            Self::UnsupportedMediaType { .. } => 415,
        }
    }

    /// The `Status.reason` the real server gives.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } | Self::UnknownKind { .. } => "NotFound",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::Conflict { .. } => "Conflict",
            Self::BadRequest { .. } | Self::Yaml { .. } => "BadRequest",
            Self::Invalid { .. } => "Invalid",
            Self::Expired { .. } => "Expired",
            Self::TooLargeResourceVersion { .. } => "Timeout",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::UnsupportedMediaType { .. } => "UnsupportedMediaType",
        }
    }

    /// The `Status` object (`kind: Status`, `status: Failure`) for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        match self {
            Self::NotFound { resource, name }
            | Self::AlreadyExists { resource, name }
            | Self::Conflict { resource, name, .. } => {
                status["details"] = json!({"name": name, "kind": resource});
            }
            Self::Invalid {
                kind,
                name,
                field,
                message,
            } => {
                status["details"] = json!({
                    "name": name,
                    "kind": kind,
                    "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}],
                });
            }
            Self::Expired {
                continue_token: Some(token),
                ..
            } => status["metadata"]["continue"] = json!(token),
            Self::TooLargeResourceVersion { .. } => {
                status["details"] = json!({
                    "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                    "retryAfterSeconds": 1,
                });
            }
            _ => {}
        }
        status
    }
}
