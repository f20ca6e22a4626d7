//! The libp2p protocols a node runs.

use std::time::Duration;

use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
    ValidationMode,
};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::allow_block_list::{self, AllowedPeers};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, identify, identity, ping};
use patchmesh_core::wire::{
    ANNOUNCE_TOPIC, FETCH_PROTOCOL, FetchRequest, FetchResponse, MAX_FETCH_REQUEST_BYTES, MAX_FETCH_RESPONSE_BYTES,
    MAX_MESSAGE_BYTES, Message, SYNC_PROTOCOL,
};
use serde::{Deserialize, Serialize};

/// The largest gossip message, in bytes: gossipsub's default. An announcement is under
/// 5 KiB even with the maximum number of signatures.
pub(crate) const MAX_GOSSIP_BYTES: usize = 64 * 1024;

/// Gossipsub v1.1 peer scoring tuned for a topic that carries a few announcements a day.
///
/// The penalty that matters is P4, invalid messages: a peer that sends one announcement
/// the core rejects drops below the gossip threshold (-10), and a second one graylists it
/// (-80), because P4 grows with the square of the count. The count decays by 1% a second,
/// so it halves in about 70 s. Penalties for delivering too few messages (P3, P3b) are off:
/// honest peers deliver almost none. The IP colocation penalty is off because several
/// nodes of one office may share a public address behind NAT, and the demo runs every node
/// on 127.0.0.1.
fn peer_scoring() -> (PeerScoreParams, PeerScoreThresholds) {
    let topic = TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 10.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 10.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -20.0,
        invalid_message_deliveries_decay: 0.99,
        ..TopicScoreParams::default()
    };
    let mut params = PeerScoreParams { ip_colocation_factor_weight: 0.0, ..PeerScoreParams::default() };
    params.topics.insert(IdentTopic::new(ANNOUNCE_TOPIC).hash(), topic);
    (params, PeerScoreThresholds::default())
}

/// The empty response to a one-way [`Message`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Ack;

/// identify, ping, gossipsub for announcements, and two request-response protocols.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// With a membership list: denies every connection from a peer not on it, as soon
    /// as the handshake names the peer and before any protocol runs on the connection.
    /// It comes first, so no other behaviour handles a denied connection.
    pub(crate) members: Toggle<allow_block_list::Behaviour<AllowedPeers>>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) sync: request_response::cbor::Behaviour<Message, Ack>,
    pub(crate) fetch: request_response::cbor::Behaviour<FetchRequest, FetchResponse>,
}

/// Errors building the behaviour.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BehaviourError {
    /// gossipsub rejected its configuration.
    #[error("invalid gossipsub configuration: {0}")]
    Gossipsub(String),
}

impl Behaviour {
    /// Admits connections only from `peers`, from now on.
    pub(crate) fn admit_only(&mut self, peers: impl IntoIterator<Item = libp2p::PeerId>) {
        let mut members = allow_block_list::Behaviour::<AllowedPeers>::default();
        for peer in peers {
            members.allow_peer(peer);
        }
        self.members = Toggle::from(Some(members));
    }

    pub(crate) fn new(key: &identity::Keypair, request_timeout: Duration) -> Result<Self, BehaviourError> {
        let identify = identify::Behaviour::new(identify::Config::new("/patchmesh/id/1".into(), key.public()));

        let gossip_config = gossipsub::ConfigBuilder::default()
            // Nothing is forwarded until the core has checked the signatures.
            .validate_messages()
            .validation_mode(ValidationMode::Strict)
            .max_transmit_size(MAX_GOSSIP_BYTES)
            // Identical announcements from different publishers' nodes are one message.
            .message_id_fn(|message: &gossipsub::Message| MessageId::from(blake3::hash(&message.data).as_bytes().to_vec()))
            .build()
            .map_err(|error| BehaviourError::Gossipsub(error.to_string()))?;
        let mut gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)
            .map_err(|error| BehaviourError::Gossipsub(error.to_string()))?;
        let (params, thresholds) = peer_scoring();
        gossipsub.with_peer_score(params, thresholds).map_err(BehaviourError::Gossipsub)?;

        let sync_codec = request_response::cbor::codec::Codec::<Message, Ack>::default()
            .set_request_size_maximum(MAX_MESSAGE_BYTES)
            .set_response_size_maximum(1024);
        let sync = request_response::cbor::Behaviour::with_codec(
            sync_codec,
            [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(request_timeout),
        );
        let fetch_codec = request_response::cbor::codec::Codec::<FetchRequest, FetchResponse>::default()
            .set_request_size_maximum(MAX_FETCH_REQUEST_BYTES)
            .set_response_size_maximum(MAX_FETCH_RESPONSE_BYTES);
        let fetch = request_response::cbor::Behaviour::with_codec(
            fetch_codec,
            [(StreamProtocol::new(FETCH_PROTOCOL), ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(request_timeout)
                .with_max_concurrent_streams(256),
        );
        Ok(Behaviour { members: Toggle::from(None), identify, ping: ping::Behaviour::default(), gossipsub, sync, fetch })
    }
}
