//! What the plugin and the agent's local API exchange (JSON). The agent's
//! routes and the plugin's client both use these types, so the two cannot
//! drift apart.
//!
//! | method and path                       | body → answer                                   |
//! |---------------------------------------|-------------------------------------------------|
//! | `POST /v1/cni/endpoints`              | [`AddRequest`] → 200 [`EndpointStatus`] once     |
//! |                                       | enforced, 504 at the request's deadline          |
//! | `GET /v1/cni/endpoints/{containerId}` | → 200 [`EndpointStatus`], 404 unknown            |
//! | `DELETE /v1/cni/endpoints/{id}`       | → 200 [`DeleteResponse`] (unknown ids too)       |
//! | `POST /v1/cni/gc`                     | [`GcRequest`] → 200 [`GcResponse`]               |
//!
//! Errors are the API's JSON `{"error": "...", "status": N}`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Default path of the agent's API socket (the agent's `--api-socket`).
pub const DEFAULT_SOCKET: &str = "/run/bulkhead/agent.sock";

/// Path of the endpoint registrations.
pub const ENDPOINTS_PATH: &str = "/v1/cni/endpoints";

/// Path of garbage collection (CNI GC).
pub const GC_PATH: &str = "/v1/cni/gc";

/// Longest wait an ADD may ask for; longer ones are cut to it.
pub const MAX_WAIT_MS: u64 = 10 * 60 * 1000;

/// One pod attachment as CNI ADD saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// `CNI_CONTAINERID`: the key of the registration.
    pub container_id: String,
    /// The pod's namespace (`K8S_POD_NAMESPACE`).
    pub pod_namespace: String,
    /// The pod's name (`K8S_POD_NAME`).
    pub pod_name: String,
    /// The pod's addresses (from the previous result's `ips`).
    pub ips: Vec<IpAddr>,
    /// MAC of the pod's interface (`aa:bb:cc:dd:ee:ff`), when the previous
    /// result gives it: the agent then drops frames from other MACs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Host-side interfaces of the previous result (no `sandbox`), in its
    /// order; the agent binds the pod to the first that is a veth on the
    /// node.
    pub host_interfaces: Vec<String>,
    /// `CNI_NETNS`.
    #[serde(default)]
    pub netns: String,
    /// `CNI_IFNAME`.
    #[serde(default)]
    pub ifname: String,
}

impl Registration {
    /// `namespace/name`, the model's pod key.
    pub fn pod_key(&self) -> String {
        format!("{}/{}", self.pod_namespace, self.pod_name)
    }

    /// The MAC as bytes, if given and well formed.
    pub fn mac_bytes(&self) -> Option<[u8; 6]> {
        self.mac.as_deref().and_then(parse_mac)
    }
}

/// `POST /v1/cni/endpoints`: register and wait until enforced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddRequest {
    /// The attachment.
    #[serde(flatten)]
    pub registration: Registration,
    /// How long the agent may hold the request waiting for enforcement
    /// (capped at [`MAX_WAIT_MS`]).
    pub wait_ms: u64,
}

/// Where a registration stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `namespace/name`.
    pub pod: String,
    /// The pod's policy is in the kernel maps and the hooks are attached
    /// on its veth.
    pub enforced: bool,
    /// The veth it is enforced on, once enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_interface: Option<String>,
    /// Its ifindex in the agent's namespace, once enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    /// What it waits for, when not enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// `DELETE /v1/cni/endpoints/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// Whether a registration was there.
    pub forgotten: bool,
}

/// `POST /v1/cni/gc`: every attachment the runtime still knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcRequest {
    /// Container ids of the valid attachments.
    pub valid_container_ids: Vec<String>,
}

/// What GC forgot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcResponse {
    /// Container ids of the registrations removed.
    pub forgotten: Vec<String>,
}

/// Parses `aa:bb:cc:dd:ee:ff` (either case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_round_trip_and_bad_ones_are_refused() {
        let mac = parse_mac("0A:58:0a:f4:00:05").unwrap();
        assert_eq!(mac, [0x0a, 0x58, 0x0a, 0xf4, 0, 5]);
        assert_eq!(format_mac(mac), "0a:58:0a:f4:00:05");
        for bad in [
            "",
            "0a:58:0a:f4:00",
            "0a:58:0a:f4:00:05:06",
            "0a:58:0a:f4:0:055",
            "zz:58:0a:f4:00:05",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_add_request_is_flat_camel_case_json() {
        let req = AddRequest {
            registration: Registration {
                container_id: "c1".into(),
                pod_namespace: "ns".into(),
                pod_name: "p".into(),
                ips: vec!["10.0.0.5".parse().unwrap()],
                mac: Some("02:00:00:00:00:01".into()),
                host_interfaces: vec!["veth1".into()],
                netns: "/run/netns/x".into(),
                ifname: "eth0".into(),
            },
            wait_ms: 1000,
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["containerId"], "c1");
        assert_eq!(v["podNamespace"], "ns");
        assert_eq!(v["hostInterfaces"][0], "veth1");
        assert_eq!(v["waitMs"], 1000);
        assert_eq!(serde_json::from_value::<AddRequest>(v).unwrap(), req);
        assert_eq!(req.registration.pod_key(), "ns/p");
    }
}
