//! Attaching the programs to pod veths and to the node's uplinks.
//!
//! - TC: tcx links (kernel 6.6+), pinned as
//!   `links/<ifindex>-from_pod|to_pod` on pod veths and
//!   `links/<ifindex>-leave_node` (TC egress) on uplinks;
//!   with [`TcMode::Netlink`] (older kernels, or forced) a clsact qdisc and
//!   direct-action filters at a fixed priority and handle. Netlink filters
//!   are not links and cannot be pinned, but they stay attached after the
//!   process exits all the same; the fixed handle makes a re-attach an
//!   `EEXIST` instead of a duplicate.
//! - XDP: a bpf_link pinned as `links/<ifindex>-xdp`, when enabled.
//!
//! A hook counts as present when its pin opens and the kernel reports our
//! program behind the link, on the endpoint's device and direction (tcx
//! link info), or behind the link (XDP); anything else is re-attached, so a
//! restart re-attaches only missing hooks and never detaches a working one.
//! The check needs only the DaemonSet's capabilities: a check that failed
//! for want of one would unpin, and so detach, a working hook.

use std::collections::BTreeSet;

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{
    NlOptions, TcAttachOptions, TcHandle, qdisc_add_clsact, qdisc_detach_program,
};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, XdpMode};

use aya_obj::generated::bpf_attach_type;

use super::pins::remove_pin;
use super::{Dataplane, DataplaneError, FROM_POD, LEAVE_NODE, TO_POD};
use crate::node::{LocalEndpoint, Uplink};

/// How TC programs are attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcMode {
    /// tcx when the kernel has it (6.6+), else netlink.
    #[default]
    Auto,
    /// tcx links only.
    Tcx,
    /// clsact qdisc and netlink filters.
    Netlink,
}

/// Priority of Bulkhead's netlink filters.
const NL_PRIORITY: u16 = 0xb0;
/// Handle of Bulkhead's netlink filters.
const NL_HANDLE: TcHandle = TcHandle::new(0, 0xb0);

/// Name of the XDP hook in link pins.
const XDP_HOOK: &str = "xdp";

/// What a reconcile did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookReport {
    /// Hooks attached now (device, hook).
    pub attached: Vec<(String, &'static str)>,
    /// Hooks found in place.
    pub present: usize,
    /// Link pins removed (stale devices, XDP switched off).
    pub removed: usize,
    /// Devices with netlink filters (for cleanup).
    pub netlink_devices: Vec<String>,
}

fn tcx_available(mode: TcMode) -> bool {
    match mode {
        TcMode::Tcx => true,
        TcMode::Netlink => false,
        TcMode::Auto => aya::util::KernelVersion::current()
            .map(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
            .unwrap_or(false),
    }
}

pub(super) fn reconcile(
    dp: &mut Dataplane,
    endpoints: &[LocalEndpoint],
    uplinks: &[Uplink],
    xdp: bool,
) -> Result<HookReport, DataplaneError> {
    let mut report = HookReport::default();
    let tcx = tcx_available(dp.tc_mode);
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let tc_hooks = endpoints
        .iter()
        .flat_map(|ep| {
            [
                (
                    ep.ifindex,
                    ep.ifname.as_str(),
                    FROM_POD,
                    TcAttachType::Ingress,
                ),
                (ep.ifindex, ep.ifname.as_str(), TO_POD, TcAttachType::Egress),
            ]
        })
        .chain(uplinks.iter().map(|u| {
            (
                u.ifindex,
                u.ifname.as_str(),
                LEAVE_NODE,
                TcAttachType::Egress,
            )
        }));
    for (ifindex, ifname, hook, ty) in tc_hooks {
        let dev = Device { ifindex, ifname };
        let prog = match hook {
            FROM_POD => &mut dp.from_pod,
            TO_POD => &mut dp.to_pod,
            _ => &mut dp.leave_node,
        };
        if tcx {
            wanted.insert(format!("{ifindex}-{hook}"));
            let pin = dp.pins.link(ifindex, hook);
            if tcx_attach(prog, &pin, dev, hook, ty)? {
                report.attached.push((ifname.to_owned(), hook));
            } else {
                report.present += 1;
            }
        } else {
            if netlink_attach(prog, ifname, hook, ty)? {
                report.attached.push((ifname.to_owned(), hook));
            } else {
                report.present += 1;
            }
            if !report.netlink_devices.iter().any(|d| d == ifname) {
                report.netlink_devices.push(ifname.to_owned());
            }
        }
    }
    if xdp {
        for ep in endpoints {
            wanted.insert(format!("{}-{XDP_HOOK}", ep.ifindex));
            if attach_xdp(dp, ep)? {
                report.attached.push((ep.ifname.clone(), XDP_HOOK));
            } else {
                report.present += 1;
            }
        }
    }
    // Links of devices that are gone or no longer endpoints or uplinks,
    // and XDP links when XDP is off.
    let entries = std::fs::read_dir(dp.pins.links())
        .map_err(DataplaneError::io("reading", dp.pins.links()))?;
    for entry in entries {
        let entry = entry.map_err(DataplaneError::io("reading", dp.pins.links()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !wanted.contains(&name) && remove_pin(&entry.path())? {
            tracing::info!(link = %name, "removed the link of a device that is no longer hooked");
            report.removed += 1;
        }
    }
    Ok(report)
}

/// A device a TC hook goes on.
#[derive(Clone, Copy)]
struct Device<'a> {
    ifindex: u32,
    ifname: &'a str,
}

/// Attaches `prog` as `hook` with a pinned tcx link unless it is there;
/// whether it attached now.
fn tcx_attach(
    prog: &mut SchedClassifier,
    pin: &std::path::Path,
    dev: Device<'_>,
    hook: &'static str,
    ty: TcAttachType,
) -> Result<bool, DataplaneError> {
    if tcx_present(prog, pin, dev, ty)? {
        return Ok(false);
    }
    remove_pin(pin)?;
    let id = prog
        .attach_with_options(
            dev.ifname,
            ty,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(DataplaneError::program(
            "attaching (tcx)",
            format!("{hook} to {}", dev.ifname),
        ))?;
    let link = prog
        .take_link(id)
        .map_err(DataplaneError::program("taking link", hook))?;
    let fd = FdLink::try_from(link).map_err(|e| DataplaneError::Pin {
        action: "converting tcx link",
        path: pin.to_owned(),
        reason: e.to_string(),
    })?;
    pin_link(fd, pin)?;
    Ok(true)
}

/// Attaches `xdp_prefilter` to the endpoint unless it is there; whether it
/// attached now.
fn attach_xdp(dp: &mut Dataplane, ep: &LocalEndpoint) -> Result<bool, DataplaneError> {
    let pin = dp.pins.link(ep.ifindex, XDP_HOOK);
    let ours = dp
        .xdp
        .info()
        .map_err(DataplaneError::program("querying", "xdp_prefilter"))?
        .id();
    let present = PinnedLink::from_pin(&pin)
        .ok()
        .and_then(|l| FdLink::from(l).info().ok())
        .is_some_and(|i| i.program_id() == ours);
    if present {
        return Ok(false);
    }
    remove_pin(&pin)?;
    let id = dp
        .xdp
        .attach_to_if_index(ep.ifindex, XdpMode::default())
        .map_err(DataplaneError::program(
            "attaching",
            format!("xdp_prefilter to {}", ep.ifname),
        ))?;
    let link = dp
        .xdp
        .take_link(id)
        .map_err(DataplaneError::program("taking link", "xdp_prefilter"))?;
    match FdLink::try_from(link) {
        Ok(fd) => pin_link(fd, &pin)?,
        Err(e) => {
            // Netlink-attached XDP (no bpf_link): stays attached without a
            // pin; keep it from detaching on drop.
            tracing::warn!(dev = %ep.ifname, error = %e, "XDP attached without a link; it cannot be pinned");
        }
    }
    Ok(true)
}

/// Whether the pinned tcx link of `hook` exists and runs our program on
/// the endpoint's device in direction `ty`.
fn tcx_present(
    prog: &SchedClassifier,
    pin: &std::path::Path,
    dev: Device<'_>,
    ty: TcAttachType,
) -> Result<bool, DataplaneError> {
    let Some(target) = super::bpfsys::pinned_tcx_link(pin)
        .map_err(DataplaneError::io("reading the tcx link pinned at", pin))?
    else {
        return Ok(false);
    };
    let ours = prog
        .info()
        .map_err(DataplaneError::program("querying", dev.ifname.to_owned()))?
        .id();
    let direction = match ty {
        TcAttachType::Ingress => bpf_attach_type::BPF_TCX_INGRESS,
        _ => bpf_attach_type::BPF_TCX_EGRESS,
    } as u32;
    Ok(target.prog_id == ours && target.ifindex == dev.ifindex && target.attach_type == direction)
}

fn pin_link(fd: FdLink, pin: &std::path::Path) -> Result<(), DataplaneError> {
    fd.pin(pin).map(drop).map_err(|e| DataplaneError::Pin {
        action: "pinning link",
        path: pin.to_owned(),
        reason: e.to_string(),
    })
}

/// Attaches with netlink; `Ok(false)` when our filter is already there.
fn netlink_attach(
    prog: &mut SchedClassifier,
    ifname: &str,
    hook: &str,
    ty: TcAttachType,
) -> Result<bool, DataplaneError> {
    // EEXIST: the clsact qdisc is there already.
    let _ = qdisc_add_clsact(ifname);
    let options = TcAttachOptions::Netlink(NlOptions {
        priority: NL_PRIORITY,
        handle: NL_HANDLE,
        classid: None,
    });
    match prog.attach_with_options(ifname, ty, options) {
        Ok(id) => {
            let link = prog
                .take_link(id)
                .map_err(DataplaneError::program("taking link", hook))?;
            // The filter outlives the process; dropping the link would
            // detach it.
            std::mem::forget(link);
            Ok(true)
        }
        Err(aya::programs::ProgramError::TcError(aya::programs::tc::TcError::NetlinkError(e)))
            if e.raw_os_error() == Some(nix::libc::EEXIST) =>
        {
            Ok(false)
        }
        Err(e) => Err(DataplaneError::program(
            "attaching (netlink)",
            format!("{hook} to {ifname}"),
        )(e)),
    }
}

/// Detaches Bulkhead's netlink filters from `dev`; the number removed.
pub(super) fn detach_netlink(dev: &str) -> usize {
    let mut n = 0;
    for (name, ty) in [
        (FROM_POD, TcAttachType::Ingress),
        (TO_POD, TcAttachType::Egress),
        (LEAVE_NODE, TcAttachType::Egress),
    ] {
        if qdisc_detach_program(dev, ty, name).is_ok() {
            n += 1;
        }
    }
    n
}
