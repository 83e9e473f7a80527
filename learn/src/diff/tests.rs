use super::*;
use crate::yaml;
use bulkhead_policy::model::{
    NamespaceScope, Origin, Peer, Policy, PortMatch, PortSpec, Protocol, Requirement, Rule,
    Selector,
};

fn labels(app: &str) -> Selector {
    Selector::new(vec![Requirement::In("app".into(), vec![app.into()])])
}

fn pods(app: &str) -> Peer {
    Peer::Pods {
        namespaces: NamespaceScope::Same("shop".into()),
        pods: labels(app),
    }
}

fn port(n: u16) -> PortSpec {
    PortSpec {
        protocol: Protocol::Tcp,
        port: PortMatch::Range(n, n),
    }
}

fn policy(ingress: Vec<Rule>) -> Policy {
    Policy {
        namespace: "shop".into(),
        name: "bulkhead-web".into(),
        pod_selector: labels("web"),
        ingress: Some(ingress),
        egress: Some(vec![]),
        origin: Origin::default(),
        mode: None,
    }
}

fn rule(peers: Vec<Peer>, ports: Vec<PortSpec>) -> Rule {
    Rule {
        peers: Some(peers),
        ports: Some(ports),
    }
}

/// Each line of `text` with the mark the diff gave it (`keep` is ' ',
/// `change` is '-' for the old text or '+' for the new).
fn marks<'a>(edits: &[Edit<'a>], old: bool) -> Vec<(char, &'a str)> {
    edits
        .iter()
        .filter_map(|e| match (*e, old) {
            (Edit::Keep(l), _) => Some((' ', l)),
            (Edit::Remove(l), true) => Some(('-', l)),
            (Edit::Add(l), false) => Some(('+', l)),
            _ => None,
        })
        .collect()
}

/// Every peer (and port) block of `text` is marked all one way: kept
/// whole or changed whole, never spliced.
fn assert_values_whole(text: &str, edits: &[Edit<'_>], old: bool) {
    let lines: Vec<&str> = text.lines().collect();
    let m = marks(edits, old);
    assert_eq!(
        m.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        lines,
        "the edits rebuild the {} text",
        if old { "old" } else { "new" }
    );
    fn walk(lines: &[&str], units: &[Unit], m: &[(char, &str)], text: &str) {
        for u in units {
            if is_item(lines[u.start]) && !holds_list(lines, u) {
                let first = m[u.start].0;
                assert!(
                    m[u.start..u.end].iter().all(|(c, _)| *c == first),
                    "block {:?} spliced in\n{text}",
                    &lines[u.start..u.end]
                );
            } else {
                walk(lines, &u.children, m, text);
            }
        }
    }
    let shown = render(edits, false);
    walk(&lines, &parse(&lines, 0, lines.len()), &m, &shown);
}

fn check(old: &Policy, new: &Policy) -> String {
    let (o, n) = (yaml::plain(old), yaml::plain(new));
    let e = edits(&o, &n);
    assert_values_whole(&o, &e, true);
    assert_values_whole(&n, &e, false);
    render(&e, false)
}

#[test]
fn a_new_peer_is_one_added_block() {
    let old = policy(vec![rule(vec![pods("a"), pods("b")], vec![port(80)])]);
    let new = policy(vec![rule(
        vec![pods("a"), pods("c"), pods("b")],
        vec![port(80)],
    )]);
    let d = check(&old, &new);
    // A plain line diff (LCS) matched c's `- podSelector:` and
    // `matchLabels:` with b's and added `app: c` and b's first lines
    // inside b's block (issue 18).
    assert!(
        d.contains(
            "+         - podSelector:\n+             matchLabels:\n+               app: c\n"
        ),
        "{d}"
    );
    assert_eq!(d.lines().filter(|l| !l.starts_with(' ')).count(), 3, "{d}");
}

#[test]
fn a_changed_peer_is_removed_and_added_whole() {
    let old = policy(vec![rule(vec![pods("a"), pods("b")], vec![port(80)])]);
    let new = policy(vec![rule(vec![pods("a"), pods("b2")], vec![port(80)])]);
    let d = check(&old, &new);
    assert!(
        d.contains(
            "-         - podSelector:\n-             matchLabels:\n-               app: b\n\
             +         - podSelector:\n+             matchLabels:\n+               app: b2\n"
        ),
        "{d}"
    );
}

#[test]
fn a_rule_is_diffed_inside() {
    let old = policy(vec![rule(vec![pods("a")], vec![port(80)])]);
    let new = policy(vec![rule(vec![pods("a")], vec![port(80), port(81)])]);
    let d = check(&old, &new);
    let changed: Vec<&str> = d.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(
        changed,
        ["+         - protocol: TCP", "+           port: 81"],
        "{d}"
    );
}

#[test]
fn identical_texts_are_all_kept_and_folded() {
    let p = policy(vec![rule(vec![pods("a")], vec![port(80)])]);
    let t = yaml::plain(&p);
    assert!(edits(&t, &t).iter().all(|e| matches!(e, Edit::Keep(_))));
    assert_eq!(lines(&t, &t), "  …\n");
}

/// xorshift64*: deterministic inputs without a dependency.
struct Gen(u64);

impl Gen {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn peer(&mut self) -> Peer {
        let app = ["a", "b", "c", "d"][self.next(4)];
        match self.next(4) {
            0 => Peer::IpBlock(bulkhead_policy::model::IpBlock {
                cidr: format!("10.0.0.{}/32", self.next(4)).parse().unwrap(),
                except: vec![],
            }),
            1 => Peer::Pods {
                namespaces: NamespaceScope::Selected(Selector::new(vec![Requirement::In(
                    bulkhead_policy::model::NAMESPACE_NAME_LABEL.into(),
                    vec![["x", "y"][self.next(2)].into()],
                )])),
                pods: labels(app),
            },
            _ => pods(app),
        }
    }

    fn rule(&mut self) -> Rule {
        let peers = (0..1 + self.next(3)).map(|_| self.peer()).collect();
        let ports = (0..1 + self.next(2))
            .map(|_| port(80 + self.next(3) as u16))
            .collect();
        rule(peers, ports)
    }

    fn mutate(&mut self, rules: &mut Vec<Rule>) {
        if rules.is_empty() || self.next(6) == 0 {
            let at = self.next(rules.len() + 1);
            let r = self.rule();
            rules.insert(at, r);
            return;
        }
        let r = self.next(rules.len());
        if self.next(5) == 0 {
            rules.remove(r);
            return;
        }
        let Rule { peers, ports } = &mut rules[r];
        let (peers, ports) = (peers.as_mut().unwrap(), ports.as_mut().unwrap());
        match self.next(4) {
            0 if peers.len() > 1 => {
                peers.remove(self.next(peers.len()));
            }
            1 => {
                let at = self.next(peers.len() + 1);
                peers.insert(at, self.peer());
            }
            2 => {
                let at = self.next(peers.len());
                peers[at] = self.peer();
            }
            _ => {
                let at = self.next(ports.len() + 1);
                ports.insert(at, port(80 + self.next(4) as u16));
            }
        }
    }
}

#[test]
fn generated_diffs_rebuild_both_texts_and_keep_blocks_whole() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    for _ in 0..400 {
        let old: Vec<Rule> = (0..g.next(4)).map(|_| g.rule()).collect();
        let mut new = old.clone();
        for _ in 0..1 + g.next(4) {
            g.mutate(&mut new);
        }
        let mut np = policy(new);
        if g.next(3) == 0 {
            np.pod_selector = labels("api");
        }
        check(&policy(old), &np);
    }
}

#[test]
fn arbitrary_lines_rebuild_both_texts() {
    let mut g = Gen(42);
    let words = ["a:", "- b:", "c: 1", "- d", "", "-", "e:"];
    for _ in 0..400 {
        let mut text = || {
            (0..g.next(12))
                .map(|_| {
                    format!(
                        "{}{}",
                        " ".repeat(g.next(4) * 2),
                        words[g.next(words.len())]
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let (o, n) = (text(), text());
        let e = edits(&o, &n);
        let rebuild =
            |old: bool| -> Vec<&str> { marks(&e, old).into_iter().map(|(_, l)| l).collect() };
        assert_eq!(rebuild(true), o.lines().collect::<Vec<_>>());
        assert_eq!(rebuild(false), n.lines().collect::<Vec<_>>());
    }
}
