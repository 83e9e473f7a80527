//! IDENTITIES_EXACT (ABI v11): single addresses are looked up in a hash
//! before the IDENTITIES trie. In the kernel, an exact entry wins over any
//! prefix and a miss falls back to the trie, including a full-length entry
//! that an agent before v11 left in the trie. Through the agent's own
//! pinned maps (`KernelMaps`), full-length entries are written to the hash,
//! read back shadowing a stale trie copy, and removed from both places.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use aya::maps::{HashMap, LpmTrie, Map, MapData, lpm_trie::Key};
use bulkhead_common::{
    IDENTITIES_EXACT_MAP, IDENTITY_PREFIX_FULL, IdentityKey, IdentityValue, PROTO_TCP,
};
use bulkhead_dataplane::{Dataplane as Agent, KernelMaps, PinDir, SlotMaps, TcMode};
use bulkhead_netns_tests::{
    dataplane::{DROP, Dataplane, PASS, endpoint},
    packet::{L4, SYN, frame},
    privileged_ebpf_elf,
};
use bulkhead_policy::compile::maps::abi_addr;

const POD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 9];
const TABLE: u32 = 3;
/// Allowed to TCP 80 of the pod.
const WEB: u32 = 7;
/// The rest of the /24, allowed nothing.
const OTHERS: u32 = 8;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn full_key(slot: u8, addr: IpAddr) -> IdentityKey {
    IdentityKey {
        slot,
        addr: abi_addr(addr),
    }
}

#[test]
fn an_exact_entry_wins_and_a_miss_falls_back_to_the_trie() {
    let Some(mut dp) = Dataplane::load() else {
        return;
    };
    let pod = [ip("10.0.0.2"), ip("fd00::2")];
    let web = ip("10.0.1.5");
    let legacy = ip("10.0.1.6");
    let other = ip("10.0.1.7");
    let syn = |src: IpAddr| {
        let sport = 1000 + u16::from(abi_addr(src)[15]);
        frame(
            POD_MAC,
            src,
            pod[0],
            L4::Tcp {
                sport,
                dport: 80,
                flags: SYN,
            },
        )
    };
    dp.add_identity(0, "10.0.1.0/24".parse().unwrap(), OTHERS);
    // A /32 goes into IDENTITIES_EXACT (the harness writes as the agent does).
    dp.add_identity(0, "10.0.1.5/32".parse().unwrap(), WEB);
    // A full-length entry in the trie, as an agent before ABI v11 wrote it.
    let mut trie: LpmTrie<&mut MapData, IdentityKey, IdentityValue> =
        LpmTrie::try_from(dp.ebpf().map_mut("IDENTITIES").unwrap()).unwrap();
    let legacy_key = Key::new(IDENTITY_PREFIX_FULL, full_key(0, legacy));
    let web_value = IdentityValue {
        identity: WEB,
        flags: 0,
    };
    trie.insert(&legacy_key, web_value, 0).unwrap();
    dp.allow(0, TABLE, WEB, PROTO_TCP, Some(80));
    dp.set_endpoint(0, endpoint(&pod, POD_MAC, Some(TABLE), None));
    dp.set_revision(2);

    assert_eq!(dp.to_pod(&syn(web)), PASS, "the exact entry decides");
    assert_eq!(dp.to_pod(&syn(legacy)), PASS, "a trie /32 is still found");
    assert_eq!(dp.to_pod(&syn(other)), DROP, "the /24 decides the rest");

    let mut trie: LpmTrie<&mut MapData, IdentityKey, IdentityValue> =
        LpmTrie::try_from(dp.ebpf().map_mut("IDENTITIES").unwrap()).unwrap();
    trie.remove(&legacy_key).unwrap();
    dp.clear_image();
}

/// A private bpffs under a temporary directory, unmounted when dropped.
struct Bpffs {
    dir: tempfile::TempDir,
}

impl Bpffs {
    fn mount() -> Bpffs {
        let dir = tempfile::tempdir().unwrap();
        nix::mount::mount(
            Some("bpf"),
            dir.path(),
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .expect("mount a private bpffs");
        Bpffs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

fn pinned<T: TryFrom<Map>>(pins: &PinDir, name: &str) -> T {
    let data = MapData::from_pin(pins.map(name)).unwrap();
    T::try_from(Map::from_map_data(data).unwrap())
        .ok()
        .expect("map type")
}

#[test]
fn the_agents_maps_write_exact_entries_to_the_hash_and_remove_stale_trie_copies() {
    let Some(elf) = privileged_ebpf_elf() else {
        return;
    };
    let bpffs = Bpffs::mount();
    let pins = PinDir::prepare(&bpffs.path().join("bulkhead")).unwrap();
    let elf = std::fs::read(elf).unwrap();
    let (agent, _) = Agent::open(pins.clone(), Some(&elf), Duration::ZERO, TcMode::Auto).unwrap();
    drop(agent);
    let mut maps = KernelMaps::open(&pins).unwrap();
    let mut trie: LpmTrie<MapData, IdentityKey, IdentityValue> = pinned(&pins, "IDENTITIES");
    let exact: HashMap<MapData, IdentityKey, IdentityValue> = pinned(&pins, IDENTITIES_EXACT_MAP);

    let pod = full_key(1, ip("10.0.0.2"));
    let value = |identity| IdentityValue { identity, flags: 0 };
    // Left by an agent before v11: a full-length entry in the trie.
    trie.insert(&Key::new(IDENTITY_PREFIX_FULL, pod), value(5), 0)
        .unwrap();
    let read = |maps: &KernelMaps| maps.read_slot(1).unwrap().identities;
    assert_eq!(
        read(&maps).get(&(IDENTITY_PREFIX_FULL, pod)),
        Some(&value(5))
    );

    // The new value goes into the hash and shadows the stale trie copy.
    maps.put_identity(IDENTITY_PREFIX_FULL, pod, value(6))
        .unwrap();
    assert_eq!(exact.get(&pod, 0).unwrap(), value(6));
    assert_eq!(
        read(&maps).get(&(IDENTITY_PREFIX_FULL, pod)),
        Some(&value(6))
    );

    // A prefix stays in the trie.
    let block = IdentityKey {
        slot: 1,
        addr: abi_addr(ip("10.0.1.0")),
    };
    let block_len = IDENTITY_PREFIX_FULL - 8;
    maps.put_identity(block_len, block, value(7)).unwrap();
    assert_eq!(trie.get(&Key::new(block_len, block), 0).unwrap(), value(7));
    assert!(exact.get(&block, 0).is_err());

    // Removing the address clears both places; removing it again fails.
    maps.remove_identity(IDENTITY_PREFIX_FULL, pod).unwrap();
    assert!(exact.get(&pod, 0).is_err());
    assert!(trie.get(&Key::new(IDENTITY_PREFIX_FULL, pod), 0).is_err());
    assert!(maps.remove_identity(IDENTITY_PREFIX_FULL, pod).is_err());
    maps.remove_identity(block_len, block).unwrap();
    assert!(read(&maps).is_empty());
}
