//! A bounded UDP flood between two of the benchmark's namespaces, and CPU
//! accounting.
//!
//! The sender (in the client namespace) sends small datagrams to one
//! server address and port with `sendmmsg`, in batches, until its time
//! *or* its packet budget is spent, whichever comes first. The receiver (in
//! the server namespace) drains its socket with `recvmmsg` and counts; it
//! stops a short while after the sender has. Each thread can be pinned to
//! one CPU. Nothing else is sent: one flow, client → server, except, when
//! the spec asks for it, one reply to the first datagram, which makes the
//! flow established for conntrack (netfilter marks a UDP flow
//! `ESTABLISHED` only once it has seen a reply).

use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use nix::sys::socket::{
    MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg, setsockopt, sockopt,
};
use serde::Serialize;

use super::netns;

/// Datagrams per `sendmmsg`/`recvmmsg` call.
const BATCH: usize = 64;
/// How long the receiver keeps draining after the sender stopped.
const DRAIN: Duration = Duration::from_millis(100);

/// One flood.
#[derive(Clone, Debug, Serialize)]
pub struct FloodSpec {
    /// Time budget of the sender.
    pub duration: Duration,
    /// Packet budget of the sender.
    pub max_packets: u64,
    /// UDP payload bytes (18 makes a 60-byte Ethernet frame).
    pub payload: usize,
    /// The receiver answers the first datagram once (see the module doc).
    pub reply_first: bool,
}

/// What a flood did.
#[derive(Clone, Debug, Serialize)]
pub struct FloodResult {
    /// Datagrams the sender's `sendmmsg` accepted.
    pub sent: u64,
    /// Datagrams the server received.
    pub received: u64,
    /// Sender's active time, seconds.
    pub seconds: f64,
    /// UDP receive-buffer drops at the server during the flood.
    pub rcvbuf_errors: u64,
    /// CPU busy time of the whole machine during the flood, in CPUs
    /// (from `/proc/stat`: everything but idle and iowait).
    pub busy_cpus: f64,
    /// CPU time of this process (sender, receiver, and the packet
    /// processing the kernel does in their context) during the flood, in
    /// CPUs (`/proc/self/stat` utime + stime).
    pub process_cpus: f64,
}

impl FloodResult {
    /// Received datagrams per second.
    pub fn rx_pps(&self) -> f64 {
        self.received as f64 / self.seconds
    }

    /// Accepted datagrams per second.
    pub fn tx_pps(&self) -> f64 {
        self.sent as f64 / self.seconds
    }

    /// Machine CPU time per received datagram, ns (includes whatever else
    /// runs on the machine).
    pub fn cpu_ns_per_packet(&self) -> f64 {
        self.busy_cpus * self.seconds * 1e9 / self.received.max(1) as f64
    }

    /// This process's CPU time per received datagram, ns.
    pub fn process_cpu_ns_per_packet(&self) -> f64 {
        self.process_cpus * self.seconds * 1e9 / self.received.max(1) as f64
    }
}

/// Busy and total jiffies of all CPUs (`/proc/stat` first line).
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// utime + stime of this process, clock ticks (`/proc/self/stat`).
fn process_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// `UdpRcvbufErrors` of the calling thread's network namespace.
fn rcvbuf_errors() -> u64 {
    let Ok(snmp) = std::fs::read_to_string("/proc/thread-self/net/snmp") else {
        return 0;
    };
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 if unknown).
fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

fn pin(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let mut set = nix::sched::CpuSet::new();
        if set.set(cpu).is_ok() {
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
        }
    }
}

/// CPUs for the sender and the receiver (distinct when there are two).
fn cpus() -> (Option<usize>, Option<usize>) {
    match std::thread::available_parallelism().map_or(1, |n| n.get()) {
        0 | 1 => (None, None),
        _ => (Some(0), Some(1)),
    }
}

fn sender(client_ns: &str, to: SocketAddrV4, spec: &FloodSpec, go: &Barrier) -> Result<(u64, f64)> {
    let setup = || -> Result<UdpSocket> {
        netns::enter(client_ns)?;
        pin(cpus().0);
        let sock = UdpSocket::bind("0.0.0.0:0").context("sender socket")?;
        sock.connect(to).context("connecting the sender")?;
        Ok(sock)
    };
    // Every thread reaches the barrier, also after a failed setup.
    let sock = setup();
    go.wait();
    let sock = sock?;
    let payload = vec![0x5a_u8; spec.payload];
    let addrs: Vec<Option<SockaddrIn>> = vec![None; BATCH];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let start = Instant::now();
    let deadline = start + spec.duration;
    let mut sent = 0u64;
    while sent < spec.max_packets && Instant::now() < deadline {
        let iov = [std::io::IoSlice::new(&payload)];
        let slices: Vec<[std::io::IoSlice<'_>; 1]> = vec![iov; BATCH];
        match sendmmsg(
            sock.as_raw_fd(),
            &mut headers,
            &slices,
            &addrs,
            [],
            MsgFlags::empty(),
        ) {
            Ok(r) => sent += r.count() as u64,
            // A full device queue: count nothing, go on.
            Err(nix::errno::Errno::ENOBUFS) => {}
            Err(e) => return Err(e).context("sendmmsg"),
        }
    }
    Ok((sent, start.elapsed().as_secs_f64()))
}

fn receiver(
    server_ns: &str,
    port: u16,
    reply_first: bool,
    ready: &Barrier,
    done: &AtomicBool,
) -> Result<(u64, u64)> {
    let setup = || -> Result<(UdpSocket, u64)> {
        netns::enter(server_ns)?;
        pin(cpus().1);
        let sock = UdpSocket::bind(("0.0.0.0", port)).context("server socket")?;
        // Root may exceed rmem_max: 32 MiB absorbs bursts.
        let _ = setsockopt(&sock, sockopt::RcvBufForce, &(32 << 20));
        sock.set_read_timeout(Some(Duration::from_millis(20)))?;
        Ok((sock, rcvbuf_errors()))
    };
    // Every thread reaches the barrier, also after a failed setup.
    let setup = setup();
    ready.wait();
    let (sock, before) = setup?;
    let mut buffers = vec![[0u8; 256]; BATCH];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut received = 0u64;
    let mut replied = !reply_first;
    let mut stopped_at: Option<Instant> = None;
    loop {
        let mut slices: Vec<[std::io::IoSliceMut<'_>; 1]> = buffers
            .iter_mut()
            .map(|b| [std::io::IoSliceMut::new(b)])
            .collect();
        match recvmmsg(
            sock.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        ) {
            Ok(r) => {
                let mut from = None;
                for m in r {
                    received += 1;
                    from = from.or(m.address);
                }
                if !replied && let Some(from) = from {
                    let to = SocketAddrV4::new(from.ip(), from.port());
                    sock.send_to(b"reply", to).context("replying")?;
                    replied = true;
                }
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("recvmmsg"),
        }
        if done.load(Ordering::Acquire) {
            let t = *stopped_at.get_or_insert_with(Instant::now);
            if t.elapsed() >= DRAIN {
                break;
            }
        }
    }
    Ok((received, rcvbuf_errors().saturating_sub(before)))
}

/// Floods `server` (in `server_ns`) from `client_ns` once.
pub fn flood(
    client_ns: &str,
    server_ns: &str,
    server: SocketAddrV4,
    spec: &FloodSpec,
) -> Result<FloodResult> {
    let ready = Arc::new(Barrier::new(3));
    let done = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        let rx = s.spawn(|| receiver(server_ns, server.port(), spec.reply_first, &ready, &done));
        let tx = s.spawn(|| {
            let r = sender(client_ns, server, spec, &ready);
            done.store(true, Ordering::Release);
            r
        });
        ready.wait();
        let wall0 = Instant::now();
        let (cpu0, proc0) = (cpu_jiffies(), process_ticks());
        let sent = tx.join().expect("sender thread");
        let (cpu1, proc1) = (cpu_jiffies(), process_ticks());
        let wall = wall0.elapsed().as_secs_f64();
        done.store(true, Ordering::Release);
        let recv = rx.join().expect("receiver thread");
        let (sent, seconds) = sent?;
        let (received, rcvbuf_errors) = recv?;
        let busy_cpus = match (cpu0, cpu1) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
                (b1 - b0) as f64 / (t1 - t0) as f64 * cpus
            }
            _ => f64::NAN,
        };
        let process_cpus = match (proc0, proc1) {
            (Some(a), Some(b)) if wall > 0.0 => (b - a) as f64 / clock_ticks() / wall,
            _ => f64::NAN,
        };
        Ok(FloodResult {
            sent,
            received,
            seconds,
            rcvbuf_errors,
            busy_cpus,
            process_cpus,
        })
    })
}

/// The server address as a socket address.
pub fn server_addr(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(netns::SERVER_IP, port)
}
