//! The allowed flow that runs through the churn: UDP requests from the
//! client pod to the server pod's echo port at a fixed rate, each carrying
//! its sequence number; every answer is matched to its request. A request
//! without an answer within [`ANSWER_WAIT`] after the flow stops counts as
//! dropped.
//!
//! Also the one-shot probes that show the policy is enforced at all: the
//! allowed port answers, a port no policy allows does not (the server
//! answers on both when nothing filters).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::node::in_netns;
use crate::dataplane::netns;

/// How long the flow waits for late answers after its last request.
pub const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// What the flow saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FlowResult {
    /// Target rate, requests per second.
    pub rate: u32,
    /// Requests sent.
    pub sent: u64,
    /// Requests answered.
    pub answered: u64,
    /// Requests never answered (must be 0).
    pub unanswered: u64,
    /// Seconds into the flow of the first unanswered requests (at most 20).
    pub unanswered_at_s: Vec<f64>,
    /// Slowest answer, milliseconds.
    pub max_rtt_ms: f64,
    /// Answers slower than 100 ms.
    pub slow_answers: u64,
}

/// A paced request/response flow; [`Flow::finish`] stops it.
pub struct Flow {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<FlowResult>>,
}

impl Flow {
    /// Starts `rate` requests per second from namespace `from` to `to`:`port`,
    /// for at most `max_for`.
    pub fn start(from: &str, to: Ipv4Addr, port: u16, rate: u32, max_for: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let from = from.to_owned();
        let handle = std::thread::spawn(move || {
            if let Err(e) = netns::enter(&from) {
                eprintln!("[cluster] flow: {e:#}");
                return FlowResult::default();
            }
            run(SocketAddr::from((to, port)), rate.max(1), max_for, &stop2)
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops sending, waits for late answers; the counts.
    pub fn finish(mut self) -> FlowResult {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(to: SocketAddr, rate: u32, max_for: Duration, stop: &AtomicBool) -> FlowResult {
    let mut out = FlowResult {
        rate,
        ..FlowResult::default()
    };
    let Ok(sock) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
        return out;
    };
    if sock.connect(to).is_err()
        || sock
            .set_read_timeout(Some(Duration::from_micros(200)))
            .is_err()
    {
        return out;
    }
    let every = Duration::from_secs(1) / rate;
    let start = Instant::now();
    // Send time of each request (µs from start); u64::MAX once answered.
    let mut sent_at: Vec<u64> =
        Vec::with_capacity((max_for.as_secs_f64() * rate as f64) as usize + 1);
    let mut next = start;
    let mut answers_until: Option<Instant> = None;
    let mut buf = [0u8; 16];
    loop {
        let now = Instant::now();
        let sending = answers_until.is_none();
        if sending && (stop.load(Ordering::Relaxed) || now - start >= max_for) {
            answers_until = Some(now + ANSWER_WAIT);
        }
        if answers_until.is_some_and(|t| now >= t) {
            break;
        }
        if answers_until.is_none() && now >= next {
            let seq = sent_at.len() as u64;
            if sock.send(&seq.to_be_bytes()).is_ok() {
                sent_at.push((now - start).as_micros() as u64);
            }
            next += every;
        }
        if let Ok(8) = sock.recv(&mut buf) {
            let seq = u64::from_be_bytes(buf[..8].try_into().unwrap_or_default()) as usize;
            if let Some(t) = sent_at.get_mut(seq).filter(|t| **t != u64::MAX) {
                let rtt = (start.elapsed().as_micros() as u64).saturating_sub(*t) as f64 / 1e3;
                out.max_rtt_ms = out.max_rtt_ms.max(rtt);
                out.slow_answers += u64::from(rtt > 100.0);
                out.answered += 1;
                *t = u64::MAX;
            }
        }
    }
    out.sent = sent_at.len() as u64;
    out.unanswered = out.sent - out.answered;
    out.unanswered_at_s = sent_at
        .iter()
        .filter(|&&t| t != u64::MAX)
        .take(20)
        .map(|&t| t as f64 / 1e6)
        .collect();
    out
}

/// Whether one UDP request from namespace `from` to `to`:`port` is
/// answered within `wait` (up to 3 tries).
pub fn answered(from: &str, to: Ipv4Addr, port: u16, wait: Duration) -> Result<bool> {
    in_netns(from, move || -> std::io::Result<bool> {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        sock.connect((to, port))?;
        sock.set_read_timeout(Some(wait))?;
        let mut buf = [0u8; 16];
        for _ in 0..3 {
            sock.send(b"probe")?;
            match sock.recv(&mut buf) {
                Ok(_) => return Ok(true),
                // ICMP port unreachable would mean no server: not the case here.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(true),
                Err(_) => {}
            }
        }
        Ok(false)
    })?
    .map_err(Into::into)
}
