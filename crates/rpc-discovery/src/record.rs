//! What every peer advertises, and its identity in the membership protocol.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::DiscoveryError;

/// A peer's identity in SWIM: its name, the random id of its process, and a
/// counter bumped when it rejoins after being declared down.
///
/// Two processes with the same name have different incarnations; the
/// membership never merges them (see [`DiscoveryError::DuplicateName`]).
///
/// [`DiscoveryError::DuplicateName`]: crate::DiscoveryError::DuplicateName
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// The peer's name.
    pub name: String,
    /// Random per process.
    pub incarnation: u64,
    /// Bumped each time the process rejoins after being declared down.
    pub bump: u16,
}

impl foca::Identity for NodeId {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> String {
        self.name.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // The same process renewed: the newer bump wins. Different processes
        // under one name never both join (the seed refuses the second), so
        // the tie-break only needs to be deterministic.
        if self.incarnation == adversary.incarnation {
            self.bump.wrapping_sub(adversary.bump) < u16::MAX / 2
        } else {
            self.incarnation > adversary.incarnation
        }
    }
}

/// One group a peer belongs to (see [`Group`](crate::Group)).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupTag {
    /// The group's name.
    pub group: String,
    /// The peer's role in it (`worker`, `server`, `client`, ...).
    pub role: String,
    /// The peer's rank among the members of that role.
    pub rank: u32,
    /// How many members the role has when complete.
    pub world_size: u32,
}

/// What a peer advertises to the cluster. Disseminated with the membership
/// protocol; a newer `version` of the same incarnation replaces an older one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// The peer's identity.
    pub id: NodeId,
    /// Grows with every change of the record.
    pub version: u64,
    /// Addresses it listens on, one or more per transport (`tcp://...`,
    /// `shm://...`). Empty for a peer that can only dial out (behind NAT).
    pub addresses: Vec<String>,
    /// Identifies its host (boot id and namespaces); equal keys mean "same
    /// host", where shared memory works.
    pub host_key: String,
    /// Its functions, with provider ids.
    pub functions: Vec<(String, u16)>,
    /// Its resources (datasets, models). A peer without resources is a
    /// balancer: it routes cluster calls but executes none.
    pub resources: BTreeSet<String>,
    /// The peers it is directly connected to: the links routes are built on.
    pub links: BTreeSet<String>,
    /// The groups it is a member of.
    pub groups: BTreeSet<GroupTag>,
}

impl PeerRecord {
    /// The peer's name.
    pub fn name(&self) -> &str {
        &self.id.name
    }

    /// Whether it has `function` (under any provider).
    pub fn has_function(&self, function: &str) -> bool {
        self.functions.iter().any(|(f, _)| f == function)
    }

    /// Whether it executes cluster calls (it has resources).
    pub fn is_server(&self) -> bool {
        !self.resources.is_empty()
    }

    /// Whether it has `function` and every one of `resources`.
    pub fn serves(&self, function: &str, resources: &BTreeSet<String>) -> bool {
        self.is_server() && self.has_function(function) && resources.is_subset(&self.resources)
    }

    /// The record as a membership broadcast carries it: the engine's body
    /// encoding ([`rpc_core::body`]).
    pub fn to_wire(&self) -> Result<Vec<u8>, DiscoveryError> {
        let (bytes, _) = rpc_core::body::encode(self).map_err(DiscoveryError::BadRecord)?;
        Ok(bytes.to_vec())
    }

    /// Decodes a record from a membership broadcast. Bad bytes are
    /// [`DiscoveryError::BadRecord`]; no length they claim is allocated
    /// beyond what the bytes can hold.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, DiscoveryError> {
        rpc_core::body::decode(bytes, &[]).map_err(DiscoveryError::BadRecord)
    }

    /// Whether `other` is a newer view of the same peer.
    pub(crate) fn superseded_by(&self, other: &Self) -> bool {
        other.id.name == self.id.name
            && (other.id.incarnation != self.id.incarnation && other.id.bump >= self.id.bump
                || other.id.incarnation == self.id.incarnation
                    && (other.id.bump, other.version) > (self.id.bump, self.version))
    }
}
