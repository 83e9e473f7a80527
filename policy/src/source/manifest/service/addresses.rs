//! A Service's addresses and families: `spec.clusterIP(s)`,
//! `spec.ipFamilies`, `spec.ipFamilyPolicy`, `spec.externalIPs` and
//! `status.loadBalancer.ingress[].ip`, defaulted and checked as the API
//! server does it.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::ServiceSpec;

use super::invalid;
use crate::model::{IpFamily, IpFamilyPolicy, Labels, ServiceType};
use crate::source::manifest::{Ctx, ObjectError, Problem};

/// `spec.clusterIP(s)`, normalized as the API server does (either one
/// fills the other), and whether the Service is headless.
pub(super) fn cluster_ips(
    ctx: &Ctx<'_>,
    spec: &ServiceSpec,
    kind: ServiceType,
) -> Result<(Vec<IpAddr>, bool), ObjectError> {
    let one = spec.cluster_ip.as_deref().unwrap_or_default();
    let mut list = spec.cluster_ips.clone().unwrap_or_default();
    if list.is_empty() && !one.is_empty() {
        list.push(one.to_owned());
    }
    let field = if spec.cluster_ips.as_ref().is_some_and(|l| !l.is_empty()) {
        "spec.clusterIPs"
    } else {
        "spec.clusterIP"
    };
    if !one.is_empty() && list[0] != one {
        return Err(ctx.err(
            "spec.clusterIPs",
            invalid(list.join(","), "first value must match `clusterIP`"),
        ));
    }
    if kind == ServiceType::ExternalName {
        if !list.is_empty() {
            let why = "may not be set for ExternalName services";
            return Err(ctx.err(field, Problem::Forbidden(why)));
        }
        return Ok((Vec::new(), false));
    }
    if list.first().map(String::as_str) == Some("None") {
        if list.len() > 1 {
            let why = "'None' must be the first and only value";
            return Err(ctx.err("spec.clusterIPs", invalid(list.join(","), why)));
        }
        if matches!(kind, ServiceType::NodePort | ServiceType::LoadBalancer) {
            let why = format!("may not be set to 'None' for {} services", kind.as_str());
            return Err(ctx.err(field, invalid("None", why)));
        }
        return Ok((Vec::new(), true));
    }
    if list.len() > 2 {
        let why = "may only hold up to 2 values";
        return Err(ctx.err("spec.clusterIPs", invalid(list.join(","), why)));
    }
    let mut ips = Vec::new();
    for (i, text) in list.iter().enumerate() {
        let at = if field == "spec.clusterIP" {
            field.to_owned()
        } else {
            format!("{field}[{i}]")
        };
        ips.push(parse_ip(ctx, &at, text)?);
    }
    if ips.len() == 2 && ips[0].is_ipv4() == ips[1].is_ipv4() {
        let why = "may specify no more than one IP for each IP family";
        return Err(ctx.err("spec.clusterIPs", invalid(list.join(","), why)));
    }
    Ok((ips, false))
}

/// `spec.ipFamilies`, checked against the ClusterIPs; completed from them
/// when not given.
pub(super) fn ip_families(
    ctx: &Ctx<'_>,
    spec: &ServiceSpec,
    kind: ServiceType,
    ips: &[IpAddr],
    headless: bool,
) -> Result<Vec<IpFamily>, ObjectError> {
    let given = spec.ip_families.as_deref().unwrap_or_default();
    if kind == ServiceType::ExternalName {
        if !given.is_empty() {
            let why = "may not be set for ExternalName services";
            return Err(ctx.err("spec.ipFamilies", Problem::Forbidden(why)));
        }
        return Ok(Vec::new());
    }
    let mut families = Vec::new();
    for (i, f) in given.iter().enumerate() {
        let field = format!("spec.ipFamilies[{i}]");
        let family = match f.as_str() {
            "IPv4" => IpFamily::V4,
            "IPv6" => IpFamily::V6,
            other => {
                let supported = &["IPv4", "IPv6"];
                let value = other.to_owned();
                return Err(ctx.err(field, Problem::NotSupported { value, supported }));
            }
        };
        if families.contains(&family) {
            return Err(ctx.err(field, Problem::DuplicateValue(f.clone())));
        }
        if !headless && let Some(ip) = ips.get(i).filter(|ip| IpFamily::of(**ip) != family) {
            let why = format!("expected an {} value as indicated by `ipFamilies[{i}]`", f);
            return Err(ctx.err(format!("spec.clusterIPs[{i}]"), invalid(ip, why)));
        }
        families.push(family);
    }
    for ip in ips.iter().skip(families.len()) {
        families.push(IpFamily::of(*ip));
    }
    Ok(families)
}

/// `spec.ipFamilyPolicy`, defaulted as the API server does: RequireDualStack
/// when two families or addresses are given (and for a headless Service
/// without selector), else SingleStack.
pub(super) fn ip_family_policy(
    ctx: &Ctx<'_>,
    spec: &ServiceSpec,
    kind: ServiceType,
    ips: &[IpAddr],
    families: &[IpFamily],
    headless: bool,
    selector: &Option<Labels>,
) -> Result<IpFamilyPolicy, ObjectError> {
    const FIELD: &str = "spec.ipFamilyPolicy";
    let given = spec.ip_family_policy.as_deref();
    if kind == ServiceType::ExternalName {
        if given.is_some() {
            let why = "may not be set for ExternalName services";
            return Err(ctx.err(FIELD, Problem::Forbidden(why)));
        }
        return Ok(IpFamilyPolicy::SingleStack);
    }
    let two = ips.len() == 2 || families.len() == 2;
    let policy = match given {
        None if two || (headless && selector.is_none()) => IpFamilyPolicy::RequireDualStack,
        None | Some("SingleStack") => IpFamilyPolicy::SingleStack,
        Some("PreferDualStack") => IpFamilyPolicy::PreferDualStack,
        Some("RequireDualStack") => IpFamilyPolicy::RequireDualStack,
        Some(other) => {
            return Err(ctx.err(
                FIELD,
                Problem::NotSupported {
                    value: other.to_owned(),
                    supported: &["PreferDualStack", "RequireDualStack", "SingleStack"],
                },
            ));
        }
    };
    if policy == IpFamilyPolicy::SingleStack && two {
        let why = "must be RequireDualStack or PreferDualStack when multiple IP families or \
                   cluster IPs are specified";
        return Err(ctx.err(FIELD, invalid("SingleStack", why)));
    }
    Ok(policy)
}

/// `spec.externalIPs`: addresses, none unspecified, loopback or link-local.
pub(super) fn external_ips(ctx: &Ctx<'_>, spec: &ServiceSpec) -> Result<Vec<IpAddr>, ObjectError> {
    let mut out = Vec::new();
    for (i, text) in spec.external_ips.iter().flatten().enumerate() {
        let field = format!("spec.externalIPs[{i}]");
        let ip = parse_ip(ctx, &field, text)?;
        if let Some(why) = special_ip(ip) {
            return Err(ctx.err(field, invalid(text, why)));
        }
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// Why an address may not be an external IP (`ValidateEndpointIP`).
fn special_ip(ip: IpAddr) -> Option<&'static str> {
    let (link_local, link_local_multicast) = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (v4.is_link_local(), o[0] == 224 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (s[0] & 0xffc0 == 0xfe80, s[0] & 0xff0f == 0xff02)
        }
    };
    if ip.is_unspecified() {
        Some("may not be unspecified (0.0.0.0, ::)")
    } else if ip.is_loopback() {
        Some("may not be in the loopback range (127.0.0.0/8, ::1/128)")
    } else if link_local {
        Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
    } else if link_local_multicast {
        Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
    } else {
        None
    }
}

/// `status.loadBalancer.ingress[].ip` (hostnames are no addresses).
pub(super) fn load_balancer_ips(
    ctx: &Ctx<'_>,
    status: &Option<k8s_openapi::api::core::v1::ServiceStatus>,
    kind: ServiceType,
) -> Result<Vec<IpAddr>, ObjectError> {
    let ingress = status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default();
    if !ingress.is_empty() && kind != ServiceType::LoadBalancer {
        let why = "may only be used when `spec.type` is 'LoadBalancer'";
        return Err(ctx.err("status.loadBalancer.ingress", Problem::Forbidden(why)));
    }
    let mut out = Vec::new();
    for (i, entry) in ingress.iter().enumerate() {
        let Some(text) = entry.ip.as_deref().filter(|t| !t.is_empty()) else {
            continue;
        };
        let ip = parse_ip(ctx, &format!("status.loadBalancer.ingress[{i}].ip"), text)?;
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

fn parse_ip(ctx: &Ctx<'_>, field: &str, text: &str) -> Result<IpAddr, ObjectError> {
    text.parse()
        .map_err(|_| ctx.err(field, invalid(text, "must be a valid IP address")))
}
