//! The HTTP/1.1 subset the API speaks: reading a request head, writing a
//! response with a known length or chunked, and the query string.

use std::io::{self, Read, Write};

/// Largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;

/// Errors reading a request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The connection failed or timed out.
    #[error("reading the request: {0}")]
    Io(#[from] io::Error),
    /// The client closed the connection before sending a request.
    #[error("connection closed before a request")]
    Closed,
    /// The head is larger than [`MAX_HEAD`].
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    /// The head is not HTTP/1.x.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

/// A request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method (`GET`).
    pub method: String,
    /// Path (before `?`), not decoded.
    pub path: String,
    /// Query (after `?`), not decoded; empty when there is none.
    pub query: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a request head (and nothing after it) from `r`.
pub fn read_request(r: &mut impl Read) -> Result<Request, RequestError> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let end = loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Err(if head.is_empty() {
                RequestError::Closed
            } else {
                RequestError::Malformed("connection closed inside the request head")
            });
        }
        // Look for the end from a little before the new bytes.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find_head_end(&head[from..]) {
            break from + end;
        }
        if head.len() > MAX_HEAD {
            return Err(RequestError::TooLarge);
        }
    };
    if end > MAX_HEAD {
        return Err(RequestError::TooLarge);
    }
    parse_head(&head[..end])
}

/// The length of the head in `b` up to its blank line, if complete.
fn find_head_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).find(|&i| b[i..].starts_with(b"\r\n\r\n") || b[i..].starts_with(b"\n\n"))
}

fn parse_head(head: &[u8]) -> Result<Request, RequestError> {
    let head = std::str::from_utf8(head).map_err(|_| RequestError::Malformed("not UTF-8"))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed("bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(RequestError::Malformed("not HTTP/1.x"));
    }
    if !target.starts_with('/') {
        return Err(RequestError::Malformed("request target must be a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(RequestError::Malformed("header without a colon"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
    })
}

/// The reason phrase of the status codes the API uses.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes a whole response with `Content-Length` and `Connection: close`.
pub fn write_response(
    w: &mut impl Write,
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

/// The JSON error body `{"error": message, "status": status}`.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    let mut body = serde_json::to_vec(&serde_json::json!({ "error": message, "status": status }))
        .unwrap_or_default();
    body.push(b'\n');
    body
}

/// Writes a JSON error response.
pub fn write_error(
    w: &mut impl Write,
    status: u16,
    message: &str,
    extra_headers: &[(&str, &str)],
) -> io::Result<()> {
    write_response(
        w,
        status,
        "application/json",
        extra_headers,
        &error_body(status, message),
    )
}

/// Writes the head of a chunked response (`Connection: close`).
pub fn write_chunked_head(w: &mut impl Write, status: u16, content_type: &str) -> io::Result<()> {
    write!(
        w,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        reason(status)
    )?;
    w.flush()
}

/// Writes one chunk (not the last: an empty `data` writes nothing) and flushes.
pub fn write_chunk(w: &mut impl Write, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut out = Vec::with_capacity(data.len() + 12);
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    w.write_all(&out)?;
    w.flush()
}

/// Writes the last chunk, ending a chunked body.
pub fn write_last_chunk(w: &mut impl Write) -> io::Result<()> {
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
}

/// The decoded `key=value` pairs of a query string, in order.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Encodes `pairs` as a query string (form-urlencoded, `+` for space).
pub fn encode_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}
