//! Ports of cluster-admin rules: v1alpha2 `protocols` and v1alpha1
//! `ports`, both into the model's [`PortSpec`]s. A named port carries no
//! protocol in these APIs: it becomes one spec per protocol (a container
//! port name is unique in a pod, so at most one of them resolves).

use super::count;
use super::wire::{DestinationPort, Port, Protocol as WireProtocol, Range};
use crate::model::{PortMatch, PortSpec, Protocol};
use crate::source::manifest::{Ctx, ObjectError, Problem};

/// The ports of a rule.
pub(super) struct Ports {
    /// `None`: every protocol and port.
    pub specs: Option<Vec<PortSpec>>,
    /// A named port is among them.
    pub named: bool,
}

/// v1alpha2 `protocols` at `at`.
pub(super) fn protocols(
    ctx: &Ctx<'_>,
    at: &str,
    list: Option<&[WireProtocol]>,
    max: usize,
) -> Result<Ports, ObjectError> {
    let Some(list) = list else {
        return Ok(Ports {
            specs: None,
            named: false,
        });
    };
    count(ctx, at, list.len(), 1, max)?;
    let mut ports = Ports {
        specs: Some(Vec::new()),
        named: false,
    };
    for (i, p) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let l4 = [
            (Protocol::Tcp, "tcp", &p.tcp),
            (Protocol::Udp, "udp", &p.udp),
            (Protocol::Sctp, "sctp", &p.sctp),
        ];
        let set = l4.iter().filter(|(_, _, l)| l.is_some()).count()
            + usize::from(p.destination_named_port.is_some());
        if set != 1 {
            return Err(ctx.err(
                at,
                Problem::OneOf {
                    fields: "tcp, udp, sctp, destinationNamedPort",
                    found: set,
                },
            ));
        }
        let specs = ports.specs.as_mut().expect("some");
        if let Some(name) = &p.destination_named_port {
            ports.named = true;
            specs.extend(named(name));
            continue;
        }
        let (protocol, field, l4) = l4
            .into_iter()
            .find(|(_, _, l)| l.is_some())
            .expect("one set");
        let at = format!("{at}.{field}.destinationPort");
        let dest = l4
            .as_ref()
            .and_then(|l| l.destination_port.as_ref())
            .ok_or_else(|| ctx.err(&at, Problem::Missing))?;
        specs.push(PortSpec {
            protocol,
            port: destination_port(ctx, &at, dest)?,
        });
    }
    Ok(ports)
}

/// A v1alpha2 port: a number, or a range with start below end.
fn destination_port(
    ctx: &Ctx<'_>,
    at: &str,
    p: &DestinationPort,
) -> Result<PortMatch, ObjectError> {
    match (p.number, &p.range) {
        (Some(n), None) => {
            let n = number(ctx, &format!("{at}.number"), n)?;
            Ok(PortMatch::Range(n, n))
        }
        (None, Some(r)) => {
            let (start, end) = range(ctx, &format!("{at}.range"), r)?;
            if start >= end {
                return Err(ctx.err(
                    format!("{at}.range"),
                    Problem::Invalid {
                        value: format!("{start}-{end}"),
                        reason: "start port must be less than end port".into(),
                    },
                ));
            }
            Ok(PortMatch::Range(start, end))
        }
        (a, b) => Err(ctx.err(
            at,
            Problem::OneOf {
                fields: "number, range",
                found: usize::from(a.is_some()) + usize::from(b.is_some()),
            },
        )),
    }
}

/// v1alpha1 `ports` at `at`.
pub(super) fn ports(
    ctx: &Ctx<'_>,
    at: &str,
    list: Option<&[Port]>,
    max: usize,
) -> Result<Ports, ObjectError> {
    let Some(list) = list else {
        return Ok(Ports {
            specs: None,
            named: false,
        });
    };
    count(ctx, at, list.len(), 1, max)?;
    let mut ports = Ports {
        specs: Some(Vec::new()),
        named: false,
    };
    for (i, p) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let specs = ports.specs.as_mut().expect("some");
        match (&p.port_number, &p.named_port, &p.port_range) {
            (Some(pn), None, None) => {
                let protocol = protocol(
                    ctx,
                    &format!("{at}.portNumber.protocol"),
                    pn.protocol.as_deref(),
                )?;
                let field = format!("{at}.portNumber.port");
                let n = pn.port.ok_or_else(|| ctx.err(&field, Problem::Missing))?;
                let n = number(ctx, &field, n)?;
                specs.push(PortSpec {
                    protocol,
                    port: PortMatch::Range(n, n),
                });
            }
            (None, Some(name), None) => {
                ports.named = true;
                specs.extend(named(name));
            }
            (None, None, Some(r)) => {
                let protocol = protocol(
                    ctx,
                    &format!("{at}.portRange.protocol"),
                    r.protocol.as_deref(),
                )?;
                let (start, end) = range(ctx, &format!("{at}.portRange"), r)?;
                // v1alpha1 has no CEL rule here; an empty range would match
                // nothing, which the model cannot say: refused.
                if start > end {
                    return Err(ctx.err(
                        format!("{at}.portRange"),
                        Problem::Invalid {
                            value: format!("{start}-{end}"),
                            reason: "start port must not be above end port".into(),
                        },
                    ));
                }
                specs.push(PortSpec {
                    protocol,
                    port: PortMatch::Range(start, end),
                });
            }
            (a, b, c) => {
                return Err(ctx.err(
                    at,
                    Problem::OneOf {
                        fields: "portNumber, namedPort, portRange",
                        found: [a.is_some(), b.is_some(), c.is_some()]
                            .into_iter()
                            .filter(|s| *s)
                            .count(),
                    },
                ));
            }
        }
    }
    Ok(ports)
}

/// A named port, for each protocol.
fn named(name: &str) -> impl Iterator<Item = PortSpec> + '_ {
    Protocol::ALL.into_iter().map(|protocol| PortSpec {
        protocol,
        port: PortMatch::Named(name.to_owned()),
    })
}

/// A range's start and end (both required, each a port number).
fn range(ctx: &Ctx<'_>, at: &str, r: &Range) -> Result<(u16, u16), ObjectError> {
    let get = |field: &str, v: Option<i64>| {
        let field = format!("{at}.{field}");
        let n = v.ok_or_else(|| ctx.err(&field, Problem::Missing))?;
        number(ctx, &field, n)
    };
    Ok((get("start", r.start)?, get("end", r.end)?))
}

/// A port number, 1 to 65535.
fn number(ctx: &Ctx<'_>, at: &str, n: i64) -> Result<u16, ObjectError> {
    u16::try_from(n)
        .ok()
        .filter(|n| *n != 0)
        .ok_or_else(|| ctx.err(at, Problem::PortOutOfRange(n)))
}

/// A v1alpha1 protocol: TCP (the default), UDP or SCTP.
fn protocol(ctx: &Ctx<'_>, at: &str, p: Option<&str>) -> Result<Protocol, ObjectError> {
    match p {
        None | Some("TCP") => Ok(Protocol::Tcp),
        Some("UDP") => Ok(Protocol::Udp),
        Some("SCTP") => Ok(Protocol::Sctp),
        Some(other) => Err(ctx.err(at, Problem::BadProtocol(other.to_owned()))),
    }
}
