//! `bulkhead agent --ui-addr/--ui-token-file`: the web UI's listener,
//! checked and bound before the agent enters `--netns` (a socket keeps
//! the network namespace it was made in, so a lab's agent serves its UI on
//! the host's loopback).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bulkhead_agent::api::ui::{self, TokenError, UiConfig, UiListener, UiToken};

/// Why the UI flags are refused (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum UiCliError {
    /// A non-loopback address without a token.
    #[error(
        "--ui-addr {addr} is not a loopback address: anyone who can reach it could read the \
         map, so it needs --ui-token-file FILE (or listen on 127.0.0.1 or [::1])"
    )]
    NotLoopback {
        /// The address.
        addr: SocketAddr,
    },
    /// `lab up --ui` off loopback (a lab's agents have no token).
    #[error(
        "lab up --ui {addr}: a lab's web UI listens on this host's loopback only (127.0.0.1 or [::1])"
    )]
    LabNotLoopback {
        /// The address.
        addr: SocketAddr,
    },
    /// `--ui-token-file` without `--ui-addr`.
    #[error("--ui-token-file {} needs --ui-addr ADDR", path.display())]
    TokenWithoutAddr {
        /// The token file.
        path: PathBuf,
    },
    /// The token file cannot be used.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Binding the address failed.
    #[error("--ui-addr {addr}: cannot listen: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The UI listener of `--ui-addr` (bound now) and its token, if any.
pub fn listener(
    addr: Option<SocketAddr>,
    token_file: Option<&Path>,
) -> Result<Option<UiConfig>, UiCliError> {
    let Some(addr) = addr else {
        return match token_file {
            Some(path) => Err(UiCliError::TokenWithoutAddr {
                path: path.to_owned(),
            }),
            None => Ok(None),
        };
    };
    let token = token_file.map(read_token).transpose()?;
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(UiCliError::NotLoopback { addr });
    }
    let listener = UiListener::bind(addr).map_err(|source| UiCliError::Bind { addr, source })?;
    Ok(Some(UiConfig { listener, token }))
}

/// The token in `path`, warning when others may read the file.
fn read_token(path: &Path) -> Result<UiToken, UiCliError> {
    let token = UiToken::read_file(path)?;
    if let Some(mode) = ui::loose_permissions(path) {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{mode:o}"),
            "the UI token file is readable by its group or others: chmod 600 it"
        );
    }
    Ok(token)
}
