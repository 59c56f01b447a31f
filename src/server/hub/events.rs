//! Published events as the hub sees them: decoded once, rendered and
//! framed once, with who gets them.

use super::Shards;
use crate::protocol::{private_room_members, Envelope, ServerFrame, UserId, GENERAL_ROOM_ID};
use crate::server::session::SessionId;
use crate::server::wire;
use crate::server::writers::Targets;
use bytes::Bytes;
use std::collections::HashMap;

/// Tells the cluster's shard subscriptions about an event.
pub(super) fn follow(
    shards: &mut Shards,
    event: &Event,
    local: &HashMap<UserId, Vec<(u64, SessionId)>>,
) {
    match &event.about {
        About::Message { room, id } => shards.live(room, id),
        About::NewRoom { room, after } => {
            if let Targets::Users(users) = &event.targets {
                let here: Vec<UserId> = users
                    .iter()
                    .copied()
                    .filter(|u| local.contains_key(u))
                    .collect();
                shards.room_shown(room, &here, after.as_deref());
            }
        }
        About::Other => {}
    }
}

#[cfg(test)]
pub(crate) fn decode_for_tests(payload: &[u8]) -> bool {
    decode(payload).is_some()
}

/// The members of a room: everyone for General, the two members of a
/// private room; `None` for an id that is neither.
pub(super) fn room_targets(room: &str) -> Option<Targets> {
    if room == GENERAL_ROOM_ID {
        return Some(Targets::Everyone);
    }
    private_room_members(room).map(|(a, b)| Targets::Users(vec![a, b]))
}

/// A published event, decoded once.
pub(super) struct Event {
    /// The client frame, rendered and framed once.
    pub frame: Bytes,
    pub targets: Targets,
    /// What the sharded subscriptions and the catch-up need to know of it.
    pub about: About,
}

pub(super) enum About {
    /// A new message in a room.
    Message {
        room: String,
        id: String,
    },
    /// `show.room`: a room new to its targets, shown with this newest message.
    NewRoom {
        room: String,
        after: Option<String>,
    },
    Other,
}

/// Parses a published envelope once and renders the client frame once.
pub(super) fn decode(payload: &[u8]) -> Option<Event> {
    let envelope: Envelope = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(error = %e, "ignoring an unknown pub/sub payload");
            return None;
        }
    };
    let targets = if !envelope.to.is_empty() {
        Targets::Users(envelope.to)
    } else {
        match &envelope.frame {
            ServerFrame::Message(m) | ServerFrame::MessageUpdated(m) => room_targets(&m.room_id)?,
            ServerFrame::Typing(t) => room_targets(&t.room_id)?,
            ServerFrame::UserConnected(_) | ServerFrame::UserDisconnected(_) => Targets::Everyone,
            // Read marks and the rest only go to the users named in `to`.
            ServerFrame::Read(_)
            | ServerFrame::Error(_)
            | ServerFrame::ShowRoom(_)
            | ServerFrame::Resumed(_) => return None,
        }
    };
    let about = match &envelope.frame {
        ServerFrame::Message(m) => About::Message {
            room: m.room_id.clone(),
            id: m.id.clone(),
        },
        ServerFrame::ShowRoom(r) => About::NewRoom {
            room: r.id.clone(),
            after: r.last_message.as_ref().map(|m| m.id.clone()),
        },
        _ => About::Other,
    };
    let text = serde_json::to_string(&envelope.frame).ok()?;
    Some(Event {
        frame: wire::text_frame(&text),
        targets,
        about,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_room() {
        let general = br#"{"serverId":"a","type":"message","data":{"id":"1-0","roomId":"0","from":1,"date":1,"dateMs":1000,"message":"hi"}}"#;
        let Event { frame, targets, .. } = decode(general).unwrap();
        assert_eq!(targets, Targets::Everyone);
        let json = std::str::from_utf8(wire::payload_of(&frame)).unwrap();
        assert!(json.starts_with(r#"{"type":"message","data":{"id":"1-0""#));
        assert!(!json.contains("serverId"));

        let private = br#"{"serverId":"a","type":"message","data":{"id":"1-0","roomId":"2:5","from":2,"date":1,"message":"hi"}}"#;
        assert_eq!(decode(private).unwrap().targets, Targets::Users(vec![2, 5]));

        let to =
            br#"{"serverId":"a","type":"show.room","data":{"id":"2:5","name":"Joe"},"to":[5]}"#;
        let shown = decode(to).unwrap();
        assert_eq!(shown.targets, Targets::Users(vec![5]));
        assert!(matches!(shown.about, About::NewRoom { room, after: None } if room == "2:5"));

        assert!(decode(b"not json").is_none());
        assert!(decode(br#"{"serverId":"a","type":"nope","data":{}}"#).is_none());
    }
}
