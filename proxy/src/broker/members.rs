//! Who gets a message: the groups whose subscriptions match its topic, and in each group the
//! member a try goes to, by the routing rule calls follow (local datacenter first, else the
//! nearest with a healthy member), balanced by deliveries in flight.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use ferry_tunnel::CatalogSubscription;

use super::topic::{Pattern, Topic};
use crate::directory::{eligible, Endpoint, EndpointId};

/// A subscription somewhere in the mesh, with how its service is reached.
#[derive(Clone, Debug)]
pub struct Member {
    /// What the subscribing node announced.
    pub subscription: CatalogSubscription,
    /// The subscribing node's name, for logs and the admin API.
    pub node: String,
    /// The subscribing service on that node: a local address for this node's own, a tunnel
    /// route for another's.
    pub endpoint: Endpoint,
}

/// The members of every group with a subscription matching `topic`, by group. A pattern that
/// does not parse (from a node of another version, say) matches nothing.
pub(crate) fn matching(members: Vec<Member>, topic: &Topic) -> BTreeMap<String, Vec<Member>> {
    let mut groups: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    for member in members {
        let matches = Pattern::parse(&member.subscription.pattern).is_ok_and(|p| p.matches(topic));
        if matches {
            groups
                .entry(member.subscription.group.clone())
                .or_default()
                .push(member);
        }
    }
    groups
}

/// Deliveries in flight per member, so that a slow member is given fewer; and whose turn it
/// is in each group, so that members with as many in flight take turns.
#[derive(Default)]
pub(crate) struct Load {
    state: Mutex<LoadState>,
}

#[derive(Default)]
struct LoadState {
    /// By node (or address) and service: one node's service busy with another group's
    /// messages says nothing of how busy its other services are.
    in_flight: HashMap<(EndpointId, String), usize>,
    /// Per group: a turn counter of its own, or one group's picks would set another's turns
    /// (two groups picking in step would each always land on the same member).
    turns: HashMap<String, usize>,
}

/// One delivery counted against a member until it is dropped.
pub(crate) struct InFlight<'a> {
    load: &'a Load,
    key: (EndpointId, String),
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.load.lock();
        if let Some(n) = state.in_flight.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                state.in_flight.remove(&self.key);
            }
        }
    }
}

impl Load {
    fn lock(&self) -> std::sync::MutexGuard<'_, LoadState> {
        // The state holds counts only: counts a panic left half-updated are still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The member of `group` the next try goes to, counted in flight while the guard lives.
    /// Members already `tried` for this message are left out while another is eligible.
    /// `None` when no member is healthy.
    pub(crate) fn pick<'a>(
        &'a self,
        group: &str,
        members: &[Member],
        local_dc: &str,
        tried: &[EndpointId],
    ) -> Option<(Member, InFlight<'a>)> {
        let endpoints: Vec<Endpoint> = members.iter().map(|m| m.endpoint.clone()).collect();
        let untried: Vec<Endpoint> = endpoints
            .iter()
            .filter(|e| !tried.contains(&e.id))
            .cloned()
            .collect();
        let candidates = eligible(untried, local_dc).or_else(|| eligible(endpoints, local_dc))?;
        let mut state = self.lock();
        // Fewest in flight wins; ties go round in turn, so that a steady trickle of messages
        // is shared evenly rather than always landing on the first member.
        let start = match state.turns.get_mut(group) {
            Some(turn) => {
                *turn = turn.wrapping_add(1);
                *turn
            }
            None => {
                state.turns.insert(group.to_owned(), 0);
                0
            }
        };
        let n = candidates.len();
        let key = |id: EndpointId| {
            let member = members.iter().find(|m| m.endpoint.id == id)?;
            Some((id, member.subscription.service.to_ascii_lowercase()))
        };
        let chosen = (0..n)
            .map(|i| &candidates[(start + i) % n])
            .min_by_key(|e| key(e.id).map_or(0, |k| state.in_flight.get(&k).copied().unwrap_or(0)))?
            .id;
        let chosen = key(chosen)?;
        *state.in_flight.entry(chosen.clone()).or_insert(0) += 1;
        let member = members.iter().find(|m| m.endpoint.id == chosen.0)?.clone();
        Some((
            member,
            InFlight {
                load: self,
                key: chosen,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;
    use ferry_tunnel::Protocol;

    fn member(group: &str, pattern: &str, port: u16, dc: &str, healthy: bool) -> Member {
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        Member {
            subscription: CatalogSubscription {
                pattern: pattern.into(),
                group: group.into(),
                service: "billing".into(),
                path: "/events".into(),
                max_attempts: 5,
                dead_letter: String::new(),
                batch: 1,
            },
            node: format!("n{port}"),
            endpoint: Endpoint {
                id: EndpointId::Address(address),
                target: Target::Address(address),
                protocol: Protocol::Http,
                datacenter: dc.into(),
                healthy,
            },
        }
    }

    fn port(m: &Member) -> u16 {
        match m.endpoint.id {
            EndpointId::Address(a) => a.port(),
            EndpointId::Node(_) => 0,
        }
    }

    #[test]
    fn every_group_with_a_matching_subscription_is_found_once() {
        let members = vec![
            member("billing", "orders.*", 1, "dc1", true),
            member("billing", "orders.>", 2, "dc1", true),
            member("audit", ">", 3, "dc1", true),
            member("shipping", "orders.*.paid", 4, "dc1", true),
            member("broken", "orders.>.x", 5, "dc1", true),
        ];
        let topic = Topic::parse("orders.created").expect("a topic");
        let groups = matching(members, &topic);
        let names: Vec<&String> = groups.keys().collect();
        assert_eq!(names, ["audit", "billing"]);
        assert_eq!(groups["billing"].len(), 2);
    }

    #[test]
    fn a_group_is_shared_in_turn_by_its_local_healthy_members() {
        let load = Load::default();
        let members = vec![
            member("g", ">", 1, "dc1", true),
            member("g", ">", 2, "dc1", true),
            member("g", ">", 3, "dc2", true),
            member("g", ">", 4, "dc1", false),
        ];
        let mut counts = HashMap::new();
        for _ in 0..100 {
            let (m, _in_flight) = load.pick("g", &members, "dc1", &[]).expect("a member");
            *counts.entry(port(&m)).or_insert(0) += 1;
        }
        assert_eq!(counts.get(&1), Some(&50));
        assert_eq!(counts.get(&2), Some(&50));
    }

    #[test]
    fn each_group_takes_its_own_turns() {
        let load = Load::default();
        let members = vec![
            member("g", ">", 1, "dc1", true),
            member("g", ">", 2, "dc1", true),
        ];
        let mut ports = Vec::new();
        for _ in 0..4 {
            let (m, _) = load.pick("g", &members, "dc1", &[]).expect("a member");
            ports.push(port(&m));
            // Another group picking in between moves none of g's turns.
            let _ = load.pick("other", &members, "dc1", &[]);
        }
        assert_eq!(ports, [1, 2, 1, 2]);
    }

    #[test]
    fn a_member_with_deliveries_in_flight_is_given_fewer() {
        let load = Load::default();
        let members = vec![
            member("g", ">", 1, "dc1", true),
            member("g", ">", 2, "dc1", true),
        ];
        let (first, _held) = load.pick("g", &members, "dc1", &[]).expect("a member");
        for _ in 0..10 {
            let (next, _) = load.pick("g", &members, "dc1", &[]).expect("a member");
            assert_ne!(port(&next), port(&first), "the busy member is passed over");
        }
    }

    #[test]
    fn a_retry_goes_to_an_untried_member_then_to_the_nearest_other_datacenter() {
        let load = Load::default();
        let members = vec![
            member("g", ">", 1, "dc1", true),
            member("g", ">", 3, "dc2", true),
        ];
        let tried = [members[0].endpoint.id];
        let (m, _) = load.pick("g", &members, "dc1", &tried).expect("a member");
        assert_eq!(port(&m), 3);
        let all = [members[0].endpoint.id, members[1].endpoint.id];
        let (m, _) = load.pick("g", &members, "dc1", &all).expect("a member");
        assert_eq!(port(&m), 1, "every member tried: the rule picks again");
    }

    #[test]
    fn no_healthy_member_is_none() {
        let load = Load::default();
        assert!(load
            .pick("g", &[member("g", ">", 1, "dc1", false)], "dc1", &[])
            .is_none());
        assert!(load.pick("g", &[], "dc1", &[]).is_none());
    }
}
