use super::*;
use crate::model::IpBlock;

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn block(cidr: &str, except: &[&str]) -> IpBlock {
    IpBlock {
        cidr: net(cidr),
        except: except.iter().map(|e| net(e)).collect(),
    }
}

#[test]
fn range_to_prefixes_is_minimal_and_exact() {
    assert_eq!(
        range_to_prefixes(0, u32::MAX as u128, true),
        vec![net("0.0.0.0/0")]
    );
    assert_eq!(range_to_prefixes(0, u128::MAX, false), vec![net("::/0")]);
    let (lo, hi) = net_range(&net("10.0.0.0/8"));
    assert_eq!(range_to_prefixes(lo, hi, true), vec![net("10.0.0.0/8")]);
    // 10.0.0.1 - 10.0.0.6 = .1/32 .2/31 .4/31 .6/32
    let got = range_to_prefixes(lo + 1, lo + 6, true);
    assert_eq!(
        got,
        vec![
            net("10.0.0.1/32"),
            net("10.0.0.2/31"),
            net("10.0.0.4/31"),
            net("10.0.0.6/32")
        ]
    );
    // Upper end of the space.
    let got = range_to_prefixes(u32::MAX as u128 - 1, u32::MAX as u128, true);
    assert_eq!(got, vec![net("255.255.255.254/31")]);
}

#[test]
fn regions_partition_by_blocks_and_excepts() {
    let blocks = vec![
        block("10.0.0.0/8", &["10.1.0.0/16"]),
        block("10.1.2.0/24", &[]),
        block("fd00::/8", &[]),
    ];
    let r = Regions::new(&blocks);
    let of = |a: &str| r.lookup(a.parse().unwrap());
    let members = |a: &str| r.regions[of(a) as usize].blocks.clone();
    assert_eq!(members("10.2.3.4"), vec![0]);
    assert_eq!(members("10.1.0.1"), Vec::<u32>::new());
    assert_eq!(members("10.1.2.3"), vec![1]);
    assert_eq!(members("11.0.0.0"), Vec::<u32>::new());
    assert_eq!(members("fd12::1"), vec![2]);
    // Outside every block, but the families stay apart.
    assert_ne!(of("11.0.0.0"), of("2001:db8::1"));
    // Non-contiguous region: 10/8 minus 10.1/16 is one region with several prefixes.
    assert_eq!(of("10.0.0.1"), of("10.200.0.1"));
    let prefixes = &r.regions[of("10.0.0.1") as usize].prefixes;
    assert!(prefixes.contains(&net("10.0.0.0/16")));
    assert!(prefixes.contains(&net("10.128.0.0/9")));
    // Every region's prefixes contain exactly its addresses.
    for (id, region) in r.regions.iter().enumerate() {
        for p in &region.prefixes {
            assert_eq!(r.lookup(p.network()) as usize, id, "{p}");
            let (_, hi) = net_range(p);
            let last: IpAddr = if p.is_ipv4() {
                std::net::Ipv4Addr::from(hi as u32).into()
            } else {
                std::net::Ipv6Addr::from(hi).into()
            };
            assert_eq!(r.lookup(last) as usize, id, "{p} last");
        }
    }
}

#[test]
fn no_blocks_means_one_region_per_family() {
    let r = Regions::new(&[]);
    assert_eq!(r.regions.len(), 2);
    assert_eq!(r.regions[0].prefixes, vec![net("0.0.0.0/0")]);
    assert_eq!(r.regions[1].prefixes, vec![net("::/0")]);
}
