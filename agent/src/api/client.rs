//! A minimal HTTP/1.1 client for the API (one request per connection,
//! over a Unix or TCP stream): `bulkhead flows`, `bulkhead quarantine` and
//! the tests use it.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::alerts::ActiveBaseline;
use crate::quarantine::{QuarantineList, QuarantineRequest, RemoveAnswer};

/// Errors of a request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Sending the request or reading the answer failed.
    #[error("talking to the agent's API: {0}")]
    Io(#[from] io::Error),
    /// The answer is not HTTP/1.x as the API sends it.
    #[error("malformed answer from the agent's API: {0}")]
    Malformed(&'static str),
    /// The API answered with an error status.
    #[error("the agent's API answered {status}: {message}")]
    Status {
        /// The status code.
        status: u16,
        /// The `error` of its JSON body (or the body).
        message: String,
    },
    /// A 2xx answer's JSON body is not what this version reads.
    #[error("unreadable answer from the agent's API (a different version?): {0}")]
    Decode(#[source] serde_json::Error),
}

/// An answer whose status was 2xx; read the body from it (chunked transfer
/// decoded).
pub struct Response<S> {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    body: Body<S>,
}

enum Body<S> {
    Chunked(ChunkedReader<BufReader<S>>),
    Length(io::Take<BufReader<S>>),
    ToEof(BufReader<S>),
}

impl<S> Response<S> {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Read> Read for Response<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.body {
            Body::Chunked(r) => r.read(buf),
            Body::Length(r) => r.read(buf),
            Body::ToEof(r) => r.read(buf),
        }
    }
}

/// Sends `GET target` on `stream` (which must not be shut down for
/// writing: the server takes that as the client going away) and reads the
/// answer's head. A non-2xx status is [`ClientError::Status`].
pub fn get<S: Read + Write>(stream: S, target: &str) -> Result<Response<S>, ClientError> {
    request(stream, "GET", target, None)
}

/// Sends `method target` with a JSON `body` (if any) on `stream`, as
/// [`get`] does.
pub fn request<S: Read + Write>(
    mut stream: S,
    method: &str,
    target: &str,
    body: Option<&[u8]>,
) -> Result<Response<S>, ClientError> {
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bulkhead/{}\r\n\
         Accept: application/x-ndjson, application/json, text/plain\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes();
    if let Some(body) = body {
        request.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    request.extend_from_slice(b"\r\n");
    if let Some(body) = body {
        request.extend_from_slice(body);
    }
    // A server that answers without reading (503 when busy) may close
    // before the request is written: its answer is still readable.
    let sent = stream.write_all(&request).and_then(|()| stream.flush());
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    match (r.read_line(&mut line), sent) {
        (Ok(0), Err(e)) | (Err(_), Err(e)) => return Err(e.into()),
        (Ok(0), Ok(())) => {
            return Err(ClientError::Malformed("connection closed before an answer"));
        }
        (Err(e), Ok(())) => return Err(e.into()),
        (Ok(_), _) => {}
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(ClientError::Malformed("bad status line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ClientError::Malformed("not HTTP/1.x"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| ClientError::Malformed("bad status code"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(ClientError::Malformed("connection closed inside the head"));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (name, value) = l
            .split_once(':')
            .ok_or(ClientError::Malformed("header without a colon"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body =
        if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            Body::Chunked(ChunkedReader::new(r))
        } else if let Some(len) = find("content-length") {
            let len: u64 = len
                .parse()
                .map_err(|_| ClientError::Malformed("bad Content-Length"))?;
            Body::Length(r.take(len))
        } else {
            Body::ToEof(r)
        };
    let mut resp = Response {
        status,
        headers,
        body,
    };
    if !(200..300).contains(&status) {
        let mut text = String::new();
        let _ = resp.by_ref().take(64 * 1024).read_to_string(&mut text);
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        return Err(ClientError::Status { status, message });
    }
    Ok(resp)
}

/// The JSON body of a 2xx answer.
fn read_json<S: Read, T: serde::de::DeserializeOwned>(resp: Response<S>) -> Result<T, ClientError> {
    serde_json::from_reader(resp).map_err(ClientError::Decode)
}

/// `GET /v1/quarantine`: the quarantines in force.
pub fn quarantines<S: Read + Write>(stream: S) -> Result<QuarantineList, ClientError> {
    read_json(get(stream, super::QUARANTINE_PATH)?)
}

/// `POST /v1/quarantine`: quarantines a pod; what is in force once it is
/// (504, [`ClientError::Status`], when it is stored but not enforced in
/// time).
pub fn quarantine<S: Read + Write>(
    stream: S,
    req: &QuarantineRequest,
) -> Result<QuarantineList, ClientError> {
    let body = serde_json::to_vec(req).expect("a request serializes");
    read_json(request(
        stream,
        "POST",
        super::QUARANTINE_PATH,
        Some(&body),
    )?)
}

/// `DELETE /v1/quarantine/{namespace}/{pod}`: lifts a pod's quarantine;
/// whether the agent held it, and what is in force once it is lifted.
pub fn unquarantine<S: Read + Write>(
    stream: S,
    namespace: &str,
    pod: &str,
) -> Result<RemoveAnswer, ClientError> {
    let target = format!(
        "{}/{}/{}",
        super::QUARANTINE_PATH,
        path_segment(namespace),
        path_segment(pod)
    );
    read_json(request(stream, "DELETE", &target, None)?)
}

/// `GET /v1/baselines`: the baselines the agent alerts on.
pub fn baselines<S: Read + Write>(stream: S) -> Result<Vec<ActiveBaseline>, ClientError> {
    read_json(get(stream, super::BASELINES_PATH)?)
}

/// `PUT /v1/baselines`: activates the baseline `file` holds (a baseline
/// file's content); the baselines active now.
pub fn activate_baseline<S: Read + Write>(
    stream: S,
    file: &[u8],
) -> Result<Vec<ActiveBaseline>, ClientError> {
    read_json(request(stream, "PUT", super::BASELINES_PATH, Some(file))?)
}

/// `DELETE /v1/baselines/{name}`: deactivates a baseline activated at run
/// time.
pub fn deactivate_baseline<S: Read + Write>(
    stream: S,
    name: &str,
) -> Result<super::DeactivateAnswer, ClientError> {
    let target = format!("{}/{}", super::BASELINES_PATH, path_segment(name));
    read_json(request(stream, "DELETE", &target, None)?)
}

/// `s` percent-encoded as one path segment (RFC 3986 unreserved
/// characters kept).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a chunked body (RFC 9112 §7.1; extensions and trailers ignored).
pub struct ChunkedReader<R> {
    inner: R,
    /// Bytes left in the current chunk.
    left: u64,
    done: bool,
}

impl<R: BufRead> ChunkedReader<R> {
    /// Decodes the chunked body read from `inner`.
    pub fn new(inner: R) -> Self {
        ChunkedReader {
            inner,
            left: 0,
            done: false,
        }
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.inner.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunked body",
            ));
        }
        Ok(line)
    }
}

fn bad(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<R: BufRead> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.left == 0 {
            if self.done {
                return Ok(0);
            }
            let line = self.read_line()?;
            let size = line.trim_end().split(';').next().unwrap_or_default().trim();
            self.left = u64::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            if self.left == 0 {
                // Trailers, up to the blank line.
                while !self.read_line()?.trim_end().is_empty() {}
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunk",
            ));
        }
        self.left -= n as u64;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Err(bad("chunk not followed by CRLF"));
            }
        }
        Ok(n)
    }
}
