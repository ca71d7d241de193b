//! kbgp's command API: gRPC (proto/kbgp.proto) on a local Unix socket.
//!
//! [`serve`] exposes a [`speaker::SpeakerHandle`]; [`Client`] is what the
//! CLI uses. The server converts the speaker's types to the proto's; the
//! proto is the stable contract, JSON output included.

use std::path::{Path, PathBuf};

use bgp_wire::attr::community_string;
use bgp_wire::Family;
use speaker::{PeerStatus, RibEntry, RibQuery, SpeakerHandle};
use tokio::net::{UnixListener, UnixStream};
use tonic::{Request, Response, Status};

pub mod pb {
    tonic::include_proto!("kbgp.v1");
}

use pb::kbgp_client::KbgpClient;
use pb::kbgp_server::{Kbgp, KbgpServer};

/// Errors a client sees.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("kbgp daemon is not running (no API socket at {0})")]
    NotRunning(PathBuf),
    #[error("cannot reach the kbgp daemon at {path}: {msg}")]
    Connect { path: PathBuf, msg: String },
    #[error("{0}")]
    Rpc(String),
}

fn counters(c: &speaker::status::Counters) -> pb::Counters {
    pb::Counters {
        open: c.open,
        update: c.update,
        notification: c.notification,
        keepalive: c.keepalive,
        route_refresh: c.route_refresh,
        total: c.total(),
    }
}

pub fn peer_to_pb(p: &PeerStatus) -> pb::Peer {
    let n = p.negotiated.as_ref();
    let fams = |v: &[Family]| v.iter().map(|f| f.name()).collect::<Vec<_>>();
    pb::Peer {
        address: p.key.clone(),
        peer_type: p.peer_type.clone(),
        state: p.state.name().to_string(),
        since: p.since,
        info: p.info.clone(),
        remote_as: p.remote_as.clone(),
        port: p.port as u32,
        source: p.source.clone(),
        last_error: p.last_error.clone().unwrap_or_default(),
        peer_as: n.map(|n| n.peer_as).unwrap_or(0),
        peer_router_id: n.map(|n| n.peer_id.to_string()).unwrap_or_default(),
        hold_time: n.map(|n| n.hold_time as u32).unwrap_or(0),
        keepalive: n.map(|n| n.keepalive as u32).unwrap_or(0),
        families: n.map(|n| fams(&n.families)).unwrap_or_default(),
        peer_capabilities: n.map(|n| n.peer_capabilities.clone()).unwrap_or_default(),
        local_address: p.local_addr.map(|a| a.to_string()).unwrap_or_default(),
        remote_address: p.remote_addr.map(|a| a.to_string()).unwrap_or_default(),
        received: Some(counters(&p.received)),
        sent: Some(counters(&p.sent)),
        prefixes_received: p.prefixes_received,
        prefixes_advertised: p.prefixes_advertised,
        held_back: p.held_back,
        stalls: p.stalls,
        established_count: p.established_count,
        established_at: p.established_at.unwrap_or(0),
        four_octet_as: n.is_some_and(|n| n.four_octet_as),
        route_refresh: n.is_some_and(|n| n.route_refresh),
        extended_next_hop: n.is_some_and(|n| n.extended_next_hop),
        extended_messages: n.is_some_and(|n| n.extended_messages),
        add_path_rx: n.map(|n| fams(&n.add_path_rx)).unwrap_or_default(),
        add_path_tx: n.map(|n| fams(&n.add_path_tx)).unwrap_or_default(),
    }
}

pub fn route_to_pb(r: &RibEntry) -> pb::Route {
    let a = &r.attrs;
    pb::Route {
        prefix: r.prefix.to_string(),
        path_id: r.path_id,
        direction: r.direction.to_string(),
        peer: r.peer.clone(),
        next_hop: r.next_hop.clone(),
        origin: a.origin.map(|o| o.code().to_string()).unwrap_or_default(),
        as_path: a
            .as_path
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        med: a.med,
        local_pref: a.local_pref,
        communities: a.communities.iter().map(|c| community_string(*c)).collect(),
        large_communities: a
            .large_communities()
            .iter()
            .map(|c| c.to_string())
            .collect(),
        ext_communities: a
            .ext_communities()
            .iter()
            .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .collect(),
        originator_id: a.originator_id().map(|i| i.to_string()).unwrap_or_default(),
        cluster_list: a.cluster_list().iter().map(|i| i.to_string()).collect(),
        atomic_aggregate: a.atomic_aggregate(),
        aggregator: a
            .aggregator()
            .map(|(asn, id)| format!("{asn} {id}"))
            .unwrap_or_default(),
        since: r.since,
        best: r.best,
        multipath: r.multipath,
        reason: r.reason.clone(),
    }
}

struct Svc {
    speaker: SpeakerHandle,
}

fn unavailable(_: speaker::Stopped) -> Status {
    Status::unavailable("the speaker has stopped")
}

#[tonic::async_trait]
impl Kbgp for Svc {
    async fn get_status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let g = self.speaker.global().await.map_err(unavailable)?;
        let peers = self.speaker.status().await.map_err(unavailable)?;
        Ok(Response::new(pb::StatusReply {
            node: g.as_ref().map(|g| g.node.clone()).unwrap_or_default(),
            asn: g.as_ref().map(|g| g.asn).unwrap_or(0),
            router_id: g
                .as_ref()
                .map(|g| g.router_id.to_string())
                .unwrap_or_default(),
            listen_port: g.as_ref().map(|g| g.listen_port as u32).unwrap_or(0),
            peers: peers.iter().map(peer_to_pb).collect(),
        }))
    }

    async fn list_neighbors(
        &self,
        req: Request<pb::NeighborsRequest>,
    ) -> Result<Response<pb::NeighborsReply>, Status> {
        let want = req.into_inner().peer;
        let peers = self.speaker.status().await.map_err(unavailable)?;
        let peers: Vec<pb::Peer> = peers
            .iter()
            .filter(|p| want.is_empty() || p.key == want)
            .map(peer_to_pb)
            .collect();
        if !want.is_empty() && peers.is_empty() {
            return Err(Status::not_found(format!("no peer {want}")));
        }
        Ok(Response::new(pb::NeighborsReply { peers }))
    }

    async fn list_rib(
        &self,
        req: Request<pb::RibRequest>,
    ) -> Result<Response<pb::RibReply>, Status> {
        let r = req.into_inner();
        let family = match r.family.as_str() {
            "" => None,
            "ipv4" | "ipv4-unicast" => Some(Family::IPV4_UNICAST),
            "ipv6" | "ipv6-unicast" => Some(Family::IPV6_UNICAST),
            f => {
                return Err(Status::invalid_argument(format!(
                    "unknown family {f:?}: use ipv4 or ipv6"
                )))
            }
        };
        let prefix = if r.prefix.is_empty() {
            None
        } else {
            let p: ipnet::IpNet = match r.prefix.parse() {
                Ok(p) => p,
                Err(_) => match r.prefix.parse::<std::net::IpAddr>() {
                    Ok(a) => ipnet::IpNet::from(a),
                    Err(_) => {
                        return Err(Status::invalid_argument(format!(
                            "{:?} is not a prefix",
                            r.prefix
                        )))
                    }
                },
            };
            Some(p)
        };
        let q = RibQuery {
            family,
            prefix,
            peer: (!r.peer.is_empty()).then_some(r.peer),
            rejected: r.rejected,
        };
        let routes = self.speaker.rib(q).await.map_err(unavailable)?;
        Ok(Response::new(pb::RibReply {
            routes: routes.iter().map(route_to_pb).collect(),
        }))
    }
}

/// Serve the API on a Unix socket until the future is dropped.
pub async fn serve(path: &Path, speaker: SpeakerHandle) -> std::io::Result<()> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    tonic::transport::Server::builder()
        .add_service(KbgpServer::new(Svc { speaker }))
        .serve_with_incoming(incoming)
        .await
        .map_err(std::io::Error::other)
}

/// A client of a running daemon.
pub struct Client {
    inner: KbgpClient<tonic::transport::Channel>,
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        if !path.exists() {
            return Err(ClientError::NotRunning(path.to_path_buf()));
        }
        let p = path.to_path_buf();
        let channel = tonic::transport::Endpoint::try_from("http://[::1]:50051")
            .map_err(|e| ClientError::Rpc(e.to_string()))?
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let p = p.clone();
                async move {
                    UnixStream::connect(p)
                        .await
                        .map(hyper_util::rt::TokioIo::new)
                }
            }))
            .await
            .map_err(|e| ClientError::Connect {
                path: path.to_path_buf(),
                msg: format!("{e}"),
            })?;
        Ok(Client {
            inner: KbgpClient::new(channel),
        })
    }

    fn rpc(s: Status) -> ClientError {
        ClientError::Rpc(s.message().to_string())
    }

    pub async fn status(&mut self) -> Result<pb::StatusReply, ClientError> {
        self.inner
            .get_status(pb::StatusRequest {})
            .await
            .map(Response::into_inner)
            .map_err(Self::rpc)
    }

    pub async fn neighbors(
        &mut self,
        peer: Option<String>,
    ) -> Result<pb::NeighborsReply, ClientError> {
        self.inner
            .list_neighbors(pb::NeighborsRequest {
                peer: peer.unwrap_or_default(),
            })
            .await
            .map(Response::into_inner)
            .map_err(Self::rpc)
    }

    pub async fn rib(&mut self, req: pb::RibRequest) -> Result<pb::RibReply, ClientError> {
        self.inner
            .list_rib(req)
            .await
            .map(Response::into_inner)
            .map_err(Self::rpc)
    }
}
