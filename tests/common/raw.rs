//! A raw WebSocket client over TCP: what a browser puts on the wire, and
//! what a hostile client could put there instead.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends an upgrade request with these extra header lines; returns the
/// stream and the response head.
pub async fn upgrade(addr: std::net::SocketAddr, extra: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if tcp.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (tcp, String::from_utf8(head).unwrap())
}

/// The key of RFC 6455 §1.3 (16 bytes in base64).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn handshake(cookie: &str) -> String {
    handshake_with_key(cookie, KEY)
}

pub fn handshake_with_key(cookie: &str, key: &str) -> String {
    format!(
        "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\
         Cookie: rc_session={cookie}\r\n"
    )
}

/// An open socket of the user with this session cookie (asserts 101).
pub async fn open(addr: std::net::SocketAddr, cookie: &str) -> TcpStream {
    let (tcp, head) = upgrade(addr, &handshake(cookie)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

const MASK: [u8; 4] = [1, 2, 3, 4];

/// A client frame; `mask: false` breaks the rules on purpose.
pub fn frame(fin: bool, op: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | op];
    let m = if mask { 0x80 } else { 0 };
    if payload.len() < 126 {
        out.push(m | payload.len() as u8);
    } else {
        out.push(m | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    if mask {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// The header of a masked client frame that claims `len` payload bytes
/// in the 64-bit length form, whatever `len` is; no payload follows.
pub fn header_claiming(fin: bool, op: u8, len: u64) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | op, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&MASK);
    out
}

/// The next server frame: (opcode, payload); `None` at EOF.
pub async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.ok()?;
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut l = [0u8; 2];
            tcp.read_exact(&mut l).await.ok()?;
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            tcp.read_exact(&mut l).await.ok()?;
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.ok()?;
    Some((head[0] & 0x0F, payload))
}

/// Reads frames until one with opcode `op`.
pub async fn until(tcp: &mut TcpStream, op: u8) -> Vec<u8> {
    loop {
        let (got, payload) =
            tokio::time::timeout(std::time::Duration::from_secs(10), read_frame(tcp))
                .await
                .expect("a frame within 10 s")
                .expect("the connection is open");
        if got == op {
            return payload;
        }
    }
}

/// Reads until the server's close frame; returns its code, and checks
/// that the server then ends the connection.
pub async fn close_code(tcp: &mut TcpStream) -> u16 {
    let payload = until(tcp, 0x8).await;
    let mut rest = Vec::new();
    let end = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut rest),
    )
    .await;
    assert!(
        matches!(end, Ok(Ok(_))),
        "the server closes the connection after its close frame"
    );
    u16::from_be_bytes([payload[0], payload[1]])
}
