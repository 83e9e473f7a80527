//! Who may use the UI listener: the token (a Bearer header or the
//! `bulkhead_ui` cookie, compared in constant time) and, without a token,
//! the loopback `Host` guard against DNS rebinding (a page of another
//! site whose name was made to resolve to 127.0.0.1 sends its own name as
//! `Host`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE, HOST};
use subtle::ConstantTimeEq;

/// Name of the cookie `GET /ui/?token=` sets.
pub const COOKIE_NAME: &str = "bulkhead_ui";

/// The secret a non-loopback UI listener requires (its `Debug` does not
/// show it).
#[derive(Clone)]
pub struct UiToken(String);

/// Why a token is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading the token file failed.
    #[error("reading the UI token file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The token (the file's first line, trimmed) is empty.
    #[error("the UI token{} is empty", from_file(.path))]
    Empty {
        /// The file it was read from, if any.
        path: Option<PathBuf>,
    },
    /// The token has a character a cookie cannot carry.
    #[error(
        "the UI token{} has a character other than printable ASCII without space, '\"', ',', ';' and '\\\\' (it travels in a cookie)",
        from_file(.path)
    )]
    BadCharacter {
        /// The file it was read from, if any.
        path: Option<PathBuf>,
    },
}

fn from_file(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" in {}", p.display()))
        .unwrap_or_default()
}

impl std::fmt::Debug for UiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UiToken(…)")
    }
}

impl UiToken {
    /// A token: non-empty, only characters a cookie value may hold
    /// (RFC 6265 cookie-octets: printable ASCII but space, `"`, `,`, `;`, `\`).
    pub fn new(token: &str) -> Result<UiToken, TokenError> {
        Self::checked(token, None)
    }

    /// The token in `path`: its first line, trimmed.
    pub fn read_file(path: &Path) -> Result<UiToken, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        let first = text.lines().next().unwrap_or_default().trim();
        Self::checked(first, Some(path))
    }

    fn checked(token: &str, path: Option<&Path>) -> Result<UiToken, TokenError> {
        let path = path.map(Path::to_owned);
        if token.is_empty() {
            return Err(TokenError::Empty { path });
        }
        let cookie_octet =
            |b: u8| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e);
        if !token.bytes().all(cookie_octet) {
            return Err(TokenError::BadCharacter { path });
        }
        Ok(UiToken(token.to_owned()))
    }

    /// The token itself (for the cookie and the URL printed to the user).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the token, in time independent of where
    /// they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(candidate.as_bytes()))
    }

    /// Whether the request carries the token: `Authorization: Bearer
    /// <token>`, or the `bulkhead_ui` cookie.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .any(|t| self.matches(t));
        bearer || cookies(headers, COOKIE_NAME).any(|t| self.matches(t))
    }

    /// The `Set-Cookie` value that makes a browser send the token.
    pub fn set_cookie(&self) -> String {
        format!(
            "{COOKIE_NAME}={}; HttpOnly; SameSite=Strict; Path=/",
            self.0
        )
    }
}

/// The values of the cookies named `name` in the request's `Cookie` headers.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// The permission bits of `path` that let its group or others read it, if
/// any (a token file should be the owner's only).
pub fn loose_permissions(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    let loose = mode & 0o044;
    (loose != 0).then_some(mode & 0o777)
}

/// Whether the request's `Host` names this machine's loopback: `localhost`
/// (or a name under `.localhost`), an address in 127.0.0.0/8, or `[::1]`,
/// with any port. A request without `Host` is refused too.
pub fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((addr, "")) => addr,
            Some((addr, port)) if port.strip_prefix(':').is_some_and(valid_port) => addr,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}
