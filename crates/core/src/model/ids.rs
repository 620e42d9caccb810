//! The one owner of stack identity: which CLB a stack is (`StackId`), the tags and names
//! clb-ingress writes on what it creates, and the ownership rule that says what it may change or
//! delete. `plan` previews, `apply` and the controller all call [`ownership`]; nothing parses
//! stack id strings.

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// Tag on every CLB clb-ingress creates: the cluster id.
pub const TAG_CLUSTER: &str = "clb-ingress.io/cluster";
/// Tag on every CLB clb-ingress creates: the stack hash ([`StackId::hash`]).
pub const TAG_STACK: &str = "clb-ingress.io/stack";
/// Tag on every CLB clb-ingress creates: [`CREATED_BY`].
pub const TAG_CREATED_BY: &str = "clb-ingress.io/created-by";
/// Tag on the CLBs of a shared class (`sharing: Shared`): the IngressClass name.
pub const TAG_CLASS: &str = "clb-ingress.io/class";
/// Tag on the CLBs of a shared class: the shard number (`0` is the class's first CLB).
pub const TAG_SHARD: &str = "clb-ingress.io/shard";
pub const CREATED_BY: &str = "clb-ingress";
/// Tag written (Tag service ModifyResourceTags) on a CLB clb-ingress created, once its stack's
/// desired state is fully applied: [`crate::model::DesiredLb::digest`]. A restarted controller
/// skips reading the listeners of a CLB whose tag equals its stack's digest (warm restart).
pub const TAG_DESIRED: &str = "clb-ingress.io/desired";
/// Listener names start with this; the rest is the stack hash.
pub const LISTENER_NAME_PREFIX: &str = "clb-ingress-";
/// A CLB whose name starts with this is kept when its stack goes away, and never pruned.
pub const RETAINED_NAME_PREFIX: &str = "retained-";
/// CLB name length limit (clb-api.md §6).
pub const MAX_LB_NAME: usize = 60;

/// One CLB = one stack.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StackId {
    /// A class's shared CLB (`sharing: Shared`), created by clb-ingress: its first shard
    /// (shard 0), which keeps the stack key the class had before sharding existed.
    Class(String),
    /// Shard `shard` (1 and up) of a shared class: one more CLB the class's hosts spread
    /// over when one CLB's quotas cannot hold them. Build it with [`StackId::shard`].
    Shard { class: String, shard: u32 },
    /// One CLB for one Ingress, created by clb-ingress.
    Ingress { namespace: String, name: String },
    /// An existing CLB, adopted by id (the `existLbId` annotation or the class's
    /// `loadBalancerId`): clb-ingress only manages its own listeners on it.
    Adopted(String),
    /// One CLB for one Gateway API Gateway, created by clb-ingress.
    Gateway { namespace: String, name: String },
}

impl StackId {
    pub fn ingress(namespace: &str, name: &str) -> Self {
        StackId::Ingress {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// The stack of shard `shard` of shared class `class`: the one place that names a shard's
    /// stack (shard 0 is [`StackId::Class`], so a class that never needed a second CLB keeps
    /// its stack key, tags and listeners).
    pub fn shard(class: &str, shard: u32) -> Self {
        if shard == 0 {
            StackId::Class(class.to_string())
        } else {
            StackId::Shard {
                class: class.to_string(),
                shard,
            }
        }
    }

    /// (class, shard number) of a shared class's stack.
    pub fn class_shard(&self) -> Option<(&str, u32)> {
        match self {
            StackId::Class(class) => Some((class, 0)),
            StackId::Shard { class, shard } => Some((class, *shard)),
            _ => None,
        }
    }

    /// The tags written on the CLB clb-ingress creates for this stack: [`stack_tags`], and
    /// for a shared class's shard also [`TAG_CLASS`] and [`TAG_SHARD`].
    pub fn tags(&self, cluster_id: &str) -> Vec<(String, String)> {
        let mut tags = stack_tags(cluster_id, self.hash(cluster_id));
        if let Some((class, shard)) = self.class_shard() {
            tags.push((TAG_CLASS.to_string(), class.to_string()));
            tags.push((TAG_SHARD.to_string(), shard.to_string()));
        }
        tags
    }

    /// Does clb-ingress create (and may it delete) this stack's CLB?
    pub fn creates_clb(&self) -> bool {
        !matches!(self, StackId::Adopted(_))
    }

    /// The id of the adopted CLB, for an adopted stack.
    pub fn adopted_lb(&self) -> Option<&str> {
        match self {
            StackId::Adopted(id) => Some(id),
            _ => None,
        }
    }

    /// The stack hash: the value of [`TAG_STACK`] and the suffix of the owned listener name.
    /// Stable across releases (it names existing cloud objects): a hash of the cluster id and
    /// the stack's display form.
    pub fn hash(&self, cluster_id: &str) -> String {
        // short_hash(&[cluster_id, &self.to_string()]), without building the string.
        struct Feed(Sha256);
        impl fmt::Write for Feed {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0.update(s.as_bytes());
                Ok(())
            }
        }
        let mut feed = Feed(Sha256::new());
        feed.0.update(cluster_id.as_bytes());
        feed.0.update(b"\n");
        // Display into a hasher cannot fail.
        let _ = fmt::write(&mut feed, format_args!("{self}"));
        feed.0.update(b"\n");
        hex::encode(&feed.0.finalize()[..6])
    }

    /// The name of the listeners this stack owns on its CLB.
    pub fn listener_name(&self, cluster_id: &str) -> String {
        listener_name(&self.hash(cluster_id))
    }

    /// The name of the CLB clb-ingress creates for this stack (a label for people; the stack
    /// tag is the identity). `None` for an adopted CLB.
    pub fn clb_name(&self, cluster_id: &str) -> Option<String> {
        let raw = match self {
            StackId::Class(class) => format!("{cluster_id}-class-{class}"),
            StackId::Shard { class, shard } => format!("{cluster_id}-class-{class}-{shard}"),
            StackId::Ingress { namespace, name } => format!("{cluster_id}-{namespace}-{name}"),
            StackId::Gateway { namespace, name } => format!("{cluster_id}-gw-{namespace}-{name}"),
            StackId::Adopted(_) => return None,
        };
        let clean: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        Some(if clean.len() <= MAX_LB_NAME {
            clean
        } else {
            // Shortened names stay unique by the hash.
            format!("{}-{}", &clean[..MAX_LB_NAME - 13], self.hash(cluster_id))
        })
    }
}

/// `ing:<namespace>/<name>`, `class:<name>`, `class:<name>#<shard>`, `lb:<id>` or
/// `gw:<namespace>/<name>`: the form in logs, metrics and the stack hash (so it must never
/// change).
impl fmt::Display for StackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackId::Class(class) => write!(f, "class:{class}"),
            StackId::Shard { class, shard } => write!(f, "class:{class}#{shard}"),
            StackId::Ingress { namespace, name } => write!(f, "ing:{namespace}/{name}"),
            StackId::Gateway { namespace, name } => write!(f, "gw:{namespace}/{name}"),
            StackId::Adopted(id) => write!(f, "lb:{id}"),
        }
    }
}

impl Serialize for StackId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The tags written on the CLB clb-ingress creates for the stack with this hash.
pub fn stack_tags(cluster_id: &str, stack_hash: String) -> Vec<(String, String)> {
    vec![
        (TAG_CLUSTER.to_string(), cluster_id.to_string()),
        (TAG_STACK.to_string(), stack_hash),
        (TAG_CREATED_BY.to_string(), CREATED_BY.to_string()),
    ]
}

/// The name of the listeners owned by the stack with this hash.
pub fn listener_name(stack_hash: &str) -> String {
    format!("{LISTENER_NAME_PREFIX}{stack_hash}")
}

/// A stable short hash (sha256, 12 hex digits) used in names and tags.
pub fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    hex::encode(&h.finalize()[..6])
}

/// Is this CLB (by its name) marked to be kept when its stack goes away?
pub fn is_retained_name(name: &str) -> bool {
    name.starts_with(RETAINED_NAME_PREFIX)
}

/// The name of a CLB marked to be kept (`loadbalance-retain`).
pub fn retained_name(name: &str) -> String {
    if is_retained_name(name) {
        return name.to_string();
    }
    let keep = name
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|&end| end <= MAX_LB_NAME - RETAINED_NAME_PREFIX.len())
        .last()
        .unwrap_or(0);
    format!("{RETAINED_NAME_PREFIX}{}", &name[..keep])
}

/// What clb-ingress may touch on a stack's CLB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The CLB was created by clb-ingress for this stack (proven by its tags) and may be
    /// deleted (it is not marked retained).
    pub lb_owned: bool,
    /// Listeners with this name were created by clb-ingress for this stack.
    pub listener_name: String,
}

/// The facts about an existing CLB that ownership is decided on.
#[derive(Debug, Clone, Copy)]
pub struct ClbFacts<'a> {
    pub name: &'a str,
    pub tags: &'a BTreeMap<String, String>,
}

/// The ownership rule, the same for `plan`, `apply` and the controller. The whole CLB is ours
/// only if the stack creates its CLB and the CLB (when one exists) carries this cluster's id
/// and this stack's hash and is not marked retained; otherwise only the listeners named
/// [`StackId::listener_name`] are ours. Without an observed CLB (a preview from empty) the CLB
/// the stack would create is ours.
pub fn ownership(stack: &StackId, cluster_id: &str, observed: Option<ClbFacts<'_>>) -> Ownership {
    ownership_by_hash(
        stack.creates_clb(),
        &stack.hash(cluster_id),
        cluster_id,
        observed,
    )
}

/// [`ownership`] for a CLB known by its stack hash only (a CLB whose stack is gone, being
/// pruned): `creates_clb` says whether the stack created its CLB.
pub fn ownership_by_hash(
    creates_clb: bool,
    stack_hash: &str,
    cluster_id: &str,
    observed: Option<ClbFacts<'_>>,
) -> Ownership {
    let lb_owned = creates_clb
        && observed.is_none_or(|o| {
            o.tags.get(TAG_STACK).map(String::as_str) == Some(stack_hash)
                && o.tags.get(TAG_CLUSTER).map(String::as_str) == Some(cluster_id)
                && !is_retained_name(o.name)
        });
    Ownership {
        lb_owned,
        listener_name: listener_name(stack_hash),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_display_forms_are_the_historical_strings_that_hashes_are_made_of() {
        assert_eq!(StackId::ingress("ns", "web").to_string(), "ing:ns/web");
        assert_eq!(StackId::Class("clb".into()).to_string(), "class:clb");
        assert_eq!(StackId::Adopted("lb-1".into()).to_string(), "lb:lb-1");
        assert_eq!(StackId::shard("clb", 0), StackId::Class("clb".into()));
        assert_eq!(StackId::shard("clb", 2).to_string(), "class:clb#2");
        assert_eq!(
            StackId::ingress("ns", "web").hash("c1"),
            short_hash(&["c1", "ing:ns/web"])
        );
    }

    #[test]
    fn only_a_clb_tagged_with_this_cluster_and_stack_and_not_retained_is_owned_whole() {
        let stack = StackId::ingress("ns", "web");
        let tags: BTreeMap<String, String> =
            stack_tags("c1", stack.hash("c1")).into_iter().collect();
        let facts = |name, tags| Some(ClbFacts { name, tags });
        assert!(ownership(&stack, "c1", facts("x", &tags)).lb_owned);
        assert!(ownership(&stack, "c1", None).lb_owned);
        assert!(!ownership(&stack, "c2", facts("x", &tags)).lb_owned);
        assert!(!ownership(&stack, "c1", facts("retained-x", &tags)).lb_owned);
        let other: BTreeMap<String, String> =
            stack_tags("c1", StackId::ingress("ns", "api").hash("c1"))
                .into_iter()
                .collect();
        assert!(!ownership(&stack, "c1", facts("x", &other)).lb_owned);
        let adopted = StackId::Adopted("lb-1".into());
        assert!(!ownership(&adopted, "c1", None).lb_owned);
        assert_eq!(
            ownership(&adopted, "c1", None).listener_name,
            format!("clb-ingress-{}", adopted.hash("c1"))
        );
    }

    #[test]
    fn shard_clbs_are_tagged_with_their_class_and_number_and_shard_zero_keeps_the_class_key() {
        let tags: BTreeMap<String, String> =
            StackId::shard("web", 3).tags("c1").into_iter().collect();
        assert_eq!(tags[TAG_CLASS], "web");
        assert_eq!(tags[TAG_SHARD], "3");
        assert_eq!(tags[TAG_STACK], short_hash(&["c1", "class:web#3"]));
        let zero: BTreeMap<String, String> =
            StackId::shard("web", 0).tags("c1").into_iter().collect();
        assert_eq!(zero[TAG_STACK], short_hash(&["c1", "class:web"]));
        assert_eq!(zero[TAG_SHARD], "0");
        assert!(
            !StackId::ingress("ns", "a")
                .tags("c1")
                .iter()
                .any(|(k, _)| k == TAG_SHARD)
        );
        assert_eq!(
            StackId::shard("web", 3).clb_name("c1").as_deref(),
            Some("c1-class-web-3")
        );
    }

    #[test]
    fn long_clb_names_are_shortened_with_the_stack_hash_and_stay_within_the_limit() {
        let stack = StackId::ingress("a-very-long-namespace-name-here", &"x".repeat(60));
        let name = stack.clb_name("cluster").unwrap();
        assert!(name.len() <= MAX_LB_NAME, "{name}");
        assert!(name.ends_with(&stack.hash("cluster")), "{name}");
        assert_eq!(
            StackId::ingress("ns", "w.eb").clb_name("c").as_deref(),
            Some("c-ns-w-eb")
        );
        assert_eq!(StackId::Adopted("lb-1".into()).clb_name("c"), None);
    }
}
