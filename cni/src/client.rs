//! HTTP/1.1 over the agent's Unix socket (hyper's client connection), one
//! request per connection as the agent's API serves them.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

/// A request to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected (no agent, or not yet).
    #[error("connecting to the agent's socket {}: {source}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("talking to the agent: {0}")]
    Http(#[from] hyper::Error),
    /// The agent answered an error status.
    #[error("the agent answered {status}: {message}")]
    Status {
        /// The status.
        status: u16,
        /// Its `error` (or the body).
        message: String,
    },
    /// The answer did not decode.
    #[error("decoding the agent's answer: {0}")]
    Decode(#[from] serde_json::Error),
}

impl ClientError {
    /// Whether the agent is not there (nothing listens on the socket).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Connect { .. })
    }

    /// The status the agent answered, if it answered an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Sends `method path` (with `body` as JSON) on a new connection to
/// `socket` and decodes a 2xx answer as `T`.
pub async fn call<T: DeserializeOwned>(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<&impl Serialize>,
) -> Result<T, ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_owned(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let bytes = match body {
        Some(b) => Bytes::from(serde_json::to_vec(b)?),
        None => Bytes::new(),
    };
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("bulkhead-cni/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(bytes))
        .expect("a well-formed request");
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(ClientError::Status {
            status: status.as_u16(),
            message: error_message(status, &body),
        });
    }
    Ok(serde_json::from_slice(&body)?)
}

/// The `error` of the API's JSON error body, else the body.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            if text.is_empty() {
                status.to_string()
            } else {
                text
            }
        })
}
