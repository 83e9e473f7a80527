//! Object metadata the server owns: `apiVersion`/`kind` checks, the key
//! (namespace, name, `generateName`), `generation` and uids.

use serde_json::{Map, Value, json};

use super::error::ApiServerError;
use super::registry::{RESOURCES, ResId};
use super::store::Key;

/// Checks and completes an incoming object of resource `res`: `apiVersion`
/// and `kind` (filled in if absent, must match if present), `metadata.name`
/// (from `generateName` on create), and `metadata.namespace` (`default` if
/// absent for a namespaced resource, dropped for a cluster-scoped one).
/// Returns the object's key and the object with `apiVersion`, `kind` and
/// `metadata` first.
pub(crate) fn normalize(
    res: ResId,
    obj: Value,
    create: bool,
    uids: &mut UidGen,
) -> Result<(Key, Value), ApiServerError> {
    let rt = &RESOURCES[res];
    let Value::Object(mut map) = obj else {
        return Err(ApiServerError::bad_request(
            "the request body is not a JSON object",
        ));
    };
    for (field, expected) in [
        ("apiVersion", rt.api_version()),
        ("kind", rt.kind.to_owned()),
    ] {
        match map.remove(field) {
            None | Some(Value::Null) => {}
            Some(v) if v.as_str() == Some(&expected) => {}
            Some(v) => {
                return Err(ApiServerError::bad_request(format!(
                    "the {field} in the data ({v}) does not match the expected {field} ({expected})"
                )));
            }
        }
    }
    let mut meta = match map.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ApiServerError::bad_request("metadata is not an object")),
    };
    let invalid = |field: &str, message: &str, name: &str| ApiServerError::Invalid {
        kind: rt.kind.to_owned(),
        name: name.to_owned(),
        field: field.to_owned(),
        message: message.to_owned(),
    };
    let name = match meta.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if create && !prefix.is_empty() => {
                format!("{prefix}{}", uids.name_suffix())
            }
            _ => {
                return Err(invalid(
                    "metadata.name",
                    "Required value: name or generateName is required",
                    "",
                ));
            }
        },
    };
    if name.contains('/') || name.contains('%') || name == "." || name == ".." {
        return Err(invalid(
            "metadata.name",
            "Invalid value: may not contain '/' or '%'",
            &name,
        ));
    }
    meta.insert("name".into(), json!(name));
    if rt.group.is_empty() && rt.plural == "namespaces" {
        // The NamespaceDefaultLabelName admission plugin (on since 1.21)
        // labels every namespace with its name; policies select on it.
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels["kubernetes.io/metadata.name"] = json!(name);
    }
    let ns = if rt.namespaced {
        let ns = match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() => ns.to_owned(),
            _ => "default".to_owned(),
        };
        meta.insert("namespace".into(), json!(ns));
        ns
    } else {
        meta.remove("namespace");
        String::new()
    };
    let mut out = Map::with_capacity(map.len() + 3);
    out.insert("apiVersion".into(), json!(rt.api_version()));
    out.insert("kind".into(), json!(rt.kind));
    out.insert("metadata".into(), Value::Object(meta));
    out.extend(map);
    Ok(((ns, name), Value::Object(out)))
}

/// Whether two objects agree outside `metadata` and `status` (what bumps
/// `metadata.generation` when it changes).
pub(crate) fn same_spec(a: &Value, b: &Value) -> bool {
    let rest = |v: &Value| {
        v.as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Map<String, Value>>()
    };
    rest(a) == rest(b)
}

/// Unique ids for `metadata.uid` and `generateName` suffixes.
///
/// Hand-written (a SplitMix64 sequence from a per-server seed) rather than
/// a uuid crate: uids here only need to be unique within one server, and
/// formatted as RFC 4122 version 4 UUIDs as the real server's are.
pub(crate) struct UidGen {
    state: u64,
}

impl UidGen {
    /// A sequence seeded from the clock and the process id.
    pub fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            state: nanos ^ (u64::from(std::process::id()) << 32),
        }
    }

    fn next(&mut self) -> u64 {
        // SplitMix64 (Steele, Lea, Flood 2014).
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A fresh version-4-formatted UUID.
    pub fn uid(&mut self) -> String {
        let (hi, lo) = (self.next(), self.next());
        let hi = (hi & !0xF000) | 0x4000; // version 4
        let lo = (lo & !(0xC << 60)) | (0x8 << 60); // variant 10xx
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0xFFFF,
            lo >> 48,
            lo & 0xFFFF_FFFF_FFFF
        )
    }

    /// Five characters as the real server appends to a `generateName`.
    pub fn name_suffix(&mut self) -> String {
        // The alphabet of k8s.io/apimachinery/pkg/util/rand (no vowels, no confusables).
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.next();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }
}
