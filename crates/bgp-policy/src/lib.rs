//! Route policy: ordered filters of rules, evaluated per peer on import and
//! export. Calico's `BGPFilter` semantics: within a filter the first matching
//! rule decides; a filter with no matching rule passes the route to the next
//! filter; a route no filter matched is accepted unchanged. kbgp's rules can
//! also match communities and AS paths and change attributes on accept.

use std::sync::Arc;

use bgp_wire::{LargeCommunity, PathAttrs};
use ipnet::IpNet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Action {
    Accept,
    Reject,
}

/// Calico's matchOperator against the rule's CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum MatchOp {
    Equal,
    NotEqual,
    /// The prefix is the CIDR or inside it.
    In,
    NotIn,
}

/// Attribute changes applied when an Accept rule matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Set {
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    pub add_communities: Vec<u32>,
    pub add_large_communities: Vec<LargeCommunity>,
    /// Prepend (AS, times).
    pub prepend: Option<(u32, usize)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    pub action: Option<Action>,
    pub cidr: Option<(MatchOp, IpNet)>,
    /// Prefix length range (inclusive).
    pub prefix_length: Option<(u8, u8)>,
    /// Matches when the route carries any of these.
    pub communities: Vec<u32>,
    pub large_communities: Vec<LargeCommunity>,
    pub as_path_contains: Option<u32>,
    pub max_as_path_length: Option<usize>,
    pub set: Set,
}

impl Rule {
    /// Whether matching reads the route's attributes (else the prefix
    /// alone decides, see [`evaluate_by_prefix`]).
    pub fn reads_attrs(&self) -> bool {
        !self.communities.is_empty()
            || !self.large_communities.is_empty()
            || self.as_path_contains.is_some()
            || self.max_as_path_length.is_some()
    }

    pub fn matches(&self, prefix: &IpNet, a: &PathAttrs) -> bool {
        self.matches_prefix(prefix) && self.matches_attrs(a)
    }

    /// The prefix conditions.
    fn matches_prefix(&self, prefix: &IpNet) -> bool {
        if let Some((op, cidr)) = &self.cidr {
            let same_family = matches!(
                (prefix, cidr),
                (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
            );
            let inside = same_family && cidr.contains(prefix);
            let ok = match op {
                MatchOp::Equal => prefix == cidr,
                MatchOp::NotEqual => prefix != cidr,
                MatchOp::In => inside,
                MatchOp::NotIn => !inside,
            };
            if !ok {
                return false;
            }
        }
        if let Some((min, max)) = self.prefix_length {
            let l = prefix.prefix_len();
            if l < min || l > max {
                return false;
            }
        }
        true
    }

    /// The attribute conditions.
    fn matches_attrs(&self, a: &PathAttrs) -> bool {
        if !self.communities.is_empty()
            && !self.communities.iter().any(|c| a.communities.contains(c))
        {
            return false;
        }
        if !self.large_communities.is_empty()
            && !self
                .large_communities
                .iter()
                .any(|c| a.large_communities().contains(c))
        {
            return false;
        }
        if let Some(asn) = self.as_path_contains {
            if !a.as_path.as_ref().is_some_and(|p| p.contains(asn)) {
                return false;
            }
        }
        if let Some(max) = self.max_as_path_length {
            if a.as_path.as_ref().map(|p| p.len()).unwrap_or(0) > max {
                return false;
            }
        }
        true
    }
}

/// One named filter: rules per direction and family.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Filter {
    pub name: String,
    pub import_v4: Vec<Rule>,
    pub import_v6: Vec<Rule>,
    pub export_v4: Vec<Rule>,
    pub export_v6: Vec<Rule>,
}

impl Filter {
    /// The rules for one direction and the prefix's family.
    pub fn rules(&self, dir: Direction, prefix: &IpNet) -> &[Rule] {
        match (dir, prefix) {
            (Direction::Import, IpNet::V4(_)) => &self.import_v4,
            (Direction::Import, IpNet::V6(_)) => &self.import_v6,
            (Direction::Export, IpNet::V4(_)) => &self.export_v4,
            (Direction::Export, IpNet::V6(_)) => &self.export_v6,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Import,
    Export,
}

/// What policy decided for a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted; with changed attributes when a rule set some.
    Accept(Option<PathAttrs>),
    /// Rejected, with the reason shown by `kbgp show rib --rejected`.
    Reject(Reason),
}

/// Why a route was rejected; made into text only when it is kept (import),
/// not for every route an export filter refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Rule `rule` (from 1) of the BGPFilter named `filter`.
    Rule {
        filter: Arc<Filter>,
        rule: usize,
    },
    Other(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Rule { filter, rule } => write!(f, "BGPFilter {} rule {rule}", filter.name),
            Reason::Other(why) => f.write_str(why),
        }
    }
}

fn apply_set(set: &Set, a: &PathAttrs, local_as: u32) -> Option<PathAttrs> {
    if *set == Set::default() {
        return None;
    }
    let mut a = a.clone();
    if let Some(lp) = set.local_pref {
        a.local_pref = Some(lp);
    }
    if let Some(m) = set.med {
        a.med = Some(m);
    }
    for c in &set.add_communities {
        if !a.communities.contains(c) {
            a.communities.push(*c);
        }
    }
    for c in &set.add_large_communities {
        if !a.large_communities().contains(c) {
            a.rare_mut().large_communities.push(*c);
        }
    }
    if let Some((asn, n)) = set.prepend {
        // AS 0 stands for the speaker's own AS.
        let asn = if asn == 0 { local_as } else { asn };
        a.as_path_mut().prepend(asn, n);
    }
    Some(a)
}

/// Run `filters` in order on one route of a speaker in `local_as`.
pub fn evaluate(
    filters: &[Arc<Filter>],
    dir: Direction,
    prefix: &IpNet,
    a: &PathAttrs,
    local_as: u32,
) -> Verdict {
    for f in filters {
        for (i, r) in f.rules(dir, prefix).iter().enumerate() {
            if !r.matches(prefix, a) {
                continue;
            }
            return match r.action.unwrap_or(Action::Accept) {
                Action::Accept => Verdict::Accept(apply_set(&r.set, a, local_as)),
                Action::Reject => Verdict::Reject(Reason::Rule {
                    filter: f.clone(),
                    rule: i + 1,
                }),
            };
        }
    }
    Verdict::Accept(None)
}

/// [`evaluate`] when the prefix alone decides: the rules before the first
/// one that matches read no attributes, and that one changes none (or there
/// is none). `None` when the attributes are needed. For export, where the
/// attributes a filter sees must first be built as they would be sent: a
/// filter made of prefix rules (or a reject-all one) then costs nothing per
/// route.
pub fn evaluate_by_prefix(
    filters: &[Arc<Filter>],
    dir: Direction,
    prefix: &IpNet,
) -> Option<Verdict> {
    for f in filters {
        for (i, r) in f.rules(dir, prefix).iter().enumerate() {
            if r.reads_attrs() {
                return None;
            }
            if !r.matches_prefix(prefix) {
                continue;
            }
            return match r.action.unwrap_or(Action::Accept) {
                Action::Accept if r.set == Set::default() => Some(Verdict::Accept(None)),
                Action::Accept => None,
                Action::Reject => Some(Verdict::Reject(Reason::Rule {
                    filter: f.clone(),
                    rule: i + 1,
                })),
            };
        }
    }
    Some(Verdict::Accept(None))
}

/// Whether `filters` reject every route of a family (`v4`: IPv4, else
/// IPv6) in direction `dir`, whatever its prefix and attributes: the first
/// rule they reach for that family matches everything and rejects. (False
/// when it cannot tell without a route.) A peer that is exported nothing
/// and holds nothing needs no work when the Loc-RIB changes.
pub fn rejects_all(filters: &[Arc<Filter>], dir: Direction, v4: bool) -> bool {
    let probe: IpNet = if v4 {
        IpNet::V4(Default::default())
    } else {
        IpNet::V6(Default::default())
    };
    for f in filters {
        if let Some(r) = f.rules(dir, &probe).first() {
            let unconditional = r.cidr.is_none() && r.prefix_length.is_none() && !r.reads_attrs();
            return unconditional && r.action == Some(Action::Reject);
        }
    }
    false
}

/// Max-prefix limit on what one peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MaxPrefix {
    pub limit: u32,
    /// Log a warning from this percentage of the limit.
    pub warning_percent: u8,
    /// Stop the session (Cease/Maximum Number of Prefixes Reached) when exceeded; else only log.
    pub stop: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Ok,
    Warning,
    Exceeded,
}

impl MaxPrefix {
    pub fn check(&self, count: usize) -> Limit {
        if count > self.limit as usize {
            Limit::Exceeded
        } else if count * 100 >= self.limit as usize * self.warning_percent as usize {
            Limit::Warning
        } else {
            Limit::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgp_wire::AsPath;

    fn rule(action: Action, op: MatchOp, cidr: &str) -> Rule {
        Rule {
            action: Some(action),
            cidr: Some((op, cidr.parse().unwrap())),
            ..Default::default()
        }
    }

    fn attrs() -> PathAttrs {
        PathAttrs {
            as_path: Some(AsPath::from_sequence(vec![65100])),
            communities: bgp_wire::thin_vec![(65100 << 16) | 1],
            ..Default::default()
        }
    }

    #[test]
    fn calico_semantics_first_match_then_next_filter_then_accept() {
        let f1 = Arc::new(Filter {
            name: "no-cluster".into(),
            import_v4: vec![
                rule(Action::Reject, MatchOp::In, "10.244.0.0/16"),
                rule(Action::Accept, MatchOp::Equal, "192.168.0.1/32"),
            ],
            ..Default::default()
        });
        let f2 = Arc::new(Filter {
            name: "only-vips".into(),
            import_v4: vec![rule(Action::Reject, MatchOp::NotIn, "192.168.0.0/16")],
            ..Default::default()
        });
        let fs = [f1, f2];
        let v = |p: &str| evaluate(&fs, Direction::Import, &p.parse().unwrap(), &attrs(), 65001);
        let why = |v: Verdict| match v {
            Verdict::Reject(r) => r.to_string(),
            Verdict::Accept(_) => "accepted".into(),
        };
        assert_eq!(why(v("10.244.2.0/24")), "BGPFilter no-cluster rule 1");
        assert_eq!(v("192.168.0.1/32"), Verdict::Accept(None));
        assert_eq!(why(v("198.18.0.0/24")), "BGPFilter only-vips rule 1");
        assert_eq!(v("192.168.5.0/24"), Verdict::Accept(None));
        // IPv6 rules are separate: no IPv6 rule, accepted.
        assert_eq!(v("2001:db8::/32"), Verdict::Accept(None));
        assert_eq!(
            evaluate(
                &fs,
                Direction::Export,
                &"10.244.2.0/24".parse().unwrap(),
                &attrs(),
                65001
            ),
            Verdict::Accept(None)
        );
    }

    #[test]
    fn prefix_length_communities_as_path_and_sets() {
        let r = Rule {
            action: Some(Action::Accept),
            cidr: Some((MatchOp::In, "192.168.0.0/16".parse().unwrap())),
            prefix_length: Some((24, 32)),
            communities: vec![(65100 << 16) | 1],
            as_path_contains: Some(65100),
            set: Set {
                local_pref: Some(200),
                add_communities: vec![7],
                prepend: Some((65001, 2)),
                ..Default::default()
            },
            ..Default::default()
        };
        let a = attrs();
        assert!(r.matches(&"192.168.1.0/24".parse().unwrap(), &a));
        assert!(
            !r.matches(&"192.168.0.0/16".parse().unwrap(), &a),
            "too short"
        );
        let mut other = a.clone();
        other.communities.clear();
        assert!(!r.matches(&"192.168.1.0/24".parse().unwrap(), &other));
        let f = [Arc::new(Filter {
            name: "x".into(),
            import_v4: vec![r],
            ..Default::default()
        })];
        match evaluate(
            &f,
            Direction::Import,
            &"192.168.1.0/24".parse().unwrap(),
            &a,
            65001,
        ) {
            Verdict::Accept(Some(n)) => {
                assert_eq!(n.local_pref, Some(200));
                assert!(n.communities.contains(&7));
                assert_eq!(n.as_path.unwrap().to_string(), "65001 65001 65100");
            }
            v => panic!("{v:?}"),
        }
    }

    /// The prefix alone decides until a rule reads attributes or changes
    /// them; where it decides, it says what `evaluate` says, whatever the
    /// attributes.
    #[test]
    fn rejects_all_only_when_the_first_rule_reached_rejects_everything() {
        let f = |name: &str, export_v4: Vec<Rule>| {
            Arc::new(Filter {
                name: name.into(),
                export_v4,
                ..Default::default()
            })
        };
        let reject = Rule {
            action: Some(Action::Reject),
            ..Default::default()
        };
        let none = f("none", vec![reject.clone()]);
        let empty = f("empty", vec![]);
        let some = f(
            "some",
            vec![
                rule(Action::Reject, MatchOp::In, "10.0.0.0/8"),
                reject.clone(),
            ],
        );
        let by_community = f(
            "c",
            vec![Rule {
                communities: vec![1],
                ..reject.clone()
            }],
        );
        let accept = f(
            "all",
            vec![Rule {
                action: Some(Action::Accept),
                ..Default::default()
            }],
        );
        let ex = Direction::Export;
        assert!(rejects_all(std::slice::from_ref(&none), ex, true));
        // Another family, another direction: its rules (none) accept.
        assert!(!rejects_all(std::slice::from_ref(&none), ex, false));
        assert!(!rejects_all(
            std::slice::from_ref(&none),
            Direction::Import,
            true
        ));
        // A filter without rules for the family passes routes on.
        assert!(rejects_all(&[empty.clone(), none.clone()], ex, true));
        assert!(!rejects_all(&[accept, none.clone()], ex, true));
        assert!(!rejects_all(&[some], ex, true));
        assert!(!rejects_all(&[by_community], ex, true));
        assert!(!rejects_all(&[], ex, true));
        // Where it says so, evaluate rejects whatever the route.
        for p in ["10.1.0.0/16", "192.0.2.0/24", "0.0.0.0/0"] {
            let p: IpNet = p.parse().unwrap();
            let v = evaluate(
                &[empty.clone(), none.clone()],
                ex,
                &p,
                &PathAttrs::default(),
                65000,
            );
            assert!(matches!(v, Verdict::Reject(_)), "{p}");
        }
    }

    #[test]
    fn by_prefix_decides_only_what_needs_no_attributes() {
        let reject_all = Arc::new(Filter {
            name: "none".into(),
            export_v4: vec![Rule {
                action: Some(Action::Reject),
                ..Default::default()
            }],
            ..Default::default()
        });
        let prefixes = Arc::new(Filter {
            name: "prefixes".into(),
            export_v4: vec![
                rule(Action::Accept, MatchOp::In, "10.244.0.0/16"),
                Rule {
                    action: Some(Action::Reject),
                    communities: vec![(65100 << 16) | 1],
                    ..Default::default()
                },
                rule(Action::Reject, MatchOp::NotIn, "192.168.0.0/16"),
            ],
            ..Default::default()
        });
        let sets = Arc::new(Filter {
            name: "sets".into(),
            export_v4: vec![Rule {
                action: Some(Action::Accept),
                set: Set {
                    med: Some(5),
                    ..Default::default()
                },
                ..Default::default()
            }],
            ..Default::default()
        });
        let by = |fs: &[Arc<Filter>], p: &str| {
            evaluate_by_prefix(fs, Direction::Export, &p.parse().unwrap())
        };
        let full = |fs: &[Arc<Filter>], p: &str, a: &PathAttrs| {
            evaluate(fs, Direction::Export, &p.parse().unwrap(), a, 65001)
        };
        let mut plain = attrs();
        plain.communities.clear();
        let cases: [(Vec<Arc<Filter>>, &str, bool); 7] = [
            (vec![reject_all.clone()], "198.18.0.0/24", true),
            (vec![reject_all.clone()], "2001:db8::/32", true),
            (vec![prefixes.clone()], "10.244.1.0/24", true),
            // The community rule comes first: the attributes are needed.
            (vec![prefixes.clone()], "198.18.0.0/24", false),
            (vec![sets.clone()], "198.18.0.0/24", false),
            (vec![], "198.18.0.0/24", true),
            (vec![prefixes, reject_all], "10.244.1.0/24", true),
        ];
        for (fs, p, decides) in cases {
            let v = by(&fs, p);
            assert_eq!(v.is_some(), decides, "{p}");
            if let Some(v) = v {
                assert_eq!(v, full(&fs, p, &attrs()), "{p}");
                assert_eq!(v, full(&fs, p, &plain), "{p}");
            }
        }
    }

    #[test]
    fn max_prefix_levels() {
        let m = MaxPrefix {
            limit: 10,
            warning_percent: 80,
            stop: true,
        };
        assert_eq!(m.check(7), Limit::Ok);
        assert_eq!(m.check(8), Limit::Warning);
        assert_eq!(m.check(10), Limit::Warning);
        assert_eq!(m.check(11), Limit::Exceeded);
    }
}
