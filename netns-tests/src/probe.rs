//! One probe of the differential tests: a packet between two addresses of
//! a random model, and what the reference evaluator says of it.

use std::net::IpAddr;

use bulkhead_common::CtKey;
use bulkhead_policy::compile::maps::MapImage;
use bulkhead_policy::compile::{Compiled, compile};
use bulkhead_policy::eval::{AuditVerdict, Verdict};
use bulkhead_testkit::{Rng, probe_addresses, random_model, random_modes, random_tiered_model};

use crate::dataplane::ct_key;
use crate::packet::{L4, ct_ports, probe_l4};

/// A probe and the evaluator's answers.
pub struct Probe {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// The L4 header.
    pub l4: L4,
    /// Its kind's name (`TCP`, `UDP`, `SCTP`, `ICMP`).
    pub name: &'static str,
    /// IP protocol.
    pub proto: u8,
    /// Port policy sees (0 for ICMP).
    pub port: u16,
    /// `Compiled::allowed`.
    pub want: bool,
    /// `Compiled::evaluate`: each side's verdict.
    pub verdict: Verdict,
    /// `Compiled::audit`.
    pub audit: AuditVerdict,
    /// The connection's CT key (original direction).
    pub tuple: CtKey,
}

impl Probe {
    /// A probe of kind `kind % 4` (see [`probe_l4`]) from `src` (source
    /// port or echo id `sport`) to `dst` port `dport`, judged by `c`.
    pub fn new(
        c: &Compiled,
        src: IpAddr,
        dst: IpAddr,
        kind: usize,
        sport: u16,
        dport: u16,
    ) -> Self {
        let v6 = src.is_ipv6();
        let (l4, name) = probe_l4(kind, sport, dport);
        let proto = l4.proto(v6);
        let port = l4.policy_port();
        let (ct_sport, ct_dport) = ct_ports(l4);
        Self {
            src,
            dst,
            v6,
            l4,
            name,
            proto,
            port,
            want: c.allowed(src, dst, proto, port),
            verdict: c.evaluate(src, dst, proto, port),
            audit: c.audit(src, dst, proto, port),
            tuple: ct_key(src, dst, ct_sport, ct_dport, proto),
        }
    }

    /// For assertion messages.
    pub fn describe(&self, seed: u64) -> String {
        format!(
            "seed {seed}: {} -> {} {} {}",
            self.src, self.dst, self.name, self.port
        )
    }
}

/// A differential tests' case: a random model (the compiler's generator;
/// half of them, odd `seed`s, with random policy modes), compiled, and
/// the addresses worth probing in it.
pub struct Case {
    /// The generator, to draw the probes from.
    pub rng: Rng,
    /// The compiled model.
    pub compiled: Compiled,
    /// Its map image in slot 0 (checked to fit).
    pub image: MapImage,
    /// Pod, ipBlock and outside addresses.
    pub addrs: Vec<IpAddr>,
}

impl Case {
    /// The case of `seed`, its generator started from `seed * mul + add`.
    pub fn new(seed: u64, mul: u64, add: u64) -> Self {
        let mut rng = Rng(seed.wrapping_mul(mul) + add);
        // A third of the models hold cluster-admin policies of both tiers.
        let mut model = if seed % 3 == 2 {
            random_tiered_model(&mut rng)
        } else {
            random_model(&mut rng)
        };
        if seed % 2 == 1 {
            random_modes(&mut rng, &mut model);
        }
        let compiled = compile(&model);
        let image = compiled.map_image(0);
        image.check_fits().expect("a small image fits");
        let addrs = probe_addresses(&model, &compiled);
        Self {
            rng,
            compiled,
            image,
            addrs,
        }
    }
}
