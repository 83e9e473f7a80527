//! `bulkhead lab serve`: the servers of one lab host, run inside its
//! namespace. TCP: accept, read once, answer one line, close. UDP: echo.
//! SCTP: answer INIT with INIT ACK on served ports and ABORT elsewhere,
//! through raw sockets (see [`super::sctp`]). TCP and UDP sockets are
//! dual-stack (`[::]`, not v6-only), so one socket serves both families.
//!
//! A hostNetwork pod's server runs in its node's namespace, where other
//! addresses (every pod's gateway, the node's fabric address) and other
//! processes (the agent, kube-proxy) live: it is given the addresses to
//! serve (`--bind`, its node's), and binds each socket, the raw SCTP ones
//! included, to each of them, so it answers only what is sent to them.
//!
//! It prints `ready` on stdout once every socket is bound, then runs until
//! killed. Every connection is handled on its own short-lived thread with
//! timeouts, so a stuck client cannot pin the server.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol as SockProto, Socket, Type};

use super::LabError;
use super::sctp;
use super::state::Ports;

/// How long a server waits on a client.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// What `lab serve` prints once ready.
pub const READY: &str = "ready";

fn socket_err(what: String) -> impl FnOnce(std::io::Error) -> LabError {
    move |source| LabError::Socket { what, source }
}

/// A dual-stack socket bound to `[::]:port`.
fn dual_stack(ty: Type, port: u16) -> Result<Socket, LabError> {
    let what = format!("binding {ty:?} port {port}");
    let s = Socket::new(Domain::IPV6, ty, None).map_err(socket_err(what.clone()))?;
    s.set_only_v6(false).map_err(socket_err(what.clone()))?;
    s.set_reuse_address(true)
        .map_err(socket_err(what.clone()))?;
    let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    s.bind(&addr.into()).map_err(socket_err(what))?;
    Ok(s)
}

/// A socket bound to `addr:port` (one family).
fn bound(ty: Type, addr: IpAddr, port: u16) -> Result<Socket, LabError> {
    let what = format!("binding {ty:?} {}", SocketAddr::new(addr, port));
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, ty, None).map_err(socket_err(what.clone()))?;
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(socket_err(what.clone()))?;
    }
    freebind(&s, addr).map_err(socket_err(what.clone()))?;
    s.set_reuse_address(true)
        .map_err(socket_err(what.clone()))?;
    s.bind(&SocketAddr::new(addr, port).into())
        .map_err(socket_err(what))?;
    Ok(s)
}

/// Lets `s` bind to `addr` before the namespace has it: a one-node lab's
/// node address is the gateway address each pod's veth brings (see
/// [`crate::nodes::node_addresses`]), absent until the first one exists.
fn freebind(s: &Socket, addr: IpAddr) -> std::io::Result<()> {
    if addr.is_ipv4() {
        s.set_freebind_v4(true)
    } else {
        s.set_freebind_v6(true)
    }
}

/// Sockets of type `ty` on `port`: one bound to each of `bind`, or one
/// dual-stack socket on `[::]` when `bind` is empty.
fn sockets(ty: Type, port: u16, bind: &[IpAddr]) -> Result<Vec<Socket>, LabError> {
    if bind.is_empty() {
        return Ok(vec![dual_stack(ty, port)?]);
    }
    bind.iter().map(|&a| bound(ty, a, port)).collect()
}

/// A raw SCTP socket of one family, wrapped as a `UdpSocket` for its safe
/// `send_to`/`recv_from` (the calls are the same for raw sockets; v4
/// receives include the IP header, v6 ones do not).
pub fn raw_sctp(v4: bool) -> Result<UdpSocket, LabError> {
    let domain = if v4 { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::RAW, Some(SockProto::from(sctp::IPPROTO_SCTP))).map_err(
        socket_err(format!("opening a raw SCTP socket ({domain:?})")),
    )?;
    Ok(UdpSocket::from(s))
}

/// Binds every server (on every address of the namespace, or on those of
/// `bind` only), prints [`READY`], and serves until killed.
pub fn serve(host: &str, ports: &Ports, bind: &[IpAddr]) -> Result<(), LabError> {
    let mut threads = Vec::new();
    for &port in &ports.tcp {
        for s in sockets(Type::STREAM, port, bind)? {
            s.listen(128)
                .map_err(socket_err(format!("listening on TCP port {port}")))?;
            let listener = TcpListener::from(s);
            let reply = format!("bulkhead {host} tcp {port}\n");
            threads.push(std::thread::spawn(move || tcp_loop(listener, reply)));
        }
    }
    for &port in &ports.udp {
        for s in sockets(Type::DGRAM, port, bind)? {
            let s = UdpSocket::from(s);
            threads.push(std::thread::spawn(move || udp_loop(s)));
        }
    }
    // Always: a host without SCTP ports still answers ABORT, as a kernel
    // with SCTP would, so a probe to it is refused rather than lost.
    let raw: Vec<(bool, Option<IpAddr>)> = if bind.is_empty() {
        vec![(true, None), (false, None)]
    } else {
        bind.iter().map(|a| (a.is_ipv4(), Some(*a))).collect()
    };
    for (v4, addr) in raw {
        let s = raw_sctp(v4)?;
        if let Some(a) = addr {
            // Only INITs to this address (a raw socket bound to one).
            let what = format!("binding a raw SCTP socket to {a}");
            let r = socket2::SockRef::from(&s);
            freebind(&r, a).map_err(socket_err(what.clone()))?;
            r.bind(&SocketAddr::new(a, 0).into())
                .map_err(socket_err(what))?;
        }
        // INITs only, not the answers to this host's own probes.
        socket2::SockRef::from(&s)
            .attach_filter(&sctp::init_filter(v4))
            .map_err(socket_err("filtering the raw SCTP socket".into()))?;
        let served = ports.sctp.clone();
        threads.push(std::thread::spawn(move || sctp_loop(s, v4, served)));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{READY}").map_err(socket_err("reporting ready".into()))?;
    out.flush().map_err(socket_err("reporting ready".into()))?;
    drop(out);
    tracing::info!(host, "serving");
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn tcp_loop(listener: TcpListener, reply: String) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let reply = reply.clone();
                std::thread::spawn(move || {
                    if let Err(e) = tcp_answer(stream, reply.as_bytes()) {
                        tracing::debug!(error = %e, "TCP client");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn tcp_answer(mut stream: TcpStream, reply: &[u8]) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut buf = [0u8; 512];
    let _ = stream.read(&mut buf)?;
    stream.write_all(reply)?;
    stream.shutdown(std::net::Shutdown::Write)
}

fn udp_loop(socket: UdpSocket) {
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Err(e) = socket.send_to(&buf[..n], from) {
                    tracing::debug!(error = %e, %from, "UDP echo");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "UDP receive");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn sctp_loop(socket: UdpSocket, v4: bool, served: std::collections::BTreeSet<u16>) {
    let mut buf = [0u8; 2048];
    let mut tag: u32 = std::process::id().wrapping_mul(0x9e37_79b9) | 1;
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "SCTP receive");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let payload = if v4 {
            match sctp::strip_ipv4(&buf[..n]) {
                Some((_, p)) => p,
                None => continue,
            }
        } else {
            &buf[..n]
        };
        let Some(packet) = sctp::parse(payload) else {
            continue;
        };
        if packet.chunk != sctp::CHUNK_INIT || packet.vtag != 0 {
            continue;
        }
        tag = tag.wrapping_mul(1_664_525).wrapping_add(1_013_904_223) | 1;
        let reply = if served.contains(&packet.dst_port) {
            sctp::init_ack(&packet, tag)
        } else {
            sctp::abort(&packet)
        };
        // Raw sockets take the port field as nothing; the address is what counts.
        let to = SocketAddr::new(from.ip(), 0);
        if let Err(e) = socket.send_to(&reply, to) {
            tracing::debug!(error = %e, %to, "SCTP reply");
        }
    }
}
