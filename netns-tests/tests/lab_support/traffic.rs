//! Real traffic between a lab's pods, with sizes the test knows exactly:
//! sockets made by a thread that entered the pod's network namespace
//! ([`in_netns`]), used afterwards from anywhere. Every operation is
//! bounded in time and count; addresses are only the lab's own pods.
//!
//! Frame sizes follow what the TC programs count: the whole frame as the
//! host-side veth sees it, Ethernet header included (`skb->len`).

#![allow(dead_code)]

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bulkhead_netns_tests::collectors::in_netns;

/// Ethernet header.
pub const ETH: u64 = 14;
/// UDP header.
pub const UDP: u64 = 8;
/// TCP header with the timestamp option (every segment after the
/// handshake between two Linux stacks: 20 + NOP, NOP, TS).
pub const TCP_TS: u64 = 32;
/// TCP header of a Linux SYN or SYN-ACK: 20 + MSS (4), SACK-permitted and
/// timestamps (12), NOP and window scale (4).
pub const TCP_SYN: u64 = 40;
/// How long any single socket operation may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The IP header of `ip`'s family (no options, no extension headers).
pub fn ip_header(ip: IpAddr) -> u64 {
    if ip.is_ipv4() { 20 } else { 40 }
}

/// One UDP datagram of `payload` bytes to or from `ip`, as a frame.
pub fn udp_frame(ip: IpAddr, payload: usize) -> u64 {
    ETH + ip_header(ip) + UDP + payload as u64
}

/// A Linux SYN to or from `ip`, as a frame.
pub fn syn_frame(ip: IpAddr) -> u64 {
    ETH + ip_header(ip) + TCP_SYN
}

/// A pod of the lab: its namespace and addresses (from the state file).
#[derive(Clone, Debug)]
pub struct Pod {
    /// `namespace/name`.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its addresses.
    pub ips: Vec<IpAddr>,
}

impl Pod {
    /// The pods of a lab state file (`hosts` that are not external).
    pub fn all(state: &serde_json::Value) -> Vec<Pod> {
        Pod::hosts(state, false)
    }

    /// The external hosts of a lab state file, each named by its address.
    pub fn externals(state: &serde_json::Value) -> Vec<Pod> {
        Pod::hosts(state, true)
    }

    fn hosts(state: &serde_json::Value, external: bool) -> Vec<Pod> {
        state["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .filter(|h| h["external"] == external)
            .map(|h| Pod {
                name: h["name"].as_str().expect("name").to_owned(),
                netns: h["netns"].as_str().expect("netns").to_owned(),
                ips: h["ips"]
                    .as_array()
                    .expect("ips")
                    .iter()
                    .map(|a| a.as_str().expect("ip").parse().expect("an address"))
                    .collect(),
            })
            .collect()
    }

    /// Its address of one family.
    pub fn ip(&self, v4: bool) -> IpAddr {
        *self
            .ips
            .iter()
            .find(|a| a.is_ipv4() == v4)
            .unwrap_or_else(|| panic!("{} has no IPv{} address", self.name, if v4 { 4 } else { 6 }))
    }
}

/// Segments a TCP socket sent and received so far (`tcpi_segs_out`,
/// `tcpi_segs_in` of `TCP_INFO`: every segment, pure ACKs and
/// retransmissions included).
pub fn tcp_segments(s: &TcpStream) -> (u64, u64) {
    // struct tcp_info (linux/tcp.h): tcpi_segs_out at byte 136, tcpi_segs_in
    // at 140 (both u32), since Linux 4.2.
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes; the kernel writes at most
    // `len` bytes and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    assert!(len >= 144, "TCP_INFO too short ({len} bytes)");
    let u32_at = |o: usize| u64::from(u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap()));
    (u32_at(136), u32_at(140))
}

/// What one client saw of a TCP exchange.
#[derive(Clone, Copy, Debug)]
pub struct TcpExchange {
    /// The client's address and port.
    pub client: SocketAddr,
    /// The server's.
    pub server: SocketAddr,
    /// Segments the client sent (the flow's original direction).
    pub segs_out: u64,
    /// Segments the client received (the reply direction).
    pub segs_in: u64,
}

/// A server thread in a pod, stopped by [`Served::stop`] (also on drop),
/// which returns each peer and the bytes it sent (one entry per TCP
/// connection or UDP datagram).
pub struct Served {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<(SocketAddr, usize)>>>,
}

impl Served {
    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops it; returns each peer and the bytes it sent.
    pub fn stop(&mut self) -> Vec<(SocketAddr, usize)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().expect("server thread"))
            .unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP server in a pod: for each connection, reads to end of stream,
/// answers with as many bytes, closes.
pub struct TcpServer;

impl TcpServer {
    /// Listens on `addr` inside `netns`.
    pub fn start(netns: &str, addr: SocketAddr) -> Served {
        let listener = in_netns(netns, move || TcpListener::bind(addr))
            .expect("enter the pod's namespace")
            .unwrap_or_else(|e| panic!("bind TCP {addr} in {netns}: {e}"));
        listener.set_nonblocking(true).expect("non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut served = Vec::new();
            // Bounded: a test makes a handful of connections.
            while !flag.load(Ordering::SeqCst) && served.len() < 64 {
                match listener.accept() {
                    Ok((conn, peer)) => served.push((peer, answer(conn))),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept on {addr}: {e}"),
                }
            }
            served
        });
        Served {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// Reads to end of stream, writes as many bytes back, closes; the count
/// (0 on any error).
fn answer(conn: TcpStream) -> usize {
    let run = || -> std::io::Result<usize> {
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut got = Vec::new();
        (&conn).read_to_end(&mut got)?;
        (&conn).write_all(&vec![b's'; got.len()])?;
        Ok(got.len())
    };
    run().unwrap_or(0)
}

/// From `from`'s namespace: connects to `server`, sends `n` bytes, closes
/// its sending side, reads the answer to end of stream (it must be `n`
/// bytes), then reads the socket's segment counters.
pub fn tcp_exchange(from: &Pod, server: SocketAddr, n: usize) -> TcpExchange {
    let stream = in_netns(&from.netns, move || {
        TcpStream::connect_timeout(&server, IO_TIMEOUT)
    })
    .expect("enter the pod's namespace")
    .unwrap_or_else(|e| panic!("{} → {server}: connect: {e}", from.name));
    let client = stream.local_addr().unwrap();
    assert_eq!(client.ip(), from.ip(server.is_ipv4()), "source address");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    (&stream).write_all(&vec![b'c'; n]).expect("send");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let mut got = Vec::new();
    (&stream)
        .read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("{} → {server}: reading the answer: {e}", from.name));
    assert_eq!(got.len(), n, "{} → {server}: answer length", from.name);
    // The server's FIN was acknowledged as it arrived (FIN-WAIT-2 →
    // TIME-WAIT): nothing more goes either way; a short pause all the same.
    thread::sleep(Duration::from_millis(50));
    let (segs_out, segs_in) = tcp_segments(&stream);
    TcpExchange {
        client,
        server,
        segs_out,
        segs_in,
    }
}

/// How a connection attempt that should be dropped ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// No answer within the timeout (dropped).
    TimedOut,
    /// Connected, refused, or another error: the SYN got an answer.
    Answered(String),
}

/// From `from`'s namespace: one TCP connection attempt to `to` that waits
/// `wait` (below the initial retransmission timeout of 1 s, so exactly
/// one SYN leaves), then gives up (closing a socket in SYN-SENT sends
/// nothing).
pub fn tcp_attempt(from: &Pod, to: SocketAddr, wait: Duration) -> Attempt {
    assert!(wait < Duration::from_millis(900), "one SYN only");
    in_netns(&from.netns, move || {
        match TcpStream::connect_timeout(&to, wait) {
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                Attempt::TimedOut
            }
            Ok(_) => Attempt::Answered("connected".into()),
            Err(e) => Attempt::Answered(e.to_string()),
        }
    })
    .expect("enter the pod's namespace")
}

/// A UDP echo server in a pod: answers every datagram with itself until
/// stopped; records who sent what.
pub struct UdpEcho;

impl UdpEcho {
    /// Binds `addr` inside `netns`.
    pub fn start(netns: &str, addr: SocketAddr) -> Served {
        let socket = in_netns(netns, move || UdpSocket::bind(addr))
            .expect("enter the pod's namespace")
            .unwrap_or_else(|e| panic!("bind UDP {addr} in {netns}: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::SeqCst) && got.len() < 1000 {
                match socket.recv_from(&mut buf) {
                    Ok((n, peer)) => {
                        got.push((peer, n));
                        let _ = socket.send_to(&buf[..n], peer);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => panic!("UDP echo on {addr}: {e}"),
                }
            }
            got
        });
        Served {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// A UDP socket of `from` (its address of `to`'s family, a free port),
/// connected to `to`.
pub fn udp_client(from: &Pod, to: SocketAddr) -> UdpSocket {
    let local = SocketAddr::new(from.ip(to.is_ipv4()), 0);
    let s = in_netns(&from.netns, move || -> std::io::Result<UdpSocket> {
        let s = UdpSocket::bind(local)?;
        s.connect(to)?;
        Ok(s)
    })
    .expect("enter the pod's namespace")
    .unwrap_or_else(|e| panic!("{} → {to}: UDP socket: {e}", from.name));
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// From `from`'s namespace: `count` datagrams of `size` bytes to `to`,
/// each answered (echoed) before the next is sent. Returns the client's
/// address.
pub fn udp_exchange(from: &Pod, to: SocketAddr, count: usize, size: usize) -> SocketAddr {
    let s = udp_client(from, to);
    let mut buf = vec![0u8; size + 1];
    for i in 0..count {
        s.send(&vec![b'u'; size]).expect("send");
        let n = s
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{} → {to}: no echo of datagram {i}: {e}", from.name));
        assert_eq!(n, size, "{} → {to}: echo size", from.name);
    }
    s.local_addr().unwrap()
}

/// From `from`'s namespace: `count` datagrams of `size` bytes to `to`
/// that should be dropped; waits `wait` after the last for an answer that
/// must not come. Returns the client's address and the answers received.
pub fn udp_blackhole(
    from: &Pod,
    to: SocketAddr,
    count: usize,
    size: usize,
    wait: Duration,
) -> (SocketAddr, usize) {
    udp_answers(from, to, count, size, wait)
}

/// From `from`'s namespace: `count` datagrams of `size` bytes to `to`,
/// sent at once, then answers collected for `wait` (or until there are
/// `count`). Returns the client's address and the answers received (a
/// refusal counts: it got through).
pub fn udp_answers(
    from: &Pod,
    to: SocketAddr,
    count: usize,
    size: usize,
    wait: Duration,
) -> (SocketAddr, usize) {
    let s = udp_client(from, to);
    for _ in 0..count {
        s.send(&vec![b'd'; size]).expect("send");
    }
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let deadline = Instant::now() + wait;
    let mut answers = 0;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline && answers < count {
        match s.recv(&mut buf) {
            Ok(_) => answers += 1,
            // Refused (an ICMP error came back) also means it got through.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => answers += 1,
            Err(_) => {}
        }
    }
    (s.local_addr().unwrap(), answers)
}
