//! The measurements, each bounded in time and packets, between the
//! topology's client and server only.
//!
//! - packet and deny rates: the bounded UDP flood of
//!   `crate::dataplane::flood` (sendmmsg, 18-byte payloads);
//! - connection rate: a TCP connect/close loop (the client closes with
//!   `SO_LINGER` 0, a RST, so no TIME_WAIT piles up);
//! - latency: `sockperf ping-pong` (UDP) against `sockperf server`, both
//!   busy-polling;
//! - throughput: `iperf3 -J` against `iperf3 -s -1`;
//! - update times: from the start of the update to the first datagram of
//!   a probe stream (one every 100 µs) that reaches the server;
//! - drops during updates: a paced allowed flow, sent minus received.

use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bulkhead_netkit::NsHandle;
use nix::sys::socket::{setsockopt, sockopt};

use super::allowlist::{CONNECT_PORT, DENIED_PORT, FLOOD_PORT, IPERF_PORT, SOCKPERF_PORT};
use crate::dataplane::flood::{self, FloodResult, FloodSpec};
use crate::dataplane::netns::{self, SERVER_IP, Topology};

/// Packets of one flood at most (with the time budget, whichever first).
const MAX_FLOOD_PACKETS: u64 = 50_000_000;
/// Connections of one connection loop at most.
const MAX_CONNECTIONS: u64 = 2_000_000;
/// How long an update may take to show before the measurement gives up.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(60);

fn flood_spec(seconds: f64, reply_first: bool) -> FloodSpec {
    FloodSpec {
        duration: Duration::from_secs_f64(seconds),
        max_packets: MAX_FLOOD_PACKETS,
        payload: 18,
        // Established for netfilter's conntrack too (UDP: after a reply),
        // as it is for Bulkhead's CT after the first packet.
        reply_first,
    }
}

/// The established flow's flood: (received Mpps, machine CPU ns per
/// received packet).
pub fn packet_rate(topo: &Topology, seconds: f64) -> Result<(f64, f64)> {
    // The first packets set up conntrack / CT; a short untimed flood first.
    flood::flood(
        &topo.client,
        &topo.server,
        flood::server_addr(FLOOD_PORT),
        &flood_spec(0.2, true),
    )?;
    let r: FloodResult = flood::flood(
        &topo.client,
        &topo.server,
        flood::server_addr(FLOOD_PORT),
        &flood_spec(seconds, true),
    )?;
    Ok((r.rx_pps() / 1e6, r.cpu_ns_per_packet()))
}

/// Datagrams per second the client pushes at the denied port, millions
/// (accepted by `sendmmsg`; the contender drops them after the client's
/// veth), and how many the server still received (0 when enforced).
pub fn deny_rate(topo: &Topology, seconds: f64) -> Result<(f64, u64)> {
    let r = flood::flood(
        &topo.client,
        &topo.server,
        flood::server_addr(DENIED_PORT),
        // Denied: nothing reaches the server to answer.
        &flood_spec(seconds, false),
    )?;
    Ok((r.tx_pps() / 1e6, r.received))
}

/// A listening TCP socket with a deep accept queue (std's `bind` listens
/// with 128: a connect loop outruns that, and every dropped SYN costs the
/// client a 1 s retransmission).
fn listener(addr: SocketAddr) -> Result<TcpListener> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, listen, socket,
    };
    let SocketAddr::V4(v4) = addr else {
        bail!("IPv4 only");
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4))?;
    listen(&fd, Backlog::new(4096)?)?;
    Ok(TcpListener::from(fd))
}

/// What the connection loop measured.
pub struct Connections {
    /// Connections opened and closed per second, thousands.
    pub per_second_k: f64,
    /// Median `connect()` time, microseconds.
    pub connect_us: f64,
    /// Attempts that timed out (a lost SYN waits for its 1 s
    /// retransmission; the loop goes on).
    pub timeouts: u64,
}

/// The TCP connect/close loop for `seconds`.
pub fn connection_rate(topo: &Topology, seconds: f64) -> Result<Connections> {
    let stop = AtomicBool::new(false);
    let ready = Barrier::new(2);
    let server = SocketAddr::from((SERVER_IP, CONNECT_PORT));
    std::thread::scope(|s| {
        let acceptor = s.spawn(|| -> Result<u64> {
            let setup = || -> Result<TcpListener> {
                netns::enter(&topo.server)?;
                listener(server).context("the TCP server")
            };
            let l = setup();
            ready.wait();
            let l = l?;
            let mut accepted = 0u64;
            while !stop.load(Ordering::Acquire) {
                match l.accept() {
                    Ok(_) => accepted += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_micros(20))
                    }
                    Err(e) => return Err(e).context("accept"),
                }
            }
            Ok(accepted)
        });
        ready.wait();
        let client = s.spawn(|| -> Result<(u64, u64, f64, Vec<f64>)> {
            netns::enter(&topo.client)?;
            let start = Instant::now();
            let deadline = start + Duration::from_secs_f64(seconds);
            let (mut n, mut timeouts) = (0u64, 0u64);
            let mut times = Vec::new();
            while n < MAX_CONNECTIONS && Instant::now() < deadline {
                let t = Instant::now();
                let c = match TcpStream::connect_timeout(&server, Duration::from_secs(3)) {
                    Ok(c) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        timeouts += 1;
                        anyhow::ensure!(timeouts < 10, "10 connection attempts timed out");
                        continue;
                    }
                    Err(e) => return Err(e).context("connecting"),
                };
                times.push(t.elapsed().as_secs_f64() * 1e6);
                // Close with a RST: no TIME_WAIT, so ports never run out.
                setsockopt(
                    &c,
                    sockopt::Linger,
                    &nix::libc::linger {
                        l_onoff: 1,
                        l_linger: 0,
                    },
                )?;
                drop(c);
                n += 1;
            }
            Ok((n, timeouts, start.elapsed().as_secs_f64(), times))
        });
        let result = client.join().expect("client thread");
        stop.store(true, Ordering::Release);
        acceptor.join().expect("acceptor thread")?;
        let (n, timeouts, secs, mut times) = result?;
        anyhow::ensure!(!times.is_empty(), "no connection in {seconds} s");
        times.sort_by(f64::total_cmp);
        Ok(Connections {
            per_second_k: n as f64 / secs / 1e3,
            connect_us: times[times.len() / 2],
            timeouts,
        })
    })
}

/// A child process killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(netns: &str, program: &str, args: &[&str]) -> Result<Reaped> {
    NsHandle::open(netns)?
        .command(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Reaped)
        .with_context(|| format!("cannot start {program} (`cargo xtask setup` installs it)"))
}

fn output_in(netns: &str, program: &str, args: &[&str]) -> Result<String> {
    let out = NsHandle::open(netns)?
        .command(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program} (`cargo xtask setup` installs it)"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{program} {} failed: {}", args.join(" "), text.trim());
    }
    Ok(text)
}

/// Waits until a socket listens on TCP `port` in the server's namespace
/// (a server process started). It looks at the socket table rather than
/// connecting: iperf3 takes a connection for a client, and while it tears
/// such a probe's session down it resets the real client's control
/// connection ("unable to receive control message: Connection reset by
/// peer", seen on a loaded machine).
fn wait_tcp(topo: &Topology, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            netns::enter(&topo.server)?;
            while !listening(port) {
                if Instant::now() > deadline {
                    bail!("nothing listens on TCP {port} after 5 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        })
        .join()
        .expect("probe thread")
    })
}

/// Whether a TCP socket listens on `port` in this thread's network
/// namespace (`/proc/thread-self/net/tcp{,6}`: the thread's namespace, not
/// the process's).
fn listening(port: u16) -> bool {
    ["tcp", "tcp6"].iter().any(|table| {
        let path = format!("/proc/thread-self/net/{table}");
        std::fs::read_to_string(path).is_ok_and(|text| listens_in(&text, port))
    })
}

/// Whether a `/proc/net/tcp`-format table has a LISTEN (`0A`) socket on
/// local `port`.
fn listens_in(table: &str, port: u16) -> bool {
    let want = format!("{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        let local = fields.next().unwrap_or_default();
        let state = fields.nth(1).unwrap_or_default();
        state == "0A" && local.rsplit(':').next() == Some(want.as_str())
    })
}

/// UDP ping-pong round trips: (median, 99th percentile), microseconds.
pub fn latency(topo: &Topology, seconds: f64) -> Result<(f64, f64)> {
    let addr = SERVER_IP.to_string();
    let port = SOCKPERF_PORT.to_string();
    // Both ends busy-poll (`--nonblocked`): the round trip is the path
    // through the contenders, not the time a halted vCPU takes to wake
    // (blocking ping-pong measured 23 µs here, busy-polling 4.5 µs).
    let _server = spawn_in(
        &topo.server,
        "sockperf",
        &["server", "-i", &addr, "-p", &port, "--nonblocked"],
    )?;
    // sockperf's client retries its first message; give the server a moment.
    std::thread::sleep(Duration::from_millis(300));
    let secs = format!("{}", seconds.ceil().max(1.0) as u64);
    let out = output_in(
        &topo.client,
        "sockperf",
        &[
            "ping-pong",
            "-i",
            &addr,
            "-p",
            &port,
            "-t",
            &secs,
            "--full-rtt",
            "-m",
            "64",
            "--nonblocked",
        ],
    )?;
    parse_sockperf(&out)
}

/// (p50, p99) from sockperf's "---> percentile 50.000 = 12.345" lines.
pub fn parse_sockperf(out: &str) -> Result<(f64, f64)> {
    let pct = |p: &str| {
        out.lines()
            .find(|l| l.contains(&format!("percentile {p} =")))
            .and_then(|l| l.rsplit('=').next())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    match (pct("50.000"), pct("99.000")) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => bail!("no percentiles in sockperf's output:\n{out}"),
    }
}

/// Bulk TCP throughput client → server, Gbit/s.
pub fn throughput(topo: &Topology, seconds: f64) -> Result<f64> {
    let addr = SERVER_IP.to_string();
    let port = IPERF_PORT.to_string();
    // A server that goes on after a client (no `-1`): the readiness probe
    // is one too. Killed on drop.
    let _server = spawn_in(&topo.server, "iperf3", &["-s", "-B", &addr, "-p", &port])?;
    wait_tcp(topo, IPERF_PORT)?;
    let secs = format!("{}", seconds.ceil().max(1.0) as u64);
    let out = output_in(
        &topo.client,
        "iperf3",
        &["-c", &addr, "-p", &port, "-t", &secs, "-J"],
    )?;
    parse_iperf3(&out)
}

/// `end.sum_received.bits_per_second` of `iperf3 -J`, in Gbit/s.
pub fn parse_iperf3(out: &str) -> Result<f64> {
    let v: serde_json::Value = serde_json::from_str(out).context("iperf3 JSON")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .with_context(|| format!("no end.sum_received.bits_per_second in iperf3's output: {out}"))
}

/// Milliseconds from the start of `update` until a datagram to UDP `port`
/// of the server gets through (probes every 100 µs from the client).
pub fn time_until_passes(
    topo: &Topology,
    port: u16,
    update: impl FnOnce() -> Result<()>,
) -> Result<f64> {
    let stop = AtomicBool::new(false);
    let first: Mutex<Option<Instant>> = Mutex::new(None);
    let ready = Barrier::new(3);
    let to = SocketAddrV4::new(SERVER_IP, port);
    std::thread::scope(|s| {
        let rx = s.spawn(|| -> Result<()> {
            let setup = || -> Result<UdpSocket> {
                netns::enter(&topo.server)?;
                let sock = UdpSocket::bind(to).context("probe receiver")?;
                sock.set_read_timeout(Some(Duration::from_millis(20)))?;
                Ok(sock)
            };
            let sock = setup();
            ready.wait();
            let sock = sock?;
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Acquire) {
                if sock.recv(&mut buf).is_ok() {
                    first.lock().unwrap().get_or_insert_with(Instant::now);
                    return Ok(());
                }
            }
            Ok(())
        });
        let tx = s.spawn(|| -> Result<()> {
            let setup = || -> Result<UdpSocket> {
                netns::enter(&topo.client)?;
                let sock = UdpSocket::bind("0.0.0.0:0")?;
                Ok(sock)
            };
            let sock = setup();
            ready.wait();
            let sock = sock?;
            while !stop.load(Ordering::Acquire) {
                let _ = sock.send_to(b"probe", to);
                std::thread::sleep(Duration::from_micros(100));
            }
            Ok(())
        });
        ready.wait();
        let start = Instant::now();
        let updated = update();
        let deadline = start + UPDATE_TIMEOUT;
        while updated.is_ok() && first.lock().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        stop.store(true, Ordering::Release);
        rx.join().expect("probe receiver")?;
        tx.join().expect("probe sender")?;
        updated?;
        match *first.lock().unwrap() {
            Some(t) => Ok(t.duration_since(start).as_secs_f64() * 1e3),
            None => bail!("the update did not let a probe through within {UPDATE_TIMEOUT:?}"),
        }
    })
}

/// Packets of an allowed UDP flow (one every `gap`) lost while `updates`
/// runs, and how many were sent.
pub fn drops_during(
    topo: &Topology,
    gap: Duration,
    updates: impl FnOnce() -> Result<()>,
) -> Result<(u64, u64)> {
    let stop = AtomicBool::new(false);
    let received = AtomicU64::new(0);
    let ready = Barrier::new(3);
    let to = SocketAddrV4::new(SERVER_IP, FLOOD_PORT);
    let sent = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        let rx = s.spawn(|| -> Result<()> {
            let setup = || -> Result<UdpSocket> {
                netns::enter(&topo.server)?;
                let sock = UdpSocket::bind(to).context("flow receiver")?;
                let _ = setsockopt(&sock, sockopt::RcvBufForce, &(8 << 20));
                sock.set_read_timeout(Some(Duration::from_millis(20)))?;
                Ok(sock)
            };
            let sock = setup();
            ready.wait();
            let sock = sock?;
            let mut buf = [0u8; 64];
            let mut idle_since: Option<Instant> = None;
            loop {
                if sock.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                    idle_since = None;
                } else if stop.load(Ordering::Acquire) {
                    // Stop once the stream has been quiet for a while.
                    let t = *idle_since.get_or_insert_with(Instant::now);
                    if t.elapsed() > Duration::from_millis(200) {
                        return Ok(());
                    }
                }
            }
        });
        let tx = s.spawn(|| -> Result<()> {
            let setup = || -> Result<UdpSocket> {
                netns::enter(&topo.client)?;
                Ok(UdpSocket::bind("0.0.0.0:0")?)
            };
            let sock = setup();
            ready.wait();
            let sock = sock?;
            let mut next = Instant::now();
            while !stop.load(Ordering::Acquire) {
                if sock.send_to(b"flow", to).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                next += gap;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
            Ok(())
        });
        ready.wait();
        // Let the flow establish before the first update.
        std::thread::sleep(Duration::from_millis(100));
        let updated = updates();
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Release);
        tx.join().expect("flow sender")?;
        rx.join().expect("flow receiver")?;
        updated?;
        let sent = sent.load(Ordering::Relaxed);
        Ok((sent.saturating_sub(received.load(Ordering::Relaxed)), sent))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_listening_socket_in_a_proc_net_tcp_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0200000A:1451 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 0 0 0 0 0 0\n\
   1: 0200000A:1F90 0300000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 0 0 0 0 0 0\n";
        assert!(listens_in(table, 5201));
        // Port 8080 only in an established connection, not listening.
        assert!(!listens_in(table, 8080));
        assert!(!listens_in(table, 80));
    }

    #[test]
    fn parses_sockperf_and_iperf3() {
        let s = "sockperf: ====> avg-rtt=20.111 (std-dev=3.1)\n\
                 sockperf: ---> percentile 99.000 =   31.456\n\
                 sockperf: ---> percentile 50.000 =   19.002\n";
        assert_eq!(parse_sockperf(s).unwrap(), (19.002, 31.456));
        assert!(parse_sockperf("nothing").is_err());
        let j = r#"{"end": {"sum_received": {"bits_per_second": 12500000000.0}}}"#;
        assert!((parse_iperf3(j).unwrap() - 12.5).abs() < 1e-9);
        assert!(parse_iperf3("{}").is_err());
    }
}
