//! What a client's close frame may say (RFC 6455 §5.5.1, §7.4).
//!
//! A close frame carries nothing, or a two-byte code and a UTF-8 reason.
//! A peer may only send the codes defined for use on the wire; the rest
//! are reserved (1004), only for APIs to report a missing code or a lost
//! connection (1005, 1006, 1015), or unassigned. A close that breaks these
//! rules fails the connection: 1002, or 1007 for a reason that is not
//! UTF-8. A valid code is echoed (`ws.rs`).

use super::wire::ReadError;

/// Whether a peer may send `code`: 1000–1003 and 1007–1011 (RFC 6455
/// §7.4.1), 1012–1014 (registered with IANA since), 3000–3999 (for
/// libraries and frameworks) and 4000–4999 (private use).
pub fn may_be_sent(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The code of a close frame's (unmasked) payload, `None` when it has
/// none.
pub fn parse(payload: &[u8]) -> Result<Option<u16>, ReadError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ReadError::Protocol("a close payload of one byte")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !may_be_sent(code) {
                return Err(ReadError::Protocol("a close code that may not be sent"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(ReadError::BadText);
            }
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_codes_for_the_wire_are_accepted() {
        let valid: Vec<u16> = (0..=u16::MAX).filter(|c| may_be_sent(*c)).collect();
        let expected: Vec<u16> = (1000..=1003)
            .chain(1007..=1014)
            .chain(3000..=4999)
            .collect();
        assert_eq!(valid, expected);
    }

    #[test]
    fn close_payloads_are_checked() {
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(&1000u16.to_be_bytes()), Ok(Some(1000)));
        assert_eq!(parse(b"\x0f\xa0caf\xc3\xa9"), Ok(Some(4000)));
        assert!(matches!(parse(b"\x03"), Err(ReadError::Protocol(_))));
        for code in [
            0u16,
            999,
            1004,
            1005,
            1006,
            1015,
            1016,
            2999,
            5000,
            u16::MAX,
        ] {
            assert!(
                matches!(parse(&code.to_be_bytes()), Err(ReadError::Protocol(_))),
                "{code}"
            );
        }
        assert_eq!(parse(b"\x03\xe8\xff"), Err(ReadError::BadText));
        // A reason cut inside a character is not UTF-8 either.
        assert_eq!(parse(b"\x03\xe8caf\xc3"), Err(ReadError::BadText));
    }
}
