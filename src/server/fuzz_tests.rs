//! Property tests: whatever bytes a client sends, decoding and checking
//! them never panics, and every refusal is a clear error.

use super::{hub, store, ws};
use crate::protocol::{ClientFrame, ServerFrame};
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("message"),
            Just("resume"),
            Just("read"),
            Just("typing"),
            Just("edit"),
            Just("delete"),
            Just("roomId"),
            Just("data")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("data".to_string()),
                    Just("roomId".to_string()),
                    Just("message".to_string()),
                    Just("nonce".to_string()),
                    Just("rooms".to_string()),
                    Just("id".to_string()),
                    ".{0,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_text_frame_decodes_or_is_explained(text in ".{0,300}") {
        if serde_json::from_str::<ClientFrame>(&text).is_err() {
            let e = ws::explain_bad_frame(&text);
            prop_assert!(!e.code.is_empty() && !e.message.is_empty());
        }
    }

    #[test]
    fn any_json_frame_decodes_or_is_explained(value in json_value()) {
        let text = value.to_string();
        if serde_json::from_str::<ClientFrame>(&text).is_err() {
            let e = ws::explain_bad_frame(&text);
            prop_assert!(!e.code.is_empty());
        }
    }

    #[test]
    fn any_pubsub_payload_is_routed_or_ignored(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = hub::decode_for_tests(&bytes);
    }

    #[test]
    fn cleaning_leaves_no_control_characters(text in "\\PC{0,50}[\\x00-\\x1f\\x7f]{0,5}\\PC{0,50}") {
        let clean = store::clean_message(&text);
        prop_assert!(clean.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'));
        prop_assert_eq!(store::clean_message(&clean), clean.clone());
    }

    #[test]
    fn request_parameters_never_panic(raw in ".{0,40}") {
        let _ = store::parse_limit(Some(&raw));
        let _ = store::parse_cursor(Some(&raw));
        let _ = store::validate_username(&raw);
        let _ = super::passwords::validate_password(&raw);
    }

    #[test]
    fn frames_round_trip(room in "[0-9:]{1,8}", text in ".{0,50}", nonce in proptest::option::of("[a-z0-9-]{1,20}")) {
        let frame = ClientFrame::Message(crate::protocol::SendMessage { room_id: room, message: text, nonce });
        let back: ClientFrame = serde_json::from_str(&serde_json::to_string(&frame).unwrap()).unwrap();
        prop_assert_eq!(back, frame);
    }
}

#[test]
fn server_frames_parse_back() {
    let f = ServerFrame::Resumed(Default::default());
    let text = serde_json::to_string(&f).unwrap();
    assert_eq!(serde_json::from_str::<ServerFrame>(&text).unwrap(), f);
}

/// Deeply nested JSON (a stack-exhaustion attempt) is refused with an
/// error by serde_json's recursion limit, in the frame decoder, the error
/// explainer and the pub/sub decoder alike.
#[test]
fn deeply_nested_frames_are_refused_not_crashed() {
    for depth in [200, 5_000, 100_000] {
        let nested = format!(
            r#"{{"type":"message","data":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(serde_json::from_str::<ClientFrame>(&nested).is_err());
        let e = ws::explain_bad_frame(&nested);
        assert_eq!(e.code, crate::protocol::codes::MALFORMED);
        assert!(!hub::decode_for_tests(nested.as_bytes()));
        let objects = "{\"a\":".repeat(depth) + &"}".repeat(depth);
        assert_eq!(
            ws::explain_bad_frame(&objects).code,
            crate::protocol::codes::MALFORMED
        );
    }
}
