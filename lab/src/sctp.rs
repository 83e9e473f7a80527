//! Just enough SCTP (RFC 9260) to tell whether an association could start:
//! the prober sends an INIT, a lab server answers INIT-ACK on a served port
//! and ABORT on any other (as a kernel SCTP stack does for out-of-the-blue
//! INITs). Raw IPPROTO_SCTP sockets carry them, since this kernel has no
//! SCTP sockets. Packets are built and parsed by hand: no maintained crate
//! does this small a job.

use crc::{CRC_32_ISCSI, Crc};

/// IANA protocol number of SCTP.
pub const IPPROTO_SCTP: i32 = 132;

/// Chunk type INIT.
pub const CHUNK_INIT: u8 = 1;
/// Chunk type INIT ACK.
pub const CHUNK_INIT_ACK: u8 = 2;
/// Chunk type ABORT.
pub const CHUNK_ABORT: u8 = 6;

const COMMON_HEADER: usize = 12;
const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// The parts of an SCTP packet the lab looks at: common header and first chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Verification tag.
    pub vtag: u32,
    /// Type of the first chunk.
    pub chunk: u8,
    /// Flags of the first chunk.
    pub flags: u8,
    /// For INIT and INIT ACK: the initiate tag.
    pub initiate_tag: Option<u32>,
}

fn finish(mut p: Vec<u8>) -> Vec<u8> {
    p[8..12].fill(0);
    // The CRC32c goes on the wire in little-endian byte order (RFC 9260 appendix A).
    let sum = CRC32C.checksum(&p);
    p[8..12].copy_from_slice(&sum.to_le_bytes());
    p
}

fn header(src_port: u16, dst_port: u16, vtag: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&src_port.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p
}

fn init_body(p: &mut Vec<u8>, chunk: u8, initiate_tag: u32, extra: &[u8]) {
    let len = 20 + extra.len();
    p.push(chunk);
    p.push(0);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p.extend_from_slice(&initiate_tag.to_be_bytes());
    p.extend_from_slice(&65_535u32.to_be_bytes()); // a_rwnd
    p.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
    p.extend_from_slice(&1u16.to_be_bytes()); // inbound streams
    p.extend_from_slice(&initiate_tag.to_be_bytes()); // initial TSN
    p.extend_from_slice(extra);
}

/// An INIT from `src_port` to `dst_port` (verification tag 0).
pub fn init(src_port: u16, dst_port: u16, initiate_tag: u32) -> Vec<u8> {
    let mut p = header(src_port, dst_port, 0);
    init_body(&mut p, CHUNK_INIT, initiate_tag, &[]);
    finish(p)
}

/// The INIT ACK answering `init`: ports swapped, tagged with the INIT's
/// initiate tag, carrying a (meaningless) state cookie.
pub fn init_ack(init: &Packet, own_tag: u32) -> Vec<u8> {
    let mut p = header(init.dst_port, init.src_port, init.initiate_tag.unwrap_or(0));
    // State Cookie parameter (type 7), 8 bytes of cookie.
    let mut cookie = vec![0, 7, 0, 12];
    cookie.extend_from_slice(&own_tag.to_be_bytes());
    cookie.extend_from_slice(&init.initiate_tag.unwrap_or(0).to_be_bytes());
    init_body(&mut p, CHUNK_INIT_ACK, own_tag, &cookie);
    finish(p)
}

/// The ABORT answering an INIT to a port nobody serves.
pub fn abort(init: &Packet) -> Vec<u8> {
    let mut p = header(init.dst_port, init.src_port, init.initiate_tag.unwrap_or(0));
    p.extend_from_slice(&[CHUNK_ABORT, 0, 0, 4]);
    finish(p)
}

/// Parses an SCTP packet (no IP header); `None` if it is too short, its
/// checksum is wrong, or its first chunk is malformed.
pub fn parse(p: &[u8]) -> Option<Packet> {
    if p.len() < COMMON_HEADER + 4 {
        return None;
    }
    let mut zeroed = p.to_vec();
    zeroed[8..12].fill(0);
    if CRC32C.checksum(&zeroed).to_le_bytes() != p[8..12] {
        return None;
    }
    let u16_at = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let chunk = p[COMMON_HEADER];
    let len = usize::from(u16_at(COMMON_HEADER + 2));
    if len < 4 || COMMON_HEADER + len > p.len() {
        return None;
    }
    let initiate_tag = if matches!(chunk, CHUNK_INIT | CHUNK_INIT_ACK) {
        if len < 20 {
            return None;
        }
        Some(u32_at(COMMON_HEADER + 4))
    } else {
        None
    };
    Some(Packet {
        src_port: u16_at(0),
        dst_port: u16_at(2),
        vtag: u32_at(4),
        chunk,
        flags: p[COMMON_HEADER + 1],
        initiate_tag,
    })
}

/// The payload of an IPv4 packet as a raw IPv4 socket receives it (with
/// its header), and the source address; `None` if malformed.
pub fn strip_ipv4(p: &[u8]) -> Option<(std::net::Ipv4Addr, &[u8])> {
    let ihl = usize::from(*p.first()? & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return None;
    }
    let src = std::net::Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    Some((src, &p[ihl..]))
}

// Classic BPF (`SO_ATTACH_FILTER`) for the lab's raw SCTP sockets. Every raw
// SCTP socket of a namespace gets a copy of every SCTP packet that arrives
// there; without a filter, many probes in flight at once fill one another's
// receive queues with packets meant for others, and replies are lost.
// An IPv4 raw socket sees the IP header first, an IPv6 one the SCTP header.

const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_H_IND: u16 = 0x48;
const LD_B_IND: u16 = 0x50;
const LD_B_ABS: u16 = 0x30;
const LDX_B_MSH: u16 = 0xb1;
const JEQ_K: u16 = 0x15;
const RET_K: u16 = 0x06;
/// Bytes of a packet a filter keeps: all of it.
const KEEP: u32 = 0x0004_0000;

/// Loads the 16-bit word at `offset` of the SCTP header (IPv4: past the IP
/// header, whose length the program has put in X).
fn load_sctp_half(v4: bool, offset: u32) -> socket2::SockFilter {
    socket2::SockFilter::new(if v4 { LD_H_IND } else { LD_H_ABS }, 0, 0, offset)
}

/// A filter keeping only the answers to one probe: SCTP from `from` (IPv4
/// only; IPv6 raw sockets do not see the header) port `from_port` to our
/// port `to_port`.
pub fn reply_filter(
    from: std::net::IpAddr,
    from_port: u16,
    to_port: u16,
) -> Vec<socket2::SockFilter> {
    use socket2::SockFilter as F;
    let v4 = from.is_ipv4();
    let mut prog = Vec::new();
    if v4 {
        prog.push(F::new(LDX_B_MSH, 0, 0, 0));
    }
    // Each test jumps to the final "drop" when it fails.
    let checks: u8 = if v4 { 3 } else { 2 };
    prog.push(load_sctp_half(v4, 0));
    prog.push(F::new(JEQ_K, 0, 2 * checks - 1, from_port.into()));
    prog.push(load_sctp_half(v4, 2));
    prog.push(F::new(JEQ_K, 0, 2 * checks - 3, to_port.into()));
    if let std::net::IpAddr::V4(a) = from {
        prog.push(F::new(LD_W_ABS, 0, 0, 12));
        prog.push(F::new(JEQ_K, 0, 1, u32::from(a)));
    }
    prog.push(F::new(RET_K, 0, 0, KEEP));
    prog.push(F::new(RET_K, 0, 0, 0));
    prog
}

/// A filter keeping only packets whose first chunk is an INIT (what a lab
/// server answers).
pub fn init_filter(v4: bool) -> Vec<socket2::SockFilter> {
    use socket2::SockFilter as F;
    let mut prog = Vec::new();
    if v4 {
        prog.push(F::new(LDX_B_MSH, 0, 0, 0));
        prog.push(F::new(LD_B_IND, 0, 0, COMMON_HEADER as u32));
    } else {
        prog.push(F::new(LD_B_ABS, 0, 0, COMMON_HEADER as u32));
    }
    prog.push(F::new(JEQ_K, 0, 1, CHUNK_INIT.into()));
    prog.push(F::new(RET_K, 0, 0, KEEP));
    prog.push(F::new(RET_K, 0, 0, 0));
    prog
}
