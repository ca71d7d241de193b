//! The routing half of the main loop: Adj-RIB-In → Loc-RIB (import, loop
//! checks, next-hop resolution), Loc-RIB → Adj-RIB-Out (export rules in
//! [`crate::export`]), Loc-RIB → kernel (ECMP routes, pod-block blackholes,
//! stale routes of an earlier run swept after convergence).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bgp_rib::best::{NewPath, Path, PeerInfo, Source};
use bgp_rib::locrib::{Changed, Outcome};
use bgp_rib::SharedAttrs;
use bgp_rib::{OutRoute, Rewrite, Route, RouteKey};
use bgp_wire::update::{pack_announce, pack_withdraw, NextHop};
use bgp_wire::{AsPath, Message, Origin, PathAttrs, Repair, RouteRefresh, Update};
use bytes::BytesMut;
use datastore::{GlobalCfg, Origination};
use fib::{Action, Gateway, Op};
use ipnet::IpNet;
use tracing::{info, warn};

use crate::export::{export, Target};
use crate::kernel::{self, KernelEvent};
use crate::peer::{PeerCmd, PeerEvent};
use crate::{status, Main, Session};

/// What import knows of a route besides its prefix, attributes and next
/// hop, worked out once per UPDATE, attribute set or next hop, not per prefix.
#[derive(Clone, Copy)]
struct Prechecked {
    /// When it was received (Unix seconds).
    since: u32,
    /// Why the attribute set must not enter the Loc-RIB ([`Main::import_check`]).
    loop_check: Option<&'static str>,
    /// IGP cost to the next hop (`None`: unreachable).
    igp_cost: Option<u32>,
}

/// What an export depends on besides the peer, when the peer has no export
/// filter: the family, and the best path's source and attributes (both by
/// identity; the interned set carries the next hop).
type ExportInput = (bool, usize, usize);

fn export_input(prefix: &IpNet, best: &Path, source: &Source) -> ExportInput {
    (
        matches!(prefix, IpNet::V4(_)),
        source.identity(),
        SharedAttrs::as_ptr(&best.attrs) as usize,
    )
}

/// The IGP cost to a next hop (`None`: unreachable); with no kernel to
/// ask, every next hop counts as reachable.
fn igp_cost(resolver: Option<&fib::Resolver>, nh: &NextHop) -> Option<u32> {
    match resolver {
        Some(r) => r.resolve(nh.addr()).map(|r| r.cost),
        None => Some(0),
    }
}

/// What importing routes from one peer works on, looked up once per UPDATE
/// (not per prefix).
struct ImportCtx<'a> {
    key: &'a str,
    g: &'a GlobalCfg,
    p: &'a mut crate::PeerEntry,
    /// The peer's session, as its paths' source.
    source: Source,
    rejected: &'a mut BTreeMap<String, BTreeMap<IpNet, String>>,
    /// Whether `rejected` has an entry for the peer (looked up once, not
    /// per accepted route).
    has_rejected: bool,
    interner: &'a bgp_rib::Interner,
    loc: &'a mut bgp_rib::locrib::LocRib,
    /// Next-hop resolution (none: no kernel to ask).
    resolver: Option<&'a fib::Resolver>,
}

impl ImportCtx<'_> {
    /// [`LocRib::prefetch`](bgp_rib::locrib::LocRib::prefetch) of an
    /// UPDATE's prefixes.
    fn prefetch(&self, received: &crate::peer::Received) {
        let u = &received.update;
        for n in u.withdrawals().chain(u.announcements().map(|(n, _)| n)) {
            self.loc.prefetch(&n.prefix);
        }
    }

    /// One UPDATE: withdrawals (including RFC 7606 treat-as-withdraw),
    /// then announcements (each an implicit withdraw of what it replaces).
    fn update(
        &mut self,
        received: &crate::peer::Received,
        now: u32,
        changed: &mut Vec<(IpNet, u32)>,
    ) {
        let rejected = if self.has_rejected {
            self.rejected.get_mut(self.key)
        } else {
            None
        };
        withdraw(self.key, received, self.p, rejected, self.loc, changed);
        // The peer task interned one attribute set per next hop (see
        // `peer::Received`); each is loop-checked here once, the IGP cost
        // found once per next hop too.
        let mut last: Option<(NextHop, u32, &SharedAttrs, Prechecked)> = None;
        for (n, nh) in received.update.announcements() {
            let path_id = n.path_id.unwrap_or(0);
            let (a, pre) = match last {
                Some((x, id, a, pre)) if x == nh && id == path_id => (a, pre),
                _ => {
                    let Some(a) = received.set(nh, path_id) else {
                        // (Cannot be: every next hop has its set.)
                        continue;
                    };
                    let pre = Prechecked {
                        since: now,
                        loop_check: Main::import_check(self.g, a, received.as_path_has(self.g.asn)),
                        igp_cost: igp_cost(self.resolver, &nh),
                    };
                    last = Some((nh, path_id, a, pre));
                    (a, pre)
                }
            };
            // (The set by reference: the Loc-RIB's path takes the one count.)
            let o = self.route(n.prefix, path_id, a, pre);
            if let (Changed::Yes, Some(id)) = (o.changed, o.id) {
                changed.push((n.prefix, id));
            }
        }
    }

    /// Run one received route through the checks and policy into the
    /// Loc-RIB, keeping it in the peer's Adj-RIB-In only if policy rejected
    /// or changed it (else its Loc-RIB path is the received route).
    fn route(
        &mut self,
        prefix: IpNet,
        path_id: u32,
        attrs: &SharedAttrs,
        pre: Prechecked,
    ) -> Outcome {
        let since = pre.since;
        // Per prefix: no clone of the configuration, no allocation unless rejected.
        let igp_cost = pre.igp_cost;
        let ImportCtx {
            key,
            g,
            p,
            source,
            rejected,
            has_rejected,
            interner,
            loc,
            ..
        } = self;
        let key: &str = key;
        let verdict = if let Some(why) = pre.loop_check {
            bgp_policy::Verdict::Reject(bgp_policy::Reason::Other(why.to_string()))
        } else if let Some(Err(why)) = p.cfg.pod.as_ref().map(|pod| pod.check(&prefix)) {
            bgp_policy::Verdict::Reject(bgp_policy::Reason::Other(why))
        } else {
            bgp_policy::evaluate(
                &p.cfg.filters,
                bgp_policy::Direction::Import,
                &prefix,
                attrs,
                g.asn,
            )
        };
        let path_attrs = match verdict {
            bgp_policy::Verdict::Reject(why) => {
                rejected
                    .entry(key.to_string())
                    .or_default()
                    .insert(prefix, why.to_string());
                *has_rejected = true;
                None
            }
            bgp_policy::Verdict::Accept(changed) => {
                if *has_rejected {
                    if let Some(r) = rejected.get_mut(key) {
                        r.remove(&prefix);
                    }
                }
                Some(match changed {
                    None => attrs.clone(),
                    Some(changed) => interner.intern(changed),
                })
            }
        };
        let k = (prefix, path_id);
        let was_held = p.rib_in.release(&k);
        if path_attrs
            .as_ref()
            .is_none_or(|a| !SharedAttrs::ptr_eq(a, attrs))
        {
            p.rib_in.hold(
                k,
                Route {
                    attrs: attrs.clone(),
                    since,
                },
            );
        }
        let o = match path_attrs {
            None => loc.remove_id(&prefix, key, path_id),
            Some(mut path_attrs) => {
                // (The peer task interned the set with its path id; this
                // holds for any other set too.)
                if path_attrs.route_path_id() != path_id {
                    let mut a = PathAttrs::clone(&path_attrs);
                    a.set_route_path_id(path_id);
                    path_attrs = interner.intern(a);
                }
                // (Routes of one UPDATE share one context: a compare.)
                let ctx = loc.context_id(source, igp_cost.into());
                let o = loc.upsert_ctx(prefix, path_attrs, ctx);
                if o.id.is_none() {
                    // The Loc-RIB is full (bgp_rib::locrib::MAX_DESTS): the
                    // route is kept as received only.
                    p.rib_in.hold(
                        k,
                        Route {
                            attrs: attrs.clone(),
                            since,
                        },
                    );
                    static WARNED: std::sync::atomic::AtomicBool =
                        std::sync::atomic::AtomicBool::new(false);
                    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        warn!(peer = %key, %prefix, max = bgp_rib::locrib::MAX_DESTS, "Loc-RIB full: new prefixes are not taken (set maxPrefixes on the peers)");
                    }
                }
                o
            }
        };
        if !(was_held || o.had) {
            p.rib_in.count(true);
        }
        o
    }
}

/// The withdrawals of one UPDATE from `key` (including RFC 7606
/// treat-as-withdraw): out of its Adj-RIB-In, its rejected routes
/// (`rejected`, if it has any) and the Loc-RIB; the changed destinations are
/// added to `changed`.
fn withdraw(
    key: &str,
    received: &crate::peer::Received,
    p: &mut crate::PeerEntry,
    mut rejected: Option<&mut BTreeMap<IpNet, String>>,
    loc: &mut bgp_rib::locrib::LocRib,
    changed: &mut Vec<(IpNet, u32)>,
) {
    for n in received.update.withdrawals() {
        let path_id = n.path_id.unwrap_or(0);
        let held = p.rib_in.release(&(n.prefix, path_id));
        if let Some(r) = rejected.as_deref_mut() {
            r.remove(&n.prefix);
        }
        let o = loc.remove_id(&n.prefix, key, path_id);
        if held || o.had {
            p.rib_in.count(false);
        }
        if let (Changed::Yes, Some(id)) = (o.changed, o.id) {
            changed.push((n.prefix, id));
        }
    }
}

/// What exporting to one peer works on ([`export_ctx`]).
struct ExportCtx<'a> {
    target: Target<'a>,
    g: &'a GlobalCfg,
    /// The attributes last built for an export filter to see.
    memo: &'a mut crate::SentMemo,
    interner: &'a bgp_rib::Interner,
}

impl ExportCtx<'_> {
    /// What the peer should have for `prefix` whose best path is `best`
    /// (from `source`).
    fn path(&mut self, prefix: &IpNet, best: &Path, source: &Source) -> Option<OutRoute> {
        // A filter that decides by the prefix alone (a reject-all one,
        // prefix rules) needs no attributes built as they would be sent.
        let by_prefix = if self.target.cfg.filters.is_empty() {
            Some(bgp_policy::Verdict::Accept(None))
        } else {
            bgp_policy::evaluate_by_prefix(
                &self.target.cfg.filters,
                bgp_policy::Direction::Export,
                prefix,
            )
        };
        if let Some(v) = by_prefix {
            return match v {
                bgp_policy::Verdict::Reject(_) => None,
                _ => export(prefix, best, source, &self.target, self.g),
            };
        }
        let out = export(prefix, best, source, &self.target, self.g)?;
        // A filter sees the attributes as they would be sent. They depend
        // on the set and the rewrite only, and runs of prefixes share both:
        // the last ones built are kept (with the set, so that its address
        // cannot name another set meanwhile).
        let memo = &mut *self.memo;
        let fresh = memo
            .as_ref()
            .is_none_or(|(a, r, _)| !SharedAttrs::ptr_eq(a, &out.attrs) || *r != out.rewrite);
        if fresh {
            *memo = Some((out.attrs.clone(), out.rewrite, out.sent_attrs()));
        }
        let sent = &memo.as_ref()?.2;
        match bgp_policy::evaluate(
            &self.target.cfg.filters,
            bgp_policy::Direction::Export,
            prefix,
            sent,
            self.g.asn,
        ) {
            bgp_policy::Verdict::Reject(_) => None,
            bgp_policy::Verdict::Accept(None) => Some(out),
            bgp_policy::Verdict::Accept(Some(a)) => Some(OutRoute {
                attrs: self.interner.intern(a),
                rewrite: Rewrite::AsIs,
                next_hop: out.next_hop,
            }),
        }
    }
}

/// What exporting to `key` works on, looked up once for many prefixes
/// (none: no such peer, no session, no configuration); from the parts of
/// `Main` it reads, so that the Loc-RIB can be read beside it.
fn export_ctx<'a>(
    global: &'a Option<GlobalCfg>,
    peers: &'a BTreeMap<String, crate::PeerEntry>,
    sent_memo: &'a mut crate::SentMemo,
    interner: &'a bgp_rib::Interner,
    key: &'a str,
) -> Option<ExportCtx<'a>> {
    let g = global.as_ref()?;
    let p = peers.get(key)?;
    let s = p.session.as_ref()?;
    Some(ExportCtx {
        target: Target {
            key,
            cfg: &p.cfg,
            neg: &s.neg,
            local: s.local,
        },
        g,
        memo: sent_memo,
        interner,
    })
}

impl Main {
    // ---------------------------------------------------------------- import

    /// What importing from `key` works on (none: no such peer, no
    /// session, no configuration).
    fn import_ctx<'a>(&'a mut self, key: &'a str) -> Option<ImportCtx<'a>> {
        let Main {
            global,
            peers,
            rejected,
            interner,
            loc,
            resolver,
            ..
        } = self;
        let p = peers.get_mut(key)?;
        let source = Source::Peer(p.session.as_ref()?.info.clone());
        let has_rejected = rejected.contains_key(key);
        Some(ImportCtx {
            key,
            g: global.as_ref()?,
            p,
            source,
            rejected,
            has_rejected,
            interner,
            loc,
            resolver: resolver.as_ref(),
        })
    }

    /// Why a route from `info` must not enter the Loc-RIB (RFC 4271 §9.1.2, RFC 4456 §8).
    /// `has_own_as`: whether the AS path holds our AS, if the peer task
    /// found out already (`peer::Received::as_path_has`).
    fn import_check(
        g: &GlobalCfg,
        attrs: &PathAttrs,
        has_own_as: Option<bool>,
    ) -> Option<&'static str> {
        let own_as =
            has_own_as.unwrap_or_else(|| attrs.as_path.as_ref().is_some_and(|p| p.contains(g.asn)));
        if own_as {
            return Some("AS path contains our AS");
        }
        if attrs.originator_id() == Some(g.router_id) {
            return Some("ORIGINATOR_ID is our router id");
        }
        if g.cluster_id
            .is_some_and(|c| attrs.cluster_list().contains(&c))
        {
            return Some("CLUSTER_LIST contains our cluster id");
        }
        None
    }

    /// UPDATEs from `key`, in order, into its Adj-RIB-In and the Loc-RIB
    /// (the peer, its session and its rejected routes are looked up once
    /// for them all, not per UPDATE: a table comes in UPDATEs of a few
    /// prefixes each). The changed destinations are added to `changed` as
    /// (prefix, id), for [`Main::propagate_ids`].
    /// `ahead`: the first UPDATEs of the turn's next chunk (of any peer),
    /// read ahead while this chunk's last ones are imported.
    fn import(
        &mut self,
        key: &str,
        updates: &[crate::peer::Received],
        ahead: &[crate::peer::Received],
        now: u32,
        changed: &mut Vec<(IpNet, u32)>,
    ) {
        self.loc.set_now(now);
        let at = |j: usize| {
            updates
                .get(j)
                .or_else(|| ahead.get(j.checked_sub(updates.len())?))
        };
        match self.import_ctx(key) {
            Some(mut ctx) => {
                for (i, received) in updates.iter().enumerate() {
                    // Memory is read ahead while this UPDATE is imported:
                    // the one after next's prefixes and set, the next one's
                    // index slots (which needs its prefixes, fetched an UPDATE ago).
                    if let Some(later) = at(i + 2) {
                        later.prefetch();
                    }
                    if let Some(next) = at(i + 1) {
                        ctx.prefetch(next);
                    }
                    ctx.update(received, now, changed);
                }
            }
            None => {
                // (No configuration: withdrawals only.)
                let Main {
                    peers,
                    rejected,
                    loc,
                    ..
                } = self;
                let Some(p) = peers.get_mut(key) else {
                    return;
                };
                let mut rej = rejected.get_mut(key);
                for received in updates {
                    withdraw(key, received, p, rej.as_deref_mut(), loc, changed);
                }
            }
        }
    }

    /// [`ImportCtx::route`] of one route from `key` (outside an UPDATE).
    fn import_route(
        &mut self,
        key: &str,
        prefix: IpNet,
        path_id: u32,
        attrs: &SharedAttrs,
        pre: Prechecked,
    ) -> Outcome {
        match self.import_ctx(key) {
            Some(mut ctx) => ctx.route(prefix, path_id, attrs, pre),
            None => Outcome {
                changed: Changed::No,
                id: None,
                had: false,
            },
        }
    }

    /// A peer's whole Adj-RIB-In, as received: the routes it holds (rejected
    /// or changed by policy) and the peer's other Loc-RIB paths. A walk over
    /// the Loc-RIB: for policy changes and listings, not per UPDATE.
    pub(crate) fn received(&self, key: &str) -> Vec<(RouteKey, Route)> {
        let Some(p) = self.peers.get(key) else {
            return Vec::new();
        };
        let mut out: Vec<(RouteKey, Route)> =
            p.rib_in.iter_held().map(|(k, r)| (*k, r.clone())).collect();
        for (prefix, d) in self.loc.iter() {
            for x in d.paths().iter().filter(|x| self.loc.source(x).key() == key) {
                let k = (prefix, x.path_id());
                if p.rib_in.held(&k).is_none() {
                    out.push((
                        k,
                        Route {
                            attrs: x.attrs.clone(),
                            since: self.loc.since(x),
                        },
                    ));
                }
            }
        }
        out
    }

    /// Policy changed for a peer: run what it sent through the new policy
    /// (its Adj-RIB-In is kept, so no route refresh or session reset is needed).
    pub(crate) async fn reimport(&mut self, key: &str) {
        let mut changed = Vec::new();
        self.loc.set_now(crate::status::unix_now() as u32);
        for ((prefix, path_id), r) in self.received(key) {
            let pre = Prechecked {
                since: r.since,
                loop_check: self
                    .global
                    .as_ref()
                    .and_then(|g| Self::import_check(g, &r.attrs, None)),
                igp_cost: igp_cost(self.resolver.as_ref(), &r.next_hop()),
            };
            let o = self.import_route(key, prefix, path_id, &r.attrs, pre);
            if let (Changed::Yes, Some(id)) = (o.changed, o.id) {
                changed.push((prefix, id));
            }
        }
        self.propagate_ids(changed).await;
    }

    /// Enforce the peer's max-prefix limit on what it has sent and we accepted.
    async fn check_max_prefix(&mut self, key: &str) {
        let Some(p) = self.peers.get_mut(key) else {
            return;
        };
        let Some(m) = p.cfg.max_prefix else { return };
        let accepted = p
            .rib_in
            .len()
            .saturating_sub(self.rejected.get(key).map(|r| r.len()).unwrap_or(0));
        match m.check(accepted) {
            bgp_policy::Limit::Ok => p.max_prefix_warned = false,
            bgp_policy::Limit::Warning => {
                if !p.max_prefix_warned {
                    warn!(peer = %key, accepted, limit = m.limit, "approaching the maximum number of prefixes");
                    p.max_prefix_warned = true;
                }
            }
            bgp_policy::Limit::Exceeded => {
                warn!(peer = %key, accepted, limit = m.limit, stop = m.stop, "maximum number of prefixes exceeded");
                if m.stop && p.session.is_some() {
                    // RFC 4486 §4: AFI, SAFI and the limit as data.
                    let mut data = vec![0, 1, 1];
                    data.extend_from_slice(&m.limit.to_be_bytes());
                    let n = bgp_wire::Notification::new(
                        bgp_wire::notification::CEASE,
                        bgp_wire::notification::cease::MAX_PREFIXES,
                        data,
                    );
                    let _ = p.cmd.send(PeerCmd::Stop(Some(n))).await;
                }
            }
        }
    }

    /// Remove every path of a peer and forget its Adj-RIB-In (session
    /// down, peer removed), then tell the other peers.
    pub(crate) async fn withdraw_all_from(&mut self, key: &str) {
        if let Some(p) = self.peers.get_mut(key) {
            p.rib_in = Default::default();
        }
        self.rejected.remove(key);
        let changed = self.loc.remove_source(key);
        self.propagate_ids(changed).await;
        self.loc.maybe_compact_contexts();
    }

    /// Replace the local originations, returning the prefixes whose selection changed.
    pub(crate) fn set_originations(&mut self, new: BTreeMap<IpNet, Origination>) -> Vec<IpNet> {
        let mut changed = Vec::new();
        let old: Vec<IpNet> = self
            .originate
            .keys()
            .filter(|p| !new.contains_key(p))
            .copied()
            .collect();
        for p in old {
            if self.loc.remove(&p, "local", 0) == Changed::Yes {
                changed.push(p);
            }
        }
        for (p, o) in &new {
            let mut communities = o.communities.clone();
            communities.sort_unstable();
            let mut large = o.large_communities.clone();
            large.sort_unstable();
            let unspecified = match p {
                IpNet::V4(_) => NextHop::V4(std::net::Ipv4Addr::UNSPECIFIED),
                IpNet::V6(_) => NextHop::V6 {
                    global: std::net::Ipv6Addr::UNSPECIFIED,
                    link_local: None,
                },
            };
            let mut attrs = PathAttrs {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::default()),
                communities: communities.into(),
                ..Default::default()
            };
            attrs.set_route_next_hop(Some(unspecified));
            attrs.set_rare(bgp_wire::RareAttrs {
                large_communities: large.into(),
                ..Default::default()
            });
            let path = NewPath {
                source: Source::Local,
                attrs: self.interner.intern(attrs),
                igp_cost: Some(0).into(),
            };
            // Blackhole-ness can change without the path changing.
            let was = self.originate.get(p).map(|x| x.blackhole);
            if self.loc.upsert(*p, path) == Changed::Yes || was != Some(o.blackhole) {
                changed.push(*p);
            }
        }
        self.originate = new;
        changed
    }

    // ---------------------------------------------------------------- propagate

    /// Push changed prefixes to the kernel and to every established peer.
    pub(crate) async fn propagate(&mut self, prefixes: Vec<IpNet>) {
        let named = prefixes
            .into_iter()
            .filter_map(|p| Some((p, self.loc.id(&p)?)))
            .collect();
        self.propagate_ids(named).await;
    }

    /// [`Main::propagate`] of destinations named by (prefix, live Loc-RIB
    /// id): no Loc-RIB lookup by prefix.
    pub(crate) async fn propagate_ids(&mut self, mut dests: Vec<(IpNet, u32)>) {
        if dests.is_empty() {
            return;
        }
        dests.sort_unstable_by_key(|(_, id)| *id);
        dests.dedup_by_key(|(_, id)| *id);
        if self.kernel.is_some() {
            let prefixes: Vec<IpNet> = dests.iter().map(|(p, _)| *p).collect();
            self.fib_sync(&prefixes);
        }
        // A peer that holds nothing and whose export filters reject every
        // route of the changed families (a route collector's `export none`)
        // has nothing to be sent: it is not looked at per destination.
        let (v4, v6) = dests.iter().fold((false, false), |(a, b), (p, _)| {
            (
                a || matches!(p, IpNet::V4(_)),
                b || matches!(p, IpNet::V6(_)),
            )
        });
        let rejects = |p: &crate::PeerEntry, fam_v4: bool| {
            bgp_policy::rejects_all(&p.cfg.filters, bgp_policy::Direction::Export, fam_v4)
        };
        let keys: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| p.session.is_some())
            .filter(|(_, p)| {
                !(p.rib_out.is_empty()
                    && p.lag.is_none()
                    && (!v4 || rejects(p, true))
                    && (!v6 || rejects(p, false)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if self.hold_back(&k, dests.iter().map(|(_, id)| *id)) {
                continue;
            }
            let changes = self.export_changes(&k, &dests);
            self.send(&k, changes, false);
        }
        // Destinations whose last path went have been withdrawn from every
        // peer: they go now, and their ids are free. (A peer holding back
        // keeps the prefix, to withdraw it when it catches up.)
        let emptied: Vec<(IpNet, u32)> = dests
            .into_iter()
            .filter(|(_, id)| self.loc.by_id(*id).best().is_none())
            .collect();
        for id in self.loc.prune_ids(&emptied) {
            for p in self.peers.values_mut() {
                if let Some(lag) = &mut p.lag {
                    lag.dirty.remove(id);
                    if p.rib_out.holds(id) {
                        // `emptied` is in id order.
                        if let Ok(i) = emptied.binary_search_by_key(&id, |(_, id)| *id) {
                            lag.gone.push(emptied[i].0);
                        }
                    }
                }
                p.rib_out.forget(id);
            }
        }
    }

    /// What `key` should be sent for destinations (prefix, id): the export
    /// of each one's best path, read in the Loc-RIB (not copied).
    fn export_changes(
        &mut self,
        key: &str,
        dests: &[(IpNet, u32)],
    ) -> Vec<(IpNet, u32, Option<OutRoute>)> {
        // Consecutive prefixes mostly share a best path's attributes
        // (they came in one UPDATE). Without an export filter (which may
        // look at the prefix), the same inputs give the same route: the
        // last result is reused.
        let Main {
            global,
            peers,
            sent_memo,
            interner,
            loc,
            ..
        } = self;
        let mut ctx = export_ctx(global, peers, sent_memo, interner, key);
        let reuse = ctx
            .as_ref()
            .is_some_and(|c| c.target.cfg.filters.is_empty());
        let mut last: Option<(ExportInput, Option<OutRoute>)> = None;
        dests
            .iter()
            .map(|(p, id)| {
                let out = loc.by_id(*id).best().and_then(|b| {
                    let source = loc.source(b);
                    let input = export_input(p, b, source);
                    match &last {
                        Some((i, out)) if reuse && *i == input => out.clone(),
                        _ => {
                            let out = ctx.as_mut().and_then(|c| c.path(p, b, source));
                            last = Some((input, out.clone()));
                            out
                        }
                    }
                });
                (*p, *id, out)
            })
            .collect()
    }

    /// If `key` is holding back (its outbox is full), note that these
    /// destinations changed and return true: nothing is encoded for it now.
    fn hold_back(&mut self, key: &str, ids: impl Iterator<Item = u32>) -> bool {
        let Some(p) = self.peers.get_mut(key) else {
            return false;
        };
        let Some(lag) = &mut p.lag else {
            return false;
        };
        for id in ids {
            lag.dirty.insert(id);
        }
        status::lock(&p.status).held_back = (lag.dirty.len() + lag.gone.len()) as u64;
        true
    }

    /// The peer took its full outbox: send what was held back, as it is now
    /// (a destination that changed many times meanwhile is sent once).
    async fn catch_up(&mut self, key: &str) {
        let Some(p) = self.peers.get_mut(key) else {
            return;
        };
        let Some(s) = &p.session else { return };
        let Some(lag) = p.lag.take() else { return };
        let (ctx, gen) = (s.neg.ctx(), s.gen);
        tracing::debug!(peer = %key, destinations = lag.dirty.len(), withdrawn = lag.gone.len(), "the peer caught up: sending what was held back");
        status::lock(&p.status).held_back = 0;
        // Withdrawals first: a prefix gone and back is among the dirty ones.
        let mut buf = BytesMut::new();
        let mut updates = 0;
        let mut by_family: BTreeMap<bgp_wire::Family, Vec<bgp_wire::Nlri>> = BTreeMap::new();
        for g in lag.gone {
            let n = bgp_wire::Nlri::new(g);
            by_family.entry(n.family()).or_default().push(n);
        }
        for (fam, nlri) in &by_family {
            updates += pack_withdraw(&ctx, *fam, nlri, &mut buf);
        }
        if updates > 0 {
            self.queue(key, gen, buf, updates as u64);
        }
        let dests: Vec<(IpNet, u32)> = self
            .loc
            .iter_ids()
            .filter(|(_, id, _)| lag.dirty.contains(*id))
            .map(|(p, id, _)| (p, id))
            .collect();
        if !self.hold_back(key, dests.iter().map(|(_, id)| *id)) {
            let changes = self.export_changes(key, &dests);
            self.send(key, changes, false);
        }
        for t in lag.tail {
            self.queue_last(key, gen, t);
        }
    }

    /// What `key` is sent for `prefix` whose best path is `best`, as sent
    /// (next hop and attributes): [`ExportCtx::path`] without interning
    /// what an export filter changes, for reading what a peer holds.
    pub(crate) fn advertised(
        &self,
        key: &str,
        prefix: &IpNet,
        best: &Path,
        source: &Source,
    ) -> Option<(NextHop, bgp_wire::PathAttrs)> {
        let g = self.global.as_ref()?;
        let p = self.peers.get(key)?;
        let s = p.session.as_ref()?;
        let target = Target {
            key,
            cfg: &p.cfg,
            neg: &s.neg,
            local: s.local,
        };
        let out = export(prefix, best, source, &target, g)?;
        let sent = out.sent_attrs();
        if p.cfg.filters.is_empty() {
            return Some((out.next_hop, sent));
        }
        match bgp_policy::evaluate(
            &p.cfg.filters,
            bgp_policy::Direction::Export,
            prefix,
            &sent,
            g.asn,
        ) {
            bgp_policy::Verdict::Reject(_) => None,
            bgp_policy::Verdict::Accept(None) => Some((out.next_hop, sent)),
            bgp_policy::Verdict::Accept(Some(a)) => Some((out.next_hop, a)),
        }
    }

    /// Encode and queue the changes for one peer; `full` (a whole table)
    /// ends with End-of-RIB markers.
    fn send(&mut self, key: &str, changes: Vec<(IpNet, u32, Option<OutRoute>)>, full: bool) {
        if self.hold_back(key, changes.iter().map(|(_, id, _)| *id)) {
            if full {
                let eor = self.end_of_rib(key);
                if let Some(lag) = self.peers.get_mut(key).and_then(|p| p.lag.as_mut()) {
                    lag.tail.extend(eor);
                }
            }
            return;
        }
        let Some(p) = self.peers.get_mut(key) else {
            return;
        };
        let Some(s) = &p.session else { return };
        let diff = p.rib_out.update(changes);
        let ctx = s.neg.ctx();
        let mut buf = BytesMut::new();
        let mut updates = 0;
        for (fam, nlri) in &diff.withdraw {
            updates += pack_withdraw(&ctx, *fam, nlri, &mut buf);
        }
        // The rewritten attributes exist only while their UPDATEs are encoded.
        for a in &diff.announce {
            let mut attrs = a.route.sent_attrs();
            if let NextHop::V4(nh) = a.route.next_hop {
                attrs.next_hop = Some(nh);
            }
            updates += pack_announce(&ctx, &attrs, a.family, a.route.next_hop, &a.nlri, &mut buf);
        }
        if full {
            for fam in &s.neg.families {
                Message::Update(Update::end_of_rib(*fam)).encode(&ctx, &mut buf);
                updates += 1;
            }
        }
        status::lock(&p.status).prefixes_advertised = p.rib_out.len() as u64;
        if updates > 0 {
            let gen = s.gen;
            self.queue(key, gen, buf, updates as u64);
        }
    }

    /// End-of-RIB markers for every family of `key`'s session, one message each.
    fn end_of_rib(&self, key: &str) -> Vec<BytesMut> {
        let Some(s) = self.peers.get(key).and_then(|p| p.session.as_ref()) else {
            return Vec::new();
        };
        let ctx = s.neg.ctx();
        s.neg
            .families
            .iter()
            .map(|f| {
                let mut b = BytesMut::new();
                Message::Update(Update::end_of_rib(*f)).encode(&ctx, &mut b);
                b
            })
            .collect()
    }

    /// Hand encoded messages to a peer's task (never waits). Past
    /// `OUTBOX_LIMIT` bytes waiting (a peer that reads too slowly, or not
    /// at all) the peer holds back: its changes are noted per destination
    /// (bounded by the Loc-RIB's size) until it takes the buffer.
    fn queue(&mut self, key: &str, gen: u64, bytes: BytesMut, updates: u64) {
        let Some(p) = self.peers.get_mut(key) else {
            return;
        };
        if p.outbox.put(gen, bytes, updates) && p.lag.is_none() {
            p.lag = Some(Default::default());
            let stalls = {
                let mut st = status::lock(&p.status);
                st.stalls += 1;
                st.stalls
            };
            // Every time for the first few, then every hundredth.
            if stalls <= 3 || stalls % 100 == 0 {
                warn!(peer = %key, stalls, "the peer reads too slowly: its changes are held back until it takes what is queued");
            }
        }
    }

    /// [`Main::queue`] for a message that must come after everything held
    /// back (End-of-RIB, EoRR).
    fn queue_last(&mut self, key: &str, gen: u64, bytes: BytesMut) {
        if let Some(lag) = self.peers.get_mut(key).and_then(|p| p.lag.as_mut()) {
            lag.tail.push(bytes);
            return;
        }
        self.queue(key, gen, bytes, 0);
    }

    /// What a peer should have for every destination, in prefix order
    /// (also a destination emptied and not pruned yet, which the peer may
    /// still hold).
    pub(crate) fn exports(&mut self, key: &str) -> Vec<(IpNet, u32, Option<OutRoute>)> {
        if self.peers.get(key).is_none_or(|p| p.session.is_none()) {
            return Vec::new();
        }
        let mut dests: Vec<(IpNet, u32)> = self.loc.iter_ids().map(|(p, id, _)| (p, id)).collect();
        dests.sort_unstable_by_key(|(p, _)| *p);
        self.export_changes(key, &dests)
    }

    /// Everything a peer should have, as a full table.
    async fn sync_full(&mut self, key: &str) {
        let changes = self.exports(key);
        self.send(key, changes, true);
    }

    /// After a change of a peer's policy: send it what its exports now
    /// differ in from `before` (its [`Main::exports`] under the old policy).
    /// Only the differences go out; a peer whose export is unchanged is sent
    /// nothing.
    pub(crate) async fn resync(&mut self, key: &str, before: Vec<(IpNet, u32, Option<OutRoute>)>) {
        let after = self.exports(key);
        let mut old = before.into_iter().peekable();
        let mut changes = Vec::new();
        for (p, id, want) in after {
            while old.next_if(|(q, _, _)| *q < p).is_some() {}
            let was = old.next_if(|(q, _, _)| *q == p).and_then(|(_, _, w)| w);
            if was != want {
                changes.push((p, id, want));
            }
        }
        self.send(key, changes, false);
    }

    // ---------------------------------------------------------------- peer events

    /// UPDATEs received, in arrival order: each goes into its peer's
    /// Adj-RIB-In and the Loc-RIB at once; what changed is exported once for
    /// the whole batch (a burst of small UPDATEs becomes a few large ones, and
    /// a prefix that changed twice is sent once, in its final state).
    pub(crate) async fn updates(&mut self, batch: Vec<(String, u64, Vec<crate::peer::Received>)>) {
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        let mut changed = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        // The decoded UPDATEs, freed on a worker once imported: they were
        // allocated there, and freeing them here (into another thread's
        // malloc arena, under its lock, trimming its heap) took 6.5 % of
        // the main loop in a full table's burst by perf, and (b) of bench/ a
        // third longer.
        let mut spent = Vec::with_capacity(batch.len());
        let mut batch = batch.into_iter().peekable();
        while let Some((key, gen, updates)) = batch.next() {
            let live = self
                .peers
                .get(&key)
                .and_then(|p| p.session.as_ref())
                .is_some_and(|s| s.gen == gen);
            if !live {
                spent.push(updates);
                continue;
            }
            for received in &updates {
                let update = &received.update;
                if let Some(f) = update.is_end_of_rib() {
                    if let Some(s) = self.peers.get_mut(&key).and_then(|p| p.session.as_mut()) {
                        s.eor.insert(f);
                    }
                    continue;
                }
                match &update.repair {
                    Repair::None => {}
                    Repair::AttributeDiscard(codes) => {
                        warn!(peer = %key, ?codes, "RFC 7606: malformed attributes discarded")
                    }
                    Repair::TreatAsWithdraw(why) => {
                        warn!(peer = %key, reason = %why, prefixes = update.withdrawals().count(), "RFC 7606: UPDATE treated as withdraw")
                    }
                }
            }
            let ahead = batch
                .peek()
                .map_or(&[][..], |(_, _, u)| &u[..u.len().min(2)]);
            self.import(&key, &updates, ahead, now, &mut changed);
            spent.push(updates);
            if let Some(p) = self.peers.get(&key) {
                status::lock(&p.status).prefixes_received = p.rib_in.len() as u64;
            }
            if !touched.contains(&key) {
                touched.push(key);
            }
        }
        if !spent.is_empty() {
            self.rt.spawn(async move { drop(spent) });
        }
        self.propagate_ids(changed).await;
        // Attribute sets replaced by others (attributes that keep changing),
        // and contexts of sessions gone or IGP costs changed.
        self.interner.maybe_collect();
        self.loc.maybe_compact_contexts();
        for key in touched {
            self.check_max_prefix(&key).await;
        }
    }

    pub(crate) async fn event(&mut self, ev: PeerEvent) {
        match ev {
            PeerEvent::Up {
                key,
                gen,
                neg,
                local,
            } => {
                let Some(g) = self.global.clone() else { return };
                if let Some(p) = self.peers.get_mut(&key) {
                    let remote = status::lock(&p.status)
                        .remote_addr
                        .map(|a| crate::canonical(a.ip()));
                    let addr = remote.unwrap_or(local.ip());
                    let info = Arc::new(PeerInfo {
                        key: key.as_str().into(),
                        addr,
                        asn: neg.peer_as,
                        router_id: neg.peer_id,
                        ibgp: neg.peer_as == g.asn,
                        rr_client: p.cfg.rr_client && g.cluster_id.is_some(),
                        ifindex: match local {
                            std::net::SocketAddr::V6(v6) if v6.scope_id() != 0 => {
                                Some(v6.scope_id())
                            }
                            _ => None,
                        },
                        pod: p.cfg.pod.is_some(),
                        transit: p.cfg.transit,
                    });
                    p.session = Some(Session {
                        gen,
                        neg: *neg,
                        local,
                        info,
                        eor: Default::default(),
                    });
                    p.rib_in = Default::default();
                    p.rib_out.clear();
                    p.lag = None;
                    {
                        let mut st = status::lock(&p.status);
                        st.held_back = 0;
                        st.stalls = 0;
                    }
                    self.sync_full(&key).await;
                }
            }
            PeerEvent::Down { key, gen } => {
                let Some(p) = self.peers.get_mut(&key) else {
                    return;
                };
                if p.session.as_ref().is_none_or(|s| s.gen != gen) {
                    return;
                }
                p.session = None;
                p.rib_out.clear();
                p.lag = None;
                status::lock(&p.status).held_back = 0;
                info!(peer = %key, routes = p.rib_in.len(), "session down: routes from this peer removed");
                self.withdraw_all_from(&key).await;
                self.interner.collect();
            }
            PeerEvent::Update {
                key, gen, updates, ..
            } => {
                self.updates(vec![(key, gen, updates)]).await;
            }
            PeerEvent::Refresh { key, gen, rr } => {
                let ok = self
                    .peers
                    .get(&key)
                    .and_then(|p| p.session.as_ref())
                    .is_some_and(|s| s.gen == gen);
                if ok && rr.subtype == 0 {
                    self.refresh(&key, rr).await;
                }
            }
            PeerEvent::Drained { key, gen } => {
                let ok = self
                    .peers
                    .get(&key)
                    .and_then(|p| p.session.as_ref())
                    .is_some_and(|s| s.gen == gen);
                if ok {
                    self.catch_up(&key).await;
                }
            }
        }
    }

    /// Answer a ROUTE-REFRESH: everything again, framed by BoRR/EoRR when enhanced.
    async fn refresh(&mut self, key: &str, rr: RouteRefresh) {
        let Some(p) = self.peers.get(key) else { return };
        let Some(s) = &p.session else { return };
        let enhanced = s.neg.enhanced_route_refresh;
        let ctx = s.neg.ctx();
        let gen = s.gen;
        // RFC 7313 §4: BoRR (subtype 1) before, EoRR (subtype 2) after.
        let marker = |subtype| {
            Message::RouteRefresh(RouteRefresh {
                family: rr.family,
                subtype,
            })
            .to_bytes(&ctx)
        };
        if enhanced {
            self.queue(key, gen, marker(1), 0);
        }
        self.sync_full(key).await;
        if enhanced {
            self.queue_last(key, gen, marker(2));
        }
    }

    // ---------------------------------------------------------------- kernel

    pub(crate) fn ensure_kernel(&mut self, g: &GlobalCfg) {
        let Some(choice) = self.kernel_choice.clone() else {
            return;
        };
        if self
            .kernel
            .as_ref()
            .is_some_and(|(t, _)| *t == g.kernel_route_table)
        {
            return;
        }
        // The netlink socket and its task live on the workers' runtime.
        let spawned = {
            let _rt = self.rt.enter();
            kernel::spawn(&choice, g.kernel_route_table, self.kernel_events_tx.clone())
        };
        match spawned {
            Ok(tx) => {
                self.kernel = Some((g.kernel_route_table, tx));
                self.installed.clear();
                self.sweep_at = Some(tokio::time::Instant::now() + crate::STALE_TIMEOUT);
            }
            Err(e) => {
                warn!("kernel routes disabled: {e}");
                self.kernel_choice = None;
            }
        }
    }

    /// What the kernel should hold for `prefix`.
    fn fib_want(&self, prefix: &IpNet) -> Option<Action> {
        let d = self.loc.get(prefix)?;
        let best = d.best()?;
        if best.is_local() {
            return self
                .originate
                .get(prefix)
                .filter(|o| o.blackhole)
                .map(|_| Action::Blackhole);
        }
        let mut gws: Vec<Gateway> = d
            .multipath()
            .filter_map(|p| {
                // A link-local next hop is on the interface of the session it came from.
                let session_if = self.loc.source(p).peer().and_then(|i| i.ifindex);
                match &self.resolver {
                    Some(r) => r.resolve(p.next_hop().addr()).map(|r| Gateway {
                        addr: r.via,
                        ifindex: r.ifindex.or(session_if),
                    }),
                    None => Some(Gateway {
                        addr: p.next_hop().addr(),
                        ifindex: session_if,
                    }),
                }
            })
            .collect();
        gws.sort();
        gws.dedup_by_key(|g| g.addr);
        (!gws.is_empty()).then_some(Action::Unicast(gws))
    }

    pub(crate) fn fib_sync(&mut self, prefixes: &[IpNet]) {
        let program = self
            .global
            .as_ref()
            .is_some_and(|g| g.program_kernel_routes);
        let Some((_, tx)) = &self.kernel else { return };
        if !program {
            return;
        }
        let mut ops = Vec::new();
        for p in prefixes {
            let want = self.fib_want(p);
            let have = self.installed.get(p);
            match (want, have) {
                (Some(w), h) if h != Some(&w) => {
                    self.stale.remove(p);
                    self.installed.insert(*p, w.clone());
                    ops.push(Op::Replace(fib::Route {
                        prefix: *p,
                        action: w,
                    }));
                }
                (Some(_), _) => {
                    self.stale.remove(p);
                }
                (None, Some(_)) => {
                    self.installed.remove(p);
                    ops.push(Op::Delete(*p));
                }
                (None, None) => {}
            }
        }
        if !ops.is_empty() {
            let _ = tx.send((ops, None));
        }
    }

    pub(crate) async fn kernel_event(&mut self, ev: KernelEvent) {
        match ev {
            KernelEvent::Addresses(a) => {
                self.iface_addrs = a;
                self.refresh_originations().await;
            }
            KernelEvent::Ours(routes) => {
                for r in routes {
                    if !self.installed.contains_key(&r.prefix) {
                        // Kept until the sessions re-converge; a route we install
                        // again in the meantime replaces it in place, with no flap.
                        self.stale.insert(r.prefix);
                        self.installed.insert(r.prefix, r.action);
                    }
                }
                let all = self.loc.prefixes();
                self.fib_sync(&all);
            }
            KernelEvent::Table(t) => {
                self.resolver = Some(fib::Resolver::new(&t, fib::RTPROT_BGP));
                // Re-resolve every learned path; propagate where the selection changed.
                let mut changed = Vec::new();
                let resolver = self.resolver.take();
                let all = self.loc.prefixes();
                for &p in &all {
                    let c = self.loc.refresh(&p, |path| {
                        resolver
                            .as_ref()
                            .and_then(|r| r.resolve(path.next_hop().addr()).map(|r| r.cost))
                            .into()
                    });
                    if c == Changed::Yes {
                        changed.push(p);
                    }
                }
                self.resolver = resolver;
                // Gateways may have moved even where the selection did not.
                self.fib_sync(&all);
                self.propagate(changed).await;
            }
        }
    }

    /// Sweep stale kernel routes once every peer that is up has sent
    /// End-of-RIB, or when the stale timer runs out.
    pub(crate) fn maybe_sweep(&mut self) {
        if self.stale.is_empty() {
            return;
        }
        let Some(at) = self.sweep_at else { return };
        let converged = !self.peers.is_empty()
            && self.peers.values().all(|p| {
                p.session
                    .as_ref()
                    .is_some_and(|s| s.neg.families.iter().all(|f| s.eor.contains(f)))
            });
        if !converged && tokio::time::Instant::now() < at {
            return;
        }
        let gone: Vec<IpNet> = std::mem::take(&mut self.stale).into_iter().collect();
        info!(
            routes = gone.len(),
            converged, "removing stale kernel routes of an earlier run"
        );
        for p in &gone {
            self.installed.remove(p);
        }
        if let Some((_, tx)) = &self.kernel {
            let _ = tx.send((gone.into_iter().map(Op::Delete).collect(), None));
        }
    }

    /// Originations from configuration plus the addresses of `originateInterfaces`.
    pub(crate) fn effective_originations(&self) -> BTreeMap<IpNet, Origination> {
        let mut out = self.cfg_originate.clone();
        let Some(g) = &self.global else { return out };
        for name in &g.originate_interfaces {
            let Ok(idx) = crate::ndp::ifindex(name) else {
                continue;
            };
            for (_, ip) in self.iface_addrs.iter().filter(|(i, _)| *i == idx) {
                let usable = match ip {
                    std::net::IpAddr::V4(a) => !a.is_loopback() && !a.is_link_local(),
                    std::net::IpAddr::V6(a) => !a.is_loopback() && !a.is_unicast_link_local(),
                };
                if usable {
                    let prefix = IpNet::from(*ip);
                    out.entry(prefix).or_insert(Origination {
                        prefix,
                        communities: vec![],
                        large_communities: vec![],
                        reason: format!("interface {name}"),
                        blackhole: false,
                    });
                }
            }
        }
        out
    }

    pub(crate) async fn refresh_originations(&mut self) {
        let eff = self.effective_originations();
        if eff != self.originate {
            let changed = self.set_originations(eff);
            self.propagate(changed).await;
        }
    }
}
