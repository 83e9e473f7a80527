//! Raw frames on a pod's interface: an `AF_PACKET` socket opened inside a
//! network namespace sends crafted frames as the pod would (an attacker)
//! and captures what reaches the interface (an observer independent of
//! Bulkhead's own counters). Checksums for crafted packets are filled in
//! by [`fill_checksums`], so the receiving stack accepts them.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::collectors::in_netns;

/// An `AF_PACKET` socket bound to one interface of one namespace.
pub struct RawLink {
    fd: OwnedFd,
    ifindex: i32,
}

const ETH_P_ALL: u16 = 0x0003;

impl RawLink {
    /// Opens `ifname` in `netns` (all protocols, non-blocking).
    pub fn open(netns: &str, ifname: &str) -> io::Result<RawLink> {
        let name = CString::new(ifname).expect("interface name");
        in_netns(netns, move || -> io::Result<RawLink> {
            // SAFETY: plain syscalls; the fd is owned at once.
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    i32::from(ETH_P_ALL.to_be()),
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a fresh descriptor nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
            if ifindex == 0 {
                return Err(io::Error::last_os_error());
            }
            let addr = sockaddr(ifindex);
            // SAFETY: `addr` is a valid sockaddr_ll of the given size.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const addr).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(RawLink { fd, ifindex })
        })
        .map_err(io::Error::other)?
    }

    /// Sends one whole Ethernet frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let addr = sockaddr(self.ifindex);
        // SAFETY: valid buffer and address.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Frames received (not sent) on the interface for `wait`, at most
    /// `max` of them.
    pub fn capture(&self, wait: Duration, max: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline && out.len() < max {
            // SAFETY: zeroed sockaddr_ll is valid; the kernel fills it.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: valid buffers of the given sizes.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            if from.sll_pkttype != libc::PACKET_OUTGOING {
                out.push(buf[..n as usize].to_vec());
            }
        }
        out
    }
}

fn sockaddr(ifindex: i32) -> libc::sockaddr_ll {
    // SAFETY: an all-zero sockaddr_ll is valid.
    let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_protocol = ETH_P_ALL.to_be();
    a.sll_ifindex = ifindex;
    a
}

/// The Internet checksum (RFC 1071) of `data`: an IPv4 header's, say.
pub fn internet_checksum(data: &[u8]) -> u16 {
    checksum(0, data)
}

/// The Internet checksum of `data` starting from `sum`.
fn checksum(mut sum: u32, data: &[u8]) -> u16 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Fills in the IPv4 header checksum and the ICMP, ICMPv6, UDP or TCP
/// checksum of an Ethernet frame carrying an unfragmented packet (IPv6
/// without extension headers). Fragments get their IPv4 header checksum
/// only.
pub fn fill_checksums(frame: &mut [u8]) {
    let ip = 14;
    let ether_type = u16::from_be_bytes([frame[12], frame[13]]);
    let (proto, l4, pseudo) = if ether_type == 0x0800 {
        let ihl = usize::from(frame[ip] & 0x0f) * 4;
        frame[ip + 10..ip + 12].fill(0);
        let c = checksum(0, &frame[ip..ip + ihl]);
        frame[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        let frag = u16::from_be_bytes([frame[ip + 6], frame[ip + 7]]);
        if frag & 0x3fff != 0 {
            return;
        }
        let proto = frame[ip + 9];
        let l4 = ip + ihl;
        let mut pseudo = frame[ip + 12..ip + 20].to_vec();
        pseudo.extend([0, proto]);
        pseudo.extend(((frame.len() - l4) as u16).to_be_bytes());
        (proto, l4, pseudo)
    } else {
        let proto = frame[ip + 6];
        let l4 = ip + 40;
        let mut pseudo = frame[ip + 8..ip + 40].to_vec();
        pseudo.extend(((frame.len() - l4) as u32).to_be_bytes());
        pseudo.extend([0, 0, 0, proto]);
        (proto, l4, pseudo)
    };
    let (at, with_pseudo) = match proto {
        1 => (2, false),
        58 => (2, true),
        17 => (6, true),
        6 => (16, true),
        _ => return,
    };
    frame[l4 + at..l4 + at + 2].fill(0);
    let start = if with_pseudo {
        let mut s = 0u32;
        for c in pseudo.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        s
    } else {
        0
    };
    let c = checksum(start, &frame[l4..]);
    frame[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::checksum;

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2; its complement.
        assert_eq!(
            checksum(0, &[0, 1, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }
}
