//! kbgp's configuration sources and the one model they map onto.
//!
//! Data flow: documents (YAML files in a directory, or the Kubernetes API
//! watched by [`cluster`]) → [`resources`] (typed `v1` Node/Service/Secret, Calico
//! `projectcalico.org/v3` and kbgp's `kbgp.io/v1alpha1` BGPConfiguration and
//! BGPPeer) → [`ClusterState`] (every resource, by kind) → [`model::desired`]
//! (what *this node* should run: global settings, peers, originated prefixes).
//! The speaker's reconciler diffs successive [`model::Desired`] values.

pub mod cluster;
pub mod crd;
pub mod files;
pub mod model;
pub mod resources;
pub mod selector;

pub use files::{fingerprint, load_dir, load_str, Loaded};
pub use model::{desired, Desired, GlobalCfg, Origination, PeerCfg, PeerTarget, PeerType};
pub use resources::ClusterState;

/// A configuration error, naming where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}, document {doc}: {msg}")]
    Document {
        file: String,
        doc: usize,
        msg: String,
    },
    #[error("{kind} {name}: {msg}")]
    Invalid {
        kind: String,
        name: String,
        msg: String,
    },
}
