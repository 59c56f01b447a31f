//! The WebSocket wire format (RFC 6455), server side, and the TCP
//! connection type that lets the hub write to a socket directly.
//!
//! Why not tungstenite: a server→client frame is never masked, so the
//! complete frame (header + JSON) is the same for every recipient. The hub
//! encodes it once ([`encode_frame`]) and writes the same bytes to every
//! socket with one `try_write` each, from its own task (`outbox.rs`): no
//! task wake-up, no re-framing and no write buffer per socket. Reading
//! stays per socket ([`FrameReader`]): client frames are masked, small and
//! rare.
//!
//! [`Conn`] is what axum serves: a `TcpStream` behind an `Arc`, so that
//! after the upgrade the WebSocket handler can keep a handle to the same
//! stream ([`Peer`], the connect info) while hyper's `Upgraded` still owns
//! the read side, with any bytes it read ahead.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};

/// Opcodes of RFC 6455 §5.2.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// A complete, unmasked server frame (FIN set): header, then `payload`.
pub fn encode_frame(op: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = BytesMut::with_capacity(len + 10);
    out.extend_from_slice(&[0x80 | op]);
    if len < 126 {
        out.extend_from_slice(&[len as u8]);
    } else if len <= u16::MAX as usize {
        out.extend_from_slice(&[126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out.freeze()
}

/// A text frame carrying `json`.
pub fn text_frame(json: &str) -> Bytes {
    encode_frame(opcode::TEXT, json.as_bytes())
}

/// A close frame with `code` and `reason` (≤ 123 bytes).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    encode_frame(opcode::CLOSE, &payload)
}

/// The payload of a frame made by [`encode_frame`].
pub fn payload_of(frame: &[u8]) -> &[u8] {
    let header = match frame.get(1).map(|b| b & 0x7F) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return &[],
    };
    frame.get(header..).unwrap_or(&[])
}

/// Whether a `Sec-WebSocket-Key` is what RFC 6455 §4.1 asks for: 16
/// bytes, base64-encoded (24 characters with the padding).
pub fn key_is_valid(key: &[u8]) -> bool {
    use base64::Engine as _;
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|bytes| bytes.len() == 16)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A message (or control frame) read from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary,
    Ping(Bytes),
    Pong,
    /// The peer's close code, if it sent one.
    Close(Option<u16>),
}

/// Why reading stopped; each maps to a close code.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The connection ended (EOF or an I/O error): nothing to send.
    Gone,
    /// A message longer than the limit (1009).
    TooBig,
    /// Not valid UTF-8 in a text message (1007).
    BadText,
    /// A framing rule broken (1002).
    Protocol(&'static str),
}

/// What a buffered socket's read buffer shrinks back to after a large
/// message, so that 10,000 idle sockets do not each keep one; also the
/// most a read takes beyond what the current frame needs.
pub(crate) const IDLE_BUFFER: usize = 512;

/// The longest frame header: 2 bytes, a 64-bit length and the mask.
pub const MAX_HEADER: usize = 14;

const NO_MESSAGE: &str = "continuation without a message";

/// Reads client frames: unmasks them, joins fragments and enforces the
/// size limit before a large payload is even read.
///
/// Its memory is bounded by the limit, whatever the peer claims: the read
/// buffer holds at most one frame (limit + [`MAX_HEADER`]) or
/// [`IDLE_BUFFER`] bytes, and the message being joined at most the limit.
pub struct FrameReader {
    buf: BytesMut,
    /// A fragmented message being joined: (opcode, bytes so far).
    partial: Option<(u8, Vec<u8>)>,
    max_message: usize,
}

impl FrameReader {
    pub fn new(max_message: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            partial: None,
            max_message,
        }
    }

    /// The next message. Cancel-safe: bytes read stay in the buffer.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<Incoming, ReadError> {
        loop {
            match self.parse()? {
                Parsed::Message(m) => {
                    if self.buf.is_empty() && self.buf.capacity() > 8 * IDLE_BUFFER {
                        self.buf = BytesMut::new();
                    }
                    return Ok(m);
                }
                Parsed::Fragment => continue,
                Parsed::Need(n) => {
                    // What the frame needs, or a small read's worth: never
                    // more, so that the buffer holds at most one frame.
                    let room = n.max(IDLE_BUFFER.saturating_sub(self.buf.len()));
                    self.make_room(room);
                    match io.read_buf(&mut (&mut self.buf).limit(room)).await {
                        Ok(0) | Err(_) => return Err(ReadError::Gone),
                        Ok(_) => {}
                    }
                }
            }
        }
    }

    /// Room for `room` more bytes: in place if the buffer has it, else in
    /// a buffer of exactly the size needed (`reserve` could double it).
    fn make_room(&mut self, room: usize) {
        if !self.buf.try_reclaim(room) {
            let mut bigger = BytesMut::with_capacity(self.buf.len() + room);
            bigger.extend_from_slice(&self.buf);
            self.buf = bigger;
        }
    }

    /// Takes one frame off the buffer if it is all there. Everything that
    /// can be refused from the header is, before any payload is awaited.
    fn parse(&mut self) -> Result<Parsed, ReadError> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(Parsed::Need(2 - b.len()));
        }
        let fin = b[0] & 0x80 != 0;
        if b[0] & 0x70 != 0 {
            return Err(ReadError::Protocol("reserved bits set"));
        }
        let op = b[0] & 0x0F;
        if !matches!(
            op,
            opcode::CONTINUATION
                | opcode::TEXT
                | opcode::BINARY
                | opcode::CLOSE
                | opcode::PING
                | opcode::PONG
        ) {
            return Err(ReadError::Protocol("unknown opcode"));
        }
        if b[1] & 0x80 == 0 {
            return Err(ReadError::Protocol("client frames must be masked"));
        }
        let (len, header) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as u64, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")),
                10,
            ),
            126 => return Ok(Parsed::Need(4 - b.len())),
            127 => return Ok(Parsed::Need(10 - b.len())),
            n => (n as u64, 2),
        };
        let control = op >= opcode::CLOSE;
        if control && (!fin || len > 125) {
            return Err(ReadError::Protocol("bad control frame"));
        }
        // Against what is left of the limit: no sum that could wrap around.
        let joined = self.partial.as_ref().map_or(0, |(_, p)| p.len());
        if !control && len > self.max_message.saturating_sub(joined) as u64 {
            return Err(ReadError::TooBig);
        }
        match (op, self.partial.is_some()) {
            (opcode::CONTINUATION, false) => return Err(ReadError::Protocol(NO_MESSAGE)),
            (opcode::TEXT | opcode::BINARY, true) => {
                return Err(ReadError::Protocol("a new message inside a fragmented one"))
            }
            _ => {}
        }
        // At most the limit (or 125) now.
        let len = len as usize;
        let total = header + 4 + len;
        if b.len() < total {
            return Ok(Parsed::Need(total - b.len()));
        }
        let mask: [u8; 4] = b[header..header + 4].try_into().expect("4 bytes");
        self.buf.advance(header + 4);
        let mut payload = self.buf.split_to(len);
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i & 3];
        }
        match op {
            // A copy, so that the read buffer is not kept alive by it.
            opcode::PING => Ok(Parsed::Message(Incoming::Ping(Bytes::copy_from_slice(
                &payload,
            )))),
            opcode::PONG => Ok(Parsed::Message(Incoming::Pong)),
            opcode::CLOSE => super::close_payload::parse(&payload)
                .map(|code| Parsed::Message(Incoming::Close(code))),
            opcode::TEXT | opcode::BINARY => {
                if fin {
                    return finish(op, payload.to_vec()).map(Parsed::Message);
                }
                self.partial = Some((op, payload.to_vec()));
                Ok(Parsed::Fragment)
            }
            _ => {
                let Some((first, mut joined)) = self.partial.take() else {
                    return Err(ReadError::Protocol(NO_MESSAGE));
                };
                // Exactly: the joined message never takes more than the limit.
                joined.reserve_exact(payload.len());
                joined.extend_from_slice(&payload);
                if fin {
                    return finish(first, joined).map(Parsed::Message);
                }
                self.partial = Some((first, joined));
                Ok(Parsed::Fragment)
            }
        }
    }

    /// Bytes read and not yet taken off as frames.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of the fragmented message being joined.
    #[cfg(test)]
    pub(crate) fn joined(&self) -> usize {
        self.partial.as_ref().map_or(0, |(_, p)| p.len())
    }
}

enum Parsed {
    Message(Incoming),
    /// A fragment was added to a message that is not complete yet.
    Fragment,
    /// At least this many more bytes are needed.
    Need(usize),
}

fn finish(op: u8, bytes: Vec<u8>) -> Result<Incoming, ReadError> {
    if op == opcode::BINARY {
        return Ok(Incoming::Binary);
    }
    String::from_utf8(bytes)
        .map(Incoming::Text)
        .map_err(|_| ReadError::BadText)
}

/// The listener axum serves: accepted streams become [`Conn`]s with
/// `TCP_NODELAY` set.
pub struct ChatListener(pub TcpListener);

impl axum::serve::Listener for ChatListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    // TCP_NODELAY: responses and WebSocket frames go out as
                    // written. With Nagle's algorithm a small write behind
                    // an unacknowledged one waits for the peer's delayed
                    // ACK (~40 ms on Linux): measured as a 40-48 ms p99 on
                    // `GET /login` over keep-alive connections.
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                    return (Conn(Arc::new(stream)), addr);
                }
                Err(e) => {
                    // Out of file descriptors, most likely: let others
                    // close before trying again instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// An accepted TCP stream, shareable: hyper reads and writes it through
/// this type, the WebSocket handler keeps a second handle ([`Peer`]).
pub struct Conn(Arc<TcpStream>);

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(shutdown_write(&self.0))
    }
}

/// Sends FIN after what is already written (the read side stays open).
pub fn shutdown_write(stream: &TcpStream) -> io::Result<()> {
    match socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write) {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        other => other,
    }
}

/// The connect info of every request: the peer's address, and a handle to
/// its TCP stream for a WebSocket upgrade.
#[derive(Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub stream: Arc<TcpStream>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, ChatListener>>
    for Peer
{
    fn connect_info(incoming: axum::serve::IncomingStream<'_, ChatListener>) -> Self {
        Peer {
            addr: *incoming.remote_addr(),
            stream: incoming.io().0.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::wire_props::{client_frame, frame_bytes, LenForm};

    /// What a reader with limit `max` makes of `bytes` (read in chunks of
    /// at most 4 KiB), up to its first error.
    fn read_all(bytes: Vec<u8>, max: usize) -> Vec<Result<Incoming, ReadError>> {
        crate::server::wire_props::read_all(bytes, vec![4096], max)
    }

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn server_frames_have_the_shortest_header() {
        assert_eq!(&text_frame("hi")[..], b"\x81\x02hi");
        let medium = text_frame(&"x".repeat(300));
        assert_eq!(&medium[..4], &[0x81, 126, 1, 44]);
        assert_eq!(payload_of(&medium).len(), 300);
        let large = text_frame(&"x".repeat(70_000));
        assert_eq!(large[1], 127);
        assert_eq!(payload_of(&large).len(), 70_000);
        assert_eq!(&close_frame(1013, "slow")[..], b"\x88\x06\x03\xf5slow");
    }

    #[test]
    fn reads_masked_fragmented_and_control_frames() {
        let mut bytes = client_frame(true, opcode::TEXT, b"{\"a\":1}");
        bytes.extend(client_frame(false, opcode::TEXT, "h\u{e9}".as_bytes()));
        bytes.extend(client_frame(true, opcode::PING, b"p"));
        bytes.extend(client_frame(true, opcode::CONTINUATION, b"llo"));
        bytes.extend(client_frame(true, opcode::TEXT, &vec![b'y'; 300]));
        bytes.extend(client_frame(true, opcode::BINARY, b"\x00"));
        bytes.extend(client_frame(true, opcode::PONG, b""));
        bytes.extend(client_frame(true, opcode::CLOSE, &1000u16.to_be_bytes()));
        let got = read_all(bytes, 1000);
        assert_eq!(
            got,
            vec![
                Ok(Incoming::Text("{\"a\":1}".into())),
                Ok(Incoming::Ping(Bytes::from_static(b"p"))),
                Ok(Incoming::Text("h\u{e9}llo".into())),
                Ok(Incoming::Text("y".repeat(300))),
                Ok(Incoming::Binary),
                Ok(Incoming::Pong),
                Ok(Incoming::Close(Some(1000))),
                Err(ReadError::Gone),
            ]
        );
    }

    #[test]
    fn refuses_what_breaks_the_rules() {
        // Too big, declared in the header: refused before the payload.
        let big = client_frame(true, opcode::TEXT, &vec![b'x'; 70_000]);
        assert_eq!(
            read_all(big[..20].to_vec(), 16_384),
            vec![Err(ReadError::TooBig)]
        );
        // Too big across fragments.
        let mut parts = client_frame(false, opcode::TEXT, &vec![b'x'; 10_000]);
        parts.extend(client_frame(
            true,
            opcode::CONTINUATION,
            &vec![b'x'; 10_000],
        ));
        assert_eq!(read_all(parts, 16_384), vec![Err(ReadError::TooBig)]);
        // Unmasked.
        assert!(matches!(
            read_all(b"\x81\x02hi".to_vec(), 100)[..],
            [Err(ReadError::Protocol(_))]
        ));
        // Invalid UTF-8.
        let bad = client_frame(true, opcode::TEXT, b"\xff\xfe");
        assert_eq!(read_all(bad, 100), vec![Err(ReadError::BadText)]);
        // A continuation out of nowhere, a fragmented ping, reserved bits.
        for frame in [
            client_frame(true, opcode::CONTINUATION, b"x"),
            client_frame(false, opcode::PING, b"x"),
            {
                let mut f = client_frame(true, opcode::TEXT, b"x");
                f[0] |= 0x40;
                f
            },
            client_frame(true, 0x3, b"x"),
        ] {
            assert!(matches!(
                read_all(frame, 100)[..],
                [Err(ReadError::Protocol(_))]
            ));
        }
    }

    #[test]
    fn refuses_from_the_header_what_the_header_shows() {
        // A length near 2^64 after a fragment: its sum with the 4 bytes
        // joined so far must not wrap around.
        for claimed in [u64::MAX - 3, u64::MAX, 1 << 63, 97] {
            let mut bytes = client_frame(false, opcode::TEXT, b"{\"ty");
            let huge = frame_bytes(0x80, true, claimed, LenForm::Bits64, &[]);
            bytes.extend(huge);
            assert_eq!(
                read_all(bytes, 100),
                vec![Err(ReadError::TooBig)],
                "{claimed}"
            );
        }
        // Exactly what is left of the limit is fine.
        let mut bytes = client_frame(false, opcode::TEXT, b"{\"ty");
        bytes.extend(client_frame(true, opcode::CONTINUATION, &[b' '; 96]));
        let text = format!("{{\"ty{}", " ".repeat(96));
        assert_eq!(
            read_all(bytes, 100),
            vec![Ok(Incoming::Text(text)), Err(ReadError::Gone)]
        );
        // An unknown opcode or a continuation of nothing, with no payload
        // sent: refused at once, not waited for.
        for first in [0x83, 0x80] {
            let header = frame_bytes(first, true, 1000, LenForm::Bits16, &[]);
            assert!(matches!(
                read_all(header, 2000)[..],
                [Err(ReadError::Protocol(_))]
            ));
        }
    }

    #[test]
    fn a_key_is_16_bytes_in_base64() {
        assert!(key_is_valid(b"dGhlIHNhbXBsZSBub25jZQ=="));
        for key in [
            &b"aGVsbG8="[..],
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25jZSE=",
            b"dGhlIHNhbXBsZSBub25jZR==",
            b"!!!!!!!!!!!!!!!!!!!!!!==",
            b"",
        ] {
            assert!(!key_is_valid(key), "{key:?}");
        }
    }
}
