//! Where a service's instances run (Cluster II): a pure function of the service's placement
//! rules, the nodes and the assignments already made.
//!
//! Eligible nodes are the ones that may take instances (alive, not drained), satisfy every
//! hard rule and have room for the instance's reservations. Among them: fewest soft rules
//! broken, then the zone with fewest instances of this service (when the service asks for
//! zones), then fewest instances of this service on the node, of its app, of anything; ties
//! go to the highest rendezvous hash of (node, app, service, slot), so every host computes
//! the same answer from the same input. Placement is sticky: an assignment whose node still
//! exists is kept (a better node appearing moves nothing); `rebalance` is a separate choice.
//!
//! Invariants: no I/O, no clock; the same input gives the same assignments in the same order.

use crate::spec::{Affinity, HostContainer};
use std::collections::{BTreeMap, BTreeSet};

/// A node as placement sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Alive and not drained: it may take new instances.
    pub open: bool,
    /// Drained by its operator: its instances move to open nodes (start-first).
    pub drained: bool,
    /// Lost long enough, and seen lost by a majority side: the instances of services that
    /// ask for `reschedule:on-node-failure` (and keep no data there) are placed again on
    /// open nodes (the caller decides; placement only follows).
    pub lost: bool,
    /// Capacity: thousandths of a CPU, memory bytes, GPUs.
    pub cpu_millis: u64,
    pub mem_bytes: u64,
    pub gpus: u32,
    /// What runs there now (other apps' too), for affinity rules and room.
    pub running: Vec<Running>,
}

/// A container on a node, as far as placement cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Running {
    pub app: String,
    pub service: String,
    pub image: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Its reservations.
    pub cpu_millis: u64,
    pub mem_bytes: u64,
    pub gpus: u32,
}

pub use crate::model::Assignment;

/// What a service version asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    pub app: String,
    pub service: String,
    pub version: u32,
    pub image: String,
    pub replicas: u32,
    /// One instance on every eligible node (`replicas` is ignored).
    pub global: bool,
    /// Normalised placement entries (`constraint:`, `affinity:`, `availability:`).
    pub placement: Vec<String>,
    pub max_per_node: Option<u32>,
    /// Reservations of one instance.
    pub cpu_millis: u64,
    pub mem_bytes: u64,
    pub gpus: u32,
    /// `reschedule:on-node-failure`: move its instances off a lost node.
    pub reschedule: bool,
    /// Data it keeps on its host (a bind mount, a local volume), in words: such an instance
    /// moves off a lost node only when its node was removed (`berth node rm`, the operator
    /// accepting the loss) and the service asks for rescheduling.
    pub local_state: Option<String>,
}

/// The assignments of a demand, and the soft rules that could not be met.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placed {
    pub assignments: Vec<Assignment>,
    pub warnings: Vec<String>,
    /// Instances rescheduled off a lost or removed node, and those that stay on one (and
    /// why), in words.
    pub rescheduled: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("{service}: no node can take instance {slot}: {}", lacks.iter().map(|(n, why)| format!("{n} {why}")).collect::<Vec<_>>().join("; "))]
    NoNode {
        service: String,
        slot: u32,
        /// Each node, and what it lacks.
        lacks: Vec<(String, String)>,
    },
    #[error(
        "{service}: availability:az=={want} needs nodes in {want} zones (node label az), and the nodes that can take it are in {have}: {zones}; label more nodes with `berth node label NAME az=N`"
    )]
    Zones {
        service: String,
        want: u32,
        have: usize,
        zones: String,
    },
    #[error("{service}: placement entry {entry:?} is not understood: {why}")]
    Rule {
        service: String,
        entry: String,
        why: String,
    },
}

/// A `constraint:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Constraint {
    key: String,
    equal: bool,
    soft: bool,
    /// One value, or the list of `==(a b c)`.
    values: Vec<String>,
    entry: String,
}

impl Constraint {
    fn of(entry: &str) -> Option<Result<Constraint, String>> {
        let rest = entry.strip_prefix("constraint:")?;
        // `==`, `!=`, and the seed's single `=` (`constraint:group=1`).
        let (key, equal, value) = if let Some((k, v)) = rest.split_once("!=") {
            (k, false, v)
        } else if let Some((k, v)) = rest.split_once("==") {
            (k, true, v)
        } else if let Some((k, v)) = rest.split_once('=') {
            (k, true, v)
        } else {
            return Some(Err("it needs ==, != or =".into()));
        };
        let soft = value.starts_with('~');
        let value = value.trim_start_matches('~');
        let values = match value.strip_prefix('(').and_then(|v| v.strip_suffix(')')) {
            Some(list) => list.split_whitespace().map(str::to_string).collect(),
            None => vec![value.to_string()],
        };
        if key.is_empty() || values.is_empty() || values.iter().any(String::is_empty) {
            return Some(Err("it needs a key and a value".into()));
        }
        Some(Ok(Constraint {
            key: key.to_string(),
            equal,
            soft,
            values,
            entry: entry.to_string(),
        }))
    }

    /// None when `node` satisfies it, else what it lacks.
    fn check(&self, node: &NodeInfo) -> Option<String> {
        let have = match self.key.as_str() {
            "node" | "node.hostname" => Some(node.name.as_str()),
            "node.id" => Some(node.id.as_str()),
            k => node.labels.get(k).map(String::as_str),
        };
        let hit = have.is_some_and(|h| self.values.iter().any(|v| v == h));
        if hit == self.equal {
            return None;
        }
        Some(match (have, self.key.as_str()) {
            (_, "node" | "node.hostname" | "node.id") => format!("is not what {} asks", self.entry),
            (None, k) => format!("has no label {k} ({} asks for it)", self.entry),
            (Some(h), k) => format!("has {k}={h} ({} asks otherwise)", self.entry),
        })
    }
}

/// The parsed rules of a demand.
struct Rules {
    constraints: Vec<Constraint>,
    affinities: Vec<(Affinity, String)>,
    /// `availability:az==N` (hard) or `az=~N` (soft).
    zones: Option<(u32, bool)>,
}

impl Rules {
    fn of(d: &Demand) -> Result<Rules, PlacementError> {
        let bad = |entry: &str, why: &str| PlacementError::Rule {
            service: d.service.clone(),
            entry: entry.to_string(),
            why: why.to_string(),
        };
        let mut r = Rules {
            constraints: Vec::new(),
            affinities: Vec::new(),
            zones: None,
        };
        for e in &d.placement {
            if let Some(c) = Constraint::of(e) {
                r.constraints.push(c.map_err(|why| bad(e, &why))?);
            } else if e.starts_with("affinity:") {
                let a = Affinity::of(e).ok_or_else(|| bad(e, "it needs == or !="))?;
                r.affinities.push((a, e.clone()));
            } else if let Some(n) = e.strip_prefix("availability:az") {
                let (soft, n) = match (n.strip_prefix("=="), n.strip_prefix("=~")) {
                    (Some(n), _) => (n.starts_with('~'), n.trim_start_matches('~')),
                    (None, Some(n)) => (true, n),
                    _ => return Err(bad(e, "write availability:az==N or az=~N")),
                };
                let n = n
                    .parse::<u32>()
                    .map_err(|_| bad(e, "the zone count is not a number"))?;
                r.zones = Some((n, soft));
            }
            // `reschedule:` is about lost nodes, not about where to start.
        }
        Ok(r)
    }
}

/// What runs on a node already, summed once (placement of thousands of instances must not
/// walk every container for every choice).
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    cpu: u64,
    mem: u64,
    gpu: u32,
    /// Containers of this service, of its app, of anything.
    service: usize,
    app: usize,
    all: usize,
}

impl Load {
    fn of(d: &Demand, n: &NodeInfo) -> Load {
        n.running.iter().fold(Load::default(), |l, r| Load {
            cpu: l.cpu + r.cpu_millis,
            mem: l.mem + r.mem_bytes,
            gpu: l.gpu + r.gpus,
            service: l.service + usize::from(r.app == d.app && r.service == d.service),
            app: l.app + usize::from(r.app == d.app),
            all: l.all + 1,
        })
    }
}

/// Places the instances of `d`: keeps `current` assignments of this service version whose
/// node still exists and whose slot is still wanted, and places the missing slots.
pub fn placement(
    d: &Demand,
    nodes: &[NodeInfo],
    current: &[Assignment],
) -> Result<Placed, PlacementError> {
    let rules = Rules::of(d)?;
    let mine = |a: &&Assignment| a.app == d.app && a.service == d.service && a.version == d.version;
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let loads: Vec<Load> = nodes.iter().map(|n| Load::of(d, n)).collect();
    // Instances of this demand on each node: kept ones, then those placed by this call.
    let mut placed = vec![0usize; nodes.len()];
    let fixed: Vec<Option<String>> = nodes.iter().map(|n| fixed_lacks(&rules, n)).collect();
    // Whether node `i` can take one more (the hot path), and why not in words.
    let fits = |i: usize, placed: &[usize]| {
        fixed[i].is_none() && room_lacks(d, &rules, &nodes[i], &loads[i], placed[i]).is_none()
    };
    let lacks = |i: usize, placed: &[usize]| {
        fixed[i].clone().or_else(|| {
            room_lacks(d, &rules, &nodes[i], &loads[i], placed[i]).map(|l| l.describe(d, &rules))
        })
    };
    let prefix: Vec<u64> = nodes.iter().map(|n| rendezvous_prefix(&n.id, d)).collect();
    let mut out = Placed::default();
    if d.global {
        // One on every node that may take it; kept where it runs on a node that stays open.
        let mut used: BTreeSet<u32> = BTreeSet::new();
        for a in current.iter().filter(mine) {
            let Some(&i) = index.get(a.node.as_str()) else {
                continue;
            };
            if placed[i] == 0 && fits(i, &placed) {
                placed[i] = 1;
                used.insert(a.slot);
                out.assignments.push(a.clone());
            }
        }
        for i in 0..nodes.len() {
            if placed[i] > 0 || !fits(i, &placed) {
                continue;
            }
            let slot = (1..).find(|s| !used.contains(s)).unwrap_or(1);
            used.insert(slot);
            placed[i] = 1;
            out.assignments.push(assign(d, slot, &nodes[i].id));
        }
        out.assignments.sort();
        return Ok(out);
    }
    // Sticky: what exists stays where it is, except off a drained node (placed again, its
    // old node keeps it until the new instance runs: `from`), and off a lost node the
    // caller lets go of, for a service that asks to be rescheduled (placed again at once:
    // the old instance is out of reach).
    let mut have: BTreeSet<u32> = BTreeSet::new();
    let mut off: BTreeMap<u32, Off> = BTreeMap::new();
    for a in current.iter().filter(mine) {
        if a.slot < 1 || a.slot > d.replicas {
            continue;
        }
        let Some(&i) = index.get(a.node.as_str()) else {
            // Its node was removed (`berth node rm`): the operator accepted the loss, so it
            // is placed again, unless it keeps data there and does not ask to move.
            if !have.insert(a.slot) {
                continue;
            }
            match (&d.local_state, d.reschedule) {
                (Some(what), false) => {
                    out.rescheduled.push(format!(
                        "{}: instance {} stays assigned to removed node {}: it keeps data there ({what}); reschedule:on-node-failure lets it move",
                        d.service, a.slot, a.node
                    ));
                    out.assignments.push(a.clone());
                }
                _ => {
                    off.insert(a.slot, Off::Removed(a.node.clone()));
                }
            }
            continue;
        };
        if !have.insert(a.slot) {
            continue;
        }
        if nodes[i].lost {
            match (d.reschedule, &d.local_state) {
                (true, None) => {
                    off.insert(a.slot, Off::Lost(i));
                    continue;
                }
                (false, _) => out.rescheduled.push(format!(
                    "{}: instance {} stays on lost {}: the service does not ask for reschedule:on-node-failure",
                    d.service, a.slot, nodes[i].name
                )),
                (true, Some(what)) => out.rescheduled.push(format!(
                    "{}: instance {} stays on lost {}: it keeps data there ({what}); `berth node rm {}` accepts the loss and moves it",
                    d.service, a.slot, nodes[i].name, nodes[i].name
                )),
            }
        } else if nodes[i].drained && a.from.is_empty() {
            off.insert(a.slot, Off::Drained(i));
            continue;
        }
        placed[i] += 1;
        let mut kept = a.clone();
        // A move whose old node is gone has nothing left to wait for.
        if !kept.from.is_empty() && !index.contains_key(kept.from.as_str()) {
            kept.from.clear();
        }
        out.assignments.push(kept);
    }
    // Zones: each node's zone as an index, the demand's load per zone kept up to date.
    let zone_names: Vec<&str> = nodes
        .iter()
        .filter_map(|n| n.labels.get("az").map(String::as_str))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let zone_of: Vec<Option<usize>> = nodes
        .iter()
        .map(|n| {
            n.labels
                .get("az")
                .and_then(|z| zone_names.iter().position(|x| x == z))
        })
        .collect();
    let mut zone_load = vec![0usize; zone_names.len()];
    for (i, z) in zone_of.iter().enumerate() {
        if let Some(z) = z {
            zone_load[*z] += loads[i].service + placed[i];
        }
    }
    if let Some((want, soft)) = rules.zones {
        let none = vec![0; nodes.len()];
        let zones: BTreeSet<&str> = (0..nodes.len())
            .filter(|i| fits(*i, &none))
            .filter_map(|i| zone_of[i].map(|z| zone_names[z]))
            .collect();
        if (zones.len() as u32) < want {
            let e = PlacementError::Zones {
                service: d.service.clone(),
                want,
                have: zones.len(),
                zones: if zones.is_empty() {
                    "none".into()
                } else {
                    zones.iter().copied().collect::<Vec<_>>().join(", ")
                },
            };
            if soft {
                out.warnings.push(e.to_string());
            } else {
                return Err(e);
            }
        }
    }
    let mut chosen: Vec<Assignment> = Vec::new();
    let slots = (1..=d.replicas)
        .filter(|s| !have.contains(s) || off.contains_key(s))
        .collect::<Vec<_>>();
    // Set once the nodes are full: the slots still to place wait (those placed somewhere
    // already stay where they are).
    let mut full = false;
    for slot in slots {
        let from = off.get(&slot);
        if full && from.is_none() {
            continue;
        }
        let mut best: Option<(Score, usize)> = None;
        for i in 0..nodes.len() {
            if !fits(i, &placed) {
                continue;
            }
            let zl = match (rules.zones, zone_of[i]) {
                (Some(_), Some(z)) => zone_load[z],
                // A node without a zone is the last choice when zones are asked for.
                (Some(_), None) => usize::MAX / 2,
                (None, _) => 0,
            };
            let s = score(
                d,
                &rules,
                &nodes[i],
                &loads[i],
                placed[i],
                zl,
                (prefix[i], slot),
            );
            if best.as_ref().is_none_or(|(b, _)| s < *b) {
                best = Some((s, i));
            }
        }
        let Some((s, i)) = best else {
            // Nowhere to move it: it stays where it is, said as a warning.
            if let Some(f) = from {
                let (node, how) = match f {
                    Off::Drained(f) => {
                        (nodes[*f].id.clone(), format!("drained {}", nodes[*f].name))
                    }
                    Off::Lost(f) => (nodes[*f].id.clone(), format!("lost {}", nodes[*f].name)),
                    Off::Removed(id) => (id.clone(), format!("removed node {id}")),
                };
                if let Off::Drained(f) | Off::Lost(f) = f {
                    placed[*f] += 1;
                }
                out.warnings.push(format!(
                    "{}: instance {slot} stays on {how}: no other node can take it",
                    d.service
                ));
                chosen.push(assign(d, slot, &node));
                continue;
            }
            let e = PlacementError::NoNode {
                service: d.service.clone(),
                slot,
                lacks: (0..nodes.len())
                    .filter_map(|i| lacks(i, &placed).map(|why| (nodes[i].name.clone(), why)))
                    .collect(),
            };
            // Some instances run and the nodes that meet the rules are only full (room, max
            // per node): the rest wait for room, as Swarm leaves tasks pending. A rule that
            // breaks (an affinity), or nothing placed at all: an error.
            let only_full = (0..nodes.len()).filter(|&i| fixed[i].is_none()).all(|i| {
                !matches!(
                    room_lacks(d, &rules, &nodes[i], &loads[i], placed[i]),
                    Some(Lack::Affinity(_))
                )
            });
            if only_full && placed.iter().any(|n| *n > 0) {
                out.warnings.push(format!("{e} (it waits for room)"));
                full = true;
                continue;
            }
            return Err(e);
        };
        for w in s.soft_broken_rules {
            let w = format!(
                "{}: instance {slot} on {}: {w} not met (a preference)",
                d.service, nodes[i].name
            );
            if !out.warnings.contains(&w) {
                out.warnings.push(w);
            }
        }
        placed[i] += 1;
        if let Some(z) = zone_of[i] {
            zone_load[z] += 1;
        }
        let mut a = assign(d, slot, &nodes[i].id);
        match from {
            Some(Off::Drained(f)) => a.from = nodes[*f].id.clone(),
            Some(Off::Lost(f)) => out.rescheduled.push(format!(
                "{}: instance {slot} rescheduled off lost {} to {}",
                d.service, nodes[*f].name, nodes[i].name
            )),
            Some(Off::Removed(id)) => out.rescheduled.push(format!(
                "{}: instance {slot} rescheduled off removed node {id} to {}",
                d.service, nodes[i].name
            )),
            None => {}
        }
        chosen.push(a);
    }
    out.assignments.extend(chosen);
    out.assignments.sort();
    Ok(out)
}

/// Why a kept slot is placed again: its node is drained (start-first), lost, or removed.
#[derive(Debug, Clone, PartialEq)]
enum Off {
    Drained(usize),
    Lost(usize),
    Removed(String),
}

fn assign(d: &Demand, slot: u32, node: &str) -> Assignment {
    Assignment {
        app: d.app.clone(),
        service: d.service.clone(),
        version: d.version,
        slot,
        node: node.to_string(),
        from: String::new(),
    }
}

/// `berth rebalance`: spreads the placed instances of `d` again. While one open node runs
/// at least two more than another that can take one, its highest slot moves there
/// (start-first: `from` keeps it on the old node until the new instance runs). Moves under
/// way are left alone; the rules and room hold as in [`placement`]. Returns the new
/// assignments and the number of moves.
pub fn rebalance(
    d: &Demand,
    nodes: &[NodeInfo],
    current: &[Assignment],
) -> Result<(Vec<Assignment>, usize), PlacementError> {
    let rules = Rules::of(d)?;
    let mut list: Vec<Assignment> = current
        .iter()
        .filter(|a| a.app == d.app && a.service == d.service && a.version == d.version)
        .cloned()
        .collect();
    if d.global {
        return Ok((list, 0));
    }
    // Loads without this demand's own instances, which `count` tracks.
    let loads: Vec<Load> = nodes
        .iter()
        .map(|n| {
            let mut l = Load::of(d, n);
            l.service = 0;
            l
        })
        .collect();
    let count = |list: &[Assignment], id: &str| list.iter().filter(|a| a.node == id).count();
    let mut moves = 0;
    loop {
        let open: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].open).collect();
        let Some(&big) = open
            .iter()
            .max_by_key(|&&i| (count(&list, &nodes[i].id), std::cmp::Reverse(i)))
        else {
            break;
        };
        let most = count(&list, &nodes[big].id);
        let small = open
            .iter()
            .filter(|&&i| count(&list, &nodes[i].id) + 2 <= most)
            .filter(|&&i| {
                fixed_lacks(&rules, &nodes[i]).is_none()
                    && room_lacks(d, &rules, &nodes[i], &loads[i], count(&list, &nodes[i].id))
                        .is_none()
            })
            .min_by_key(|&&i| (count(&list, &nodes[i].id), i));
        let (Some(&small), Some(a)) = (
            small,
            list.iter_mut()
                .filter(|a| a.node == nodes[big].id && a.from.is_empty())
                .max_by_key(|a| a.slot),
        ) else {
            break;
        };
        a.from = std::mem::replace(&mut a.node, nodes[small].id.clone());
        moves += 1;
    }
    list.sort();
    Ok((list, moves))
}

/// Why node `n` can never take an instance of this demand, whatever runs there: closed, or
/// a hard constraint it does not meet. Computed once per node and call.
fn fixed_lacks(rules: &Rules, n: &NodeInfo) -> Option<String> {
    if !n.open {
        return Some("is not taking instances (lost, left or drained)".into());
    }
    rules
        .constraints
        .iter()
        .filter(|c| !c.soft)
        .find_map(|c| c.check(n))
}

/// What a node that meets the fixed rules lacks for one more instance (no allocation: this
/// runs for every node and every slot; [`Lack::describe`] says it in words).
#[derive(Debug, Clone, Copy)]
enum Lack {
    MaxPerNode { have: u64, max: u32 },
    Cpu { free: u64 },
    Mem { free: u64 },
    Gpu { free: u32 },
    Affinity(usize),
}

impl Lack {
    fn describe(self, d: &Demand, rules: &Rules) -> String {
        match self {
            Lack::MaxPerNode { have, max } => {
                format!("has {have} already (max_replicas_per_node {max})")
            }
            Lack::Cpu { free } => format!(
                "has {:.2} CPUs free, it needs {:.2}",
                free as f64 / 1000.0,
                d.cpu_millis as f64 / 1000.0
            ),
            Lack::Mem { free } => format!(
                "has {} MiB of memory free, it needs {}",
                free >> 20,
                d.mem_bytes >> 20
            ),
            Lack::Gpu { free } => format!("has {free} GPUs free, it needs {}", d.gpus),
            Lack::Affinity(i) => format!("does not meet {}", rules.affinities[i].1),
        }
    }
}

/// What node `n` (with `load` running and `placed` of this demand) lacks for one more
/// instance of `d`, beyond the fixed rules (None: it can take one).
fn room_lacks(d: &Demand, rules: &Rules, n: &NodeInfo, load: &Load, placed: usize) -> Option<Lack> {
    let here = placed as u64;
    if let Some(max) = d.max_per_node
        && here + load.service as u64 >= u64::from(max)
    {
        return Some(Lack::MaxPerNode {
            have: here + load.service as u64,
            max,
        });
    }
    let cpu = load.cpu + here * d.cpu_millis;
    let mem = load.mem + here * d.mem_bytes;
    let gpu = load.gpu + placed as u32 * d.gpus;
    if d.cpu_millis > 0 && cpu + d.cpu_millis > n.cpu_millis {
        return Some(Lack::Cpu {
            free: n.cpu_millis.saturating_sub(cpu),
        });
    }
    if d.mem_bytes > 0 && mem + d.mem_bytes > n.mem_bytes {
        return Some(Lack::Mem {
            free: n.mem_bytes.saturating_sub(mem),
        });
    }
    if d.gpus > 0 && gpu + d.gpus > n.gpus {
        return Some(Lack::Gpu {
            free: n.gpus.saturating_sub(gpu),
        });
    }
    rules
        .affinities
        .iter()
        .position(|(a, _)| !a.soft && !affinity_met(d, a, n, placed))
        .map(Lack::Affinity)
}

/// An affinity rule against what runs on `n` and the `placed` instances of `d` there (they
/// count as containers of its own service).
fn affinity_met(d: &Demand, a: &Affinity, n: &NodeInfo, placed: usize) -> bool {
    let empty = BTreeMap::new();
    let mine = (0..placed).map(|_| HostContainer {
        service: &d.service,
        image: &d.image,
        name: &d.service,
        labels: &empty,
    });
    // A rule about a service means a service of this app.
    let running = n
        .running
        .iter()
        .filter(|r| r.app == d.app || a.key != "service")
        .map(|r| HostContainer {
            service: &r.service,
            image: &r.image,
            name: &r.name,
            labels: &r.labels,
        });
    a.met(running.chain(mine))
}

/// Lower is better; compared field by field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    soft_broken: usize,
    zone_load: usize,
    service_here: usize,
    app_here: usize,
    all_here: usize,
    /// Rendezvous: the highest hash wins, so it is stored inverted.
    hash_inv: u64,
    soft_broken_rules: Vec<String>,
}

fn score(
    d: &Demand,
    rules: &Rules,
    n: &NodeInfo,
    load: &Load,
    placed: usize,
    zone_load: usize,
    (prefix, slot): (u64, u32),
) -> Score {
    let mut broken = Vec::new();
    for c in rules.constraints.iter().filter(|c| c.soft) {
        if c.check(n).is_some() {
            broken.push(c.entry.clone());
        }
    }
    for (a, entry) in rules.affinities.iter().filter(|(a, _)| a.soft) {
        if !affinity_met(d, a, n, placed) {
            broken.push(entry.clone());
        }
    }
    Score {
        soft_broken: broken.len(),
        zone_load,
        service_here: load.service + placed,
        app_here: load.app + placed,
        all_here: load.all + placed,
        hash_inv: u64::MAX - rendezvous(prefix, slot),
        soft_broken_rules: broken,
    }
}

/// FNV-1a over (node, app, service, slot): the same on every host and every build. The
/// (node, app, service) part is hashed once per node and call ([`rendezvous_prefix`]).
fn rendezvous(prefix: u64, slot: u32) -> u64 {
    fnv(prefix, &slot.to_be_bytes())
}

fn rendezvous_prefix(node: &str, d: &Demand) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        node.as_bytes(),
        b"\0",
        d.app.as_bytes(),
        b"\0",
        d.service.as_bytes(),
        b"\0",
    ] {
        h = fnv(h, part);
    }
    h
}

/// The member that takes over `app` from a lost owner: of the `candidates` (node ids), the
/// one with the highest rendezvous hash of (node, app), so every host that sees the same
/// members picks the same one, and a member's loss moves only the apps it held.
pub fn successor<'a>(app: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates.into_iter().max_by_key(|n| {
        let h = fnv(fnv(0xcbf2_9ce4_8422_2325, n.as_bytes()), b"\0owner\0");
        (mix(fnv(h, app.as_bytes())), *n)
    })
}

/// splitmix64's finaliser: FNV alone barely stirs the high bits for names that differ only
/// at their end, and a maximum over such hashes would favour one member.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, labels: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            name: id.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            open: true,
            drained: false,
            lost: false,
            cpu_millis: 2000,
            mem_bytes: 4 << 30,
            gpus: 0,
            running: Vec::new(),
        }
    }

    fn demand(replicas: u32, placement: &[&str]) -> Demand {
        Demand {
            app: "shop".into(),
            service: "web".into(),
            version: 1,
            image: "nginx".into(),
            replicas,
            placement: placement.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn per_node(p: &Placed) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for a in &p.assignments {
            *m.entry(a.node.clone()).or_default() += 1;
        }
        m
    }

    #[test]
    fn six_replicas_over_three_nodes_land_two_each_and_every_host_agrees() {
        let nodes = vec![node("a", &[]), node("b", &[]), node("c", &[])];
        let p = placement(&demand(6, &[]), &nodes, &[]).unwrap();
        assert_eq!(
            per_node(&p).values().copied().collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
        // The same input in another order gives the same answer.
        let mut rev = nodes.clone();
        rev.reverse();
        assert_eq!(placement(&demand(6, &[]), &rev, &[]).unwrap(), p);
    }

    #[test]
    fn placement_is_sticky_and_scaling_keeps_what_runs() {
        let nodes = vec![node("a", &[]), node("b", &[]), node("c", &[])];
        let first = placement(&demand(2, &[]), &nodes, &[]).unwrap();
        let more = placement(&demand(3, &[]), &nodes, &first.assignments).unwrap();
        for a in &first.assignments {
            assert!(more.assignments.contains(a), "{a:?} moved");
        }
        // The third goes where none runs yet.
        let used: BTreeSet<&str> = first.assignments.iter().map(|a| a.node.as_str()).collect();
        let third = more.assignments.iter().find(|a| a.slot == 3).unwrap();
        assert!(!used.contains(third.node.as_str()));
        // Scaling down keeps the lower slots where they were.
        let less = placement(&demand(1, &[]), &nodes, &more.assignments).unwrap();
        assert_eq!(less.assignments, vec![more.assignments[0].clone()]);
    }

    #[test]
    fn hard_constraints_in_every_spelling_and_the_reason_when_none_fits() {
        let nodes = vec![
            node("a", &[("disk", "ssd"), ("group", "1")]),
            node("b", &[("disk", "hdd"), ("group", "2")]),
        ];
        for rule in [
            "constraint:disk==ssd",
            "constraint:group=1",
            "constraint:node==a",
            "constraint:disk!=hdd",
            "constraint:disk==(ssd nvme)",
        ] {
            let p = placement(&demand(2, &[rule]), &nodes, &[]).unwrap();
            assert_eq!(
                per_node(&p),
                BTreeMap::from([("a".to_string(), 2)]),
                "{rule}"
            );
        }
        let e = placement(&demand(1, &["constraint:disk==nvme"]), &nodes, &[]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("a has disk=ssd") && text.contains("b has disk=hdd"),
            "{text}"
        );
        // A soft one is a preference: it is placed anyway, with a warning.
        let p = placement(&demand(1, &["constraint:disk==~nvme"]), &nodes, &[]).unwrap();
        assert_eq!(p.assignments.len(), 1);
        assert!(p.warnings[0].contains("a preference"), "{:?}", p.warnings);
    }

    #[test]
    fn anti_affinity_to_itself_spreads_and_refuses_a_fourth_on_three_nodes() {
        let nodes = vec![node("a", &[]), node("b", &[]), node("c", &[])];
        let rule = ["affinity:service!=web"];
        let p = placement(&demand(3, &rule), &nodes, &[]).unwrap();
        assert_eq!(per_node(&p).len(), 3);
        let e = placement(&demand(4, &rule), &nodes, &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("does not meet affinity:service!=web"),
            "{e}"
        );
        // Beside another service of the app.
        let mut with_db = nodes.clone();
        with_db[1].running.push(Running {
            app: "shop".into(),
            service: "db".into(),
            ..Default::default()
        });
        let p = placement(&demand(1, &["affinity:service==db"]), &with_db, &[]).unwrap();
        assert_eq!(p.assignments[0].node, "b");
    }

    #[test]
    fn zones_are_spread_over_and_too_few_zones_fail_or_warn() {
        let nodes = vec![
            node("a", &[("az", "1")]),
            node("b", &[("az", "1")]),
            node("c", &[("az", "2")]),
        ];
        let p = placement(&demand(2, &["availability:az==2"]), &nodes, &[]).unwrap();
        let zones: BTreeSet<&str> = p
            .assignments
            .iter()
            .map(|a| nodes.iter().find(|n| n.id == a.node).unwrap().labels["az"].as_str())
            .collect();
        assert_eq!(zones.len(), 2);
        let e = placement(&demand(3, &["availability:az==3"]), &nodes, &[]).unwrap_err();
        assert!(e.to_string().contains("in 2: 1, 2"), "{e}");
        let p = placement(&demand(3, &["availability:az=~3"]), &nodes, &[]).unwrap();
        assert_eq!(p.assignments.len(), 3);
        assert!(!p.warnings.is_empty());
    }

    #[test]
    fn reservations_need_room_and_drained_nodes_take_nothing() {
        let mut nodes = vec![node("a", &[]), node("b", &[])];
        nodes[0].cpu_millis = 500;
        nodes[1].open = false;
        let mut d = demand(1, &[]);
        d.cpu_millis = 1000;
        let e = placement(&d, &nodes, &[]).unwrap_err().to_string();
        assert!(e.contains("a has 0.50 CPUs free, it needs 1.00"), "{e}");
        assert!(e.contains("b is not taking instances"), "{e}");
        d.cpu_millis = 0;
        d.gpus = 1;
        let e = placement(&d, &nodes, &[]).unwrap_err().to_string();
        assert!(e.contains("GPUs free"), "{e}");
    }

    #[test]
    fn global_runs_one_on_every_open_node_and_follows_membership() {
        let mut nodes = vec![node("a", &[]), node("b", &[])];
        let mut d = demand(0, &[]);
        d.global = true;
        let p = placement(&d, &nodes, &[]).unwrap();
        assert_eq!(per_node(&p).len(), 2);
        // A node joins: it gets one; the others keep theirs.
        nodes.push(node("c", &[]));
        let q = placement(&d, &nodes, &p.assignments).unwrap();
        assert_eq!(per_node(&q).len(), 3);
        for a in &p.assignments {
            assert!(q.assignments.contains(a));
        }
        // A node drained: none there any more.
        nodes[0].open = false;
        let r = placement(&d, &nodes, &q.assignments).unwrap();
        assert!(!r.assignments.iter().any(|a| a.node == "a"));
        assert_eq!(r.assignments.len(), 2);
    }

    #[test]
    fn a_drained_nodes_instances_move_start_first_and_a_move_ends_when_cleared() {
        let mut nodes = vec![node("a", &[]), node("b", &[]), node("c", &[])];
        let d = demand(6, &[]);
        let first = placement(&d, &nodes, &[]).unwrap();
        assert_eq!(
            per_node(&first).values().copied().collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
        nodes[2].open = false;
        nodes[2].drained = true;
        let moved = placement(&d, &nodes, &first.assignments).unwrap();
        let from_c: Vec<&Assignment> = moved.assignments.iter().filter(|a| a.from == "c").collect();
        assert_eq!(from_c.len(), 2, "{moved:?}");
        assert!(from_c.iter().all(|a| a.node != "c"));
        assert!(!moved.assignments.iter().any(|a| a.node == "c"));
        // Placed again while the moves run: nothing changes (they are not moved twice).
        let again = placement(&d, &nodes, &moved.assignments).unwrap();
        assert_eq!(again.assignments, moved.assignments);
        // Nowhere to go: the slot stays on the drained node, with a warning.
        let lone = [NodeInfo {
            open: false,
            drained: true,
            ..node("a", &[])
        }];
        let kept = placement(&demand(1, &[]), &lone, &[assign(&demand(1, &[]), 1, "a")]).unwrap();
        assert_eq!(kept.assignments[0].node, "a");
        assert!(kept.warnings[0].contains("drained"), "{kept:?}");
    }

    #[test]
    fn a_lost_nodes_instances_move_only_when_asked_and_keeping_no_data_there() {
        let mut nodes = vec![node("a", &[]), node("b", &[]), node("c", &[])];
        let stateless = Demand {
            reschedule: true,
            ..demand(6, &[])
        };
        let first = placement(&stateless, &nodes, &[]).unwrap();
        // Lost, but the caller holds it (grace not over, or no majority): nothing moves.
        nodes[2].open = false;
        let held = placement(&stateless, &nodes, &first.assignments).unwrap();
        assert_eq!(held.assignments, first.assignments);
        assert!(held.rescheduled.is_empty());
        // Let go of: its two move at once (no `from`: the old ones are out of reach).
        nodes[2].lost = true;
        let moved = placement(&stateless, &nodes, &first.assignments).unwrap();
        assert_eq!(
            per_node(&moved),
            BTreeMap::from([("a".into(), 3), ("b".into(), 3)])
        );
        assert!(moved.assignments.iter().all(|a| a.from.is_empty()));
        assert_eq!(moved.rescheduled.len(), 2, "{moved:?}");
        assert!(
            moved.rescheduled[0].contains("rescheduled off lost c to"),
            "{moved:?}"
        );
        // Without the opt-in, or keeping data there: they stay, and say why.
        for (d, why) in [
            (
                demand(6, &[]),
                "does not ask for reschedule:on-node-failure",
            ),
            (
                Demand {
                    local_state: Some("local volume data".into()),
                    ..stateless.clone()
                },
                "keeps data there (local volume data); `berth node rm c`",
            ),
        ] {
            let p = placement(&d, &nodes, &first.assignments).unwrap();
            assert_eq!(p.assignments, first.assignments);
            assert_eq!(p.rescheduled.len(), 2);
            assert!(p.rescheduled[0].contains(why), "{p:?}");
        }
        // Removed (`berth node rm`): the operator accepted the loss; everything moves but
        // what keeps data there without asking to move.
        nodes.pop();
        let plain = placement(&demand(6, &[]), &nodes, &first.assignments).unwrap();
        assert_eq!(
            per_node(&plain),
            BTreeMap::from([("a".into(), 3), ("b".into(), 3)])
        );
        assert!(
            plain.rescheduled[0].contains("off removed node c"),
            "{plain:?}"
        );
        let data = Demand {
            local_state: Some("bind mount /srv".into()),
            ..demand(6, &[])
        };
        let pinned = placement(&data, &nodes, &first.assignments).unwrap();
        assert_eq!(pinned.assignments, first.assignments);
        assert!(pinned.rescheduled[0].contains("stays assigned to removed node c"));
        let opted = Demand {
            reschedule: true,
            ..data
        };
        let p = placement(&opted, &nodes, &first.assignments).unwrap();
        assert!(!p.assignments.iter().any(|a| a.node == "c"), "{p:?}");
    }

    #[test]
    fn a_lost_nodes_instance_stays_when_no_other_node_has_room() {
        let mut nodes = vec![node("a", &[]), node("b", &[])];
        let d = Demand {
            reschedule: true,
            max_per_node: Some(1),
            ..demand(2, &[])
        };
        let first = placement(&d, &nodes, &[]).unwrap();
        nodes[1].open = false;
        nodes[1].lost = true;
        let p = placement(&d, &nodes, &first.assignments).unwrap();
        assert_eq!(p.assignments, first.assignments, "nothing is dropped");
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("stays on lost b: no other node can take it")),
            "{p:?}"
        );
    }

    #[test]
    fn a_successor_is_the_same_whatever_the_order_and_apps_spread_over_members() {
        let members = ["a1", "b2", "c3", "d4"];
        let mut rev = members;
        rev.reverse();
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        for i in 0..200 {
            let app = format!("app{i}");
            let s = successor(&app, members).unwrap();
            assert_eq!(Some(s), successor(&app, rev));
            *by.entry(s).or_default() += 1;
            // Another member gone moves only the apps it would have had.
            let without: Vec<&str> = members.iter().copied().filter(|m| *m != "d4").collect();
            if s != "d4" {
                assert_eq!(successor(&app, without), Some(s));
            }
        }
        assert!(by.values().all(|n| *n > 20), "{by:?}");
        assert_eq!(successor("x", []), None);
    }

    #[test]
    fn rebalance_spreads_again_with_start_first_moves_and_respects_the_rules() {
        let nodes = [
            node("a", &[("disk", "ssd")]),
            node("b", &[("disk", "ssd")]),
            node("c", &[]),
        ];
        let d = demand(6, &[]);
        // Everything on a (b and c joined later).
        let on_a: Vec<Assignment> = (1..=6).map(|s| assign(&d, s, "a")).collect();
        let (list, moves) = rebalance(&d, &nodes, &on_a).unwrap();
        assert_eq!(moves, 4);
        for n in ["a", "b", "c"] {
            assert_eq!(list.iter().filter(|x| x.node == n).count(), 2, "{list:?}");
        }
        assert!(list.iter().filter(|x| x.node != "a").all(|x| x.from == "a"));
        // Balanced already: nothing moves.
        let (same, moves) = rebalance(&d, &nodes, &list).unwrap();
        assert_eq!((moves, same), (0, list.clone()));
        // A hard rule holds: with disk==ssd nothing goes to c.
        let ssd = demand(6, &["constraint:disk==ssd"]);
        let on_a: Vec<Assignment> = (1..=6).map(|s| assign(&ssd, s, "a")).collect();
        let (list, moves) = rebalance(&ssd, &nodes, &on_a).unwrap();
        assert_eq!(moves, 3);
        assert!(!list.iter().any(|x| x.node == "c"), "{list:?}");
    }

    #[test]
    fn more_replicas_than_max_per_node_allows_wait_for_room() {
        let nodes = [node("a", &[]), node("b", &[]), node("c", &[])];
        let d = Demand {
            max_per_node: Some(1),
            ..demand(4, &[])
        };
        let p = placement(&d, &nodes, &[]).unwrap();
        assert_eq!(p.assignments.len(), 3);
        assert!(p.warnings[0].contains("max_replicas_per_node 1"), "{p:?}");
        assert!(p.warnings[0].contains("waits for room"), "{p:?}");
    }
}
