//! The client's address, and the key its rate limits are counted under.
//!
//! Behind a reverse proxy the TCP peer is the proxy, and the client is in
//! `X-Forwarded-For`. A proxy appends the address it saw to whatever the
//! request brought, so everything left of the entries trusted proxies
//! appended was written by the client and may be anything. The client is
//! therefore the right-most entry that no trusted proxy wrote, never the
//! left-most. `TRUST_PROXY` says which proxies are trusted:
//!
//! - unset, `false`, `0`: none; the TCP peer is the client and the header is
//!   ignored (a client could write it);
//! - `true` (= `1`) or a number N: the N hops in front of the server are
//!   trusted proxies (`true`: one nginx). The client is the N-th entry from
//!   the right. Only right if the server cannot be reached but through them;
//! - a comma list of proxy addresses or CIDRs (`10.0.0.0/8, 2001:db8::/32`):
//!   a peer that is not in the list is the client; otherwise entries are
//!   read from the right while they are listed proxies, and the first one
//!   that is not is the client.
//!
//! An entry that is no address (`unknown`, garbage) stops the walk at the
//! last trusted hop's view, so a client can never choose the result.
//! Only `X-Forwarded-For` is read (the `Forwarded` header is not).

use super::config::ConfigError;
use http::HeaderMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// More trusted hops than this is a typo, not a deployment.
pub const MAX_HOPS: usize = 16;

/// Which proxies in front of the server are trusted (`TRUST_PROXY`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TrustProxy {
    /// The TCP peer is the client.
    #[default]
    None,
    /// This many hops in front of the server are trusted proxies.
    Hops(usize),
    /// Peers and entries in these networks are trusted proxies.
    Proxies(Vec<Cidr>),
}

impl TrustProxy {
    /// Parses `TRUST_PROXY` (see the module documentation).
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let bad = |why: String| {
            ConfigError(format!(
                "TRUST_PROXY={value:?}: {why} (expected false, true, a number of hops \
                 from 1 to {MAX_HOPS}, or proxy addresses/CIDRs, comma-separated)"
            ))
        };
        let text = value.trim().to_ascii_lowercase();
        match text.as_str() {
            "" | "false" | "no" | "off" | "0" => return Ok(Self::None),
            "true" | "yes" | "on" => return Ok(Self::Hops(1)),
            _ => {}
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<usize>() {
                Ok(0) => Ok(Self::None),
                Ok(hops) if hops <= MAX_HOPS => Ok(Self::Hops(hops)),
                _ => Err(bad("too many hops".into())),
            };
        }
        let proxies = text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                Cidr::parse(item).ok_or_else(|| bad(format!("{item:?} is not an address or CIDR")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if proxies.is_empty() {
            return Err(bad("no proxy".into()));
        }
        Ok(Self::Proxies(proxies))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        match self {
            Self::None => false,
            Self::Hops(_) => true,
            Self::Proxies(nets) => nets.iter().any(|net| net.contains(ip)),
        }
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        // Several headers are one list, in order (RFC 9110 §5.3). Split as
        // bytes: a broken entry spoils only itself.
        let entries: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|value| value.as_bytes().split(|b| *b == b','))
            .collect();
        let most = match self {
            Self::Hops(hops) => *hops,
            _ => entries.len(),
        };
        let mut client = peer;
        for entry in entries.iter().rev().take(most) {
            // Whoever wrote this entry was trusted (the peer, or the entry
            // right of it): what it says is the next hop out.
            let Some(ip) = parse_entry(entry) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port
/// (`1.2.3.4:80`, `[2001:db8::1]:443`) or in brackets (`[2001:db8::1]`).
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            let inner = text.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

/// A network: an address and how many leading bits of it count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, or one address (all its bits).
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let ip: IpAddr = addr.trim().parse().ok()?;
        let canonical = ip.to_canonical();
        let full = width(canonical);
        let bits = match bits {
            None => full,
            // `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
            Some(b) if ip.is_ipv6() && canonical.is_ipv4() => b.checked_sub(96)?,
            Some(b) => b,
        };
        (bits <= full).then(|| Self {
            net: mask(canonical, bits),
            bits,
        })
    }

    /// Whether `ip` (canonical: a mapped IPv4 is IPv4) is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.bits) == self.net
    }
}

fn width(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// `ip` with all but its first `bits` bits cleared.
fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

/// Which budget an address spends: an IPv4 address, or the /64 of an IPv6
/// one (one subscriber usually gets a whole /64, so its addresses are one
/// client). Shown as `203.0.113.7` or `2001:db8:1:2::/64` in key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LimitKey(IpAddr);

impl LimitKey {
    pub fn of(ip: IpAddr) -> Self {
        let ip = ip.to_canonical();
        Self(match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(_) => mask(ip, 64),
        })
    }
}

impl std::fmt::Display for LimitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn trust_proxy_values() {
        let nets = |items: &[&str]| {
            TrustProxy::Proxies(items.iter().map(|i| Cidr::parse(i).unwrap()).collect())
        };
        for (value, expected) in [
            ("false", TrustProxy::None),
            ("0", TrustProxy::None),
            ("OFF", TrustProxy::None),
            ("true", TrustProxy::Hops(1)),
            (" yes ", TrustProxy::Hops(1)),
            ("1", TrustProxy::Hops(1)),
            ("2", TrustProxy::Hops(2)),
            ("16", TrustProxy::Hops(16)),
            ("10.0.0.1", nets(&["10.0.0.1/32"])),
            (
                "10.0.0.0/8, 2001:DB8::/32,",
                nets(&["10.0.0.0/8", "2001:db8::/32"]),
            ),
            ("10.9.9.9/8", nets(&["10.0.0.0/8"])),
            ("::ffff:10.0.0.0/104", nets(&["10.0.0.0/8"])),
        ] {
            assert_eq!(TrustProxy::parse(value).unwrap(), expected, "{value:?}");
        }
        for bad in [
            "maybe",
            "17",
            "99999999999999999999999",
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0.1, nowhere",
            ",",
            "-1",
            "::ffff:10.0.0.0/8",
        ] {
            let e = TrustProxy::parse(bad).unwrap_err();
            assert!(e.0.contains("TRUST_PROXY"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn cidrs_contain_their_addresses() {
        let net = Cidr::parse("192.168.0.0/16").unwrap();
        assert!(net.contains(ip("192.168.44.1")));
        assert!(net.contains(ip("::ffff:192.168.0.9")));
        assert!(!net.contains(ip("192.169.0.1")));
        assert!(!net.contains(ip("::1")));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("2001:db8::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let peer = ip("127.0.0.1");
        let one = TrustProxy::Hops(1);
        let two = TrustProxy::Hops(2);
        let listed = TrustProxy::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        let none = TrustProxy::None;
        // (trust, peer, X-Forwarded-For headers, client)
        let cases: &[(&TrustProxy, IpAddr, &[&str], &str)] = &[
            // Nothing trusted: the header is the client's and ignored.
            (&none, peer, &["203.0.113.7"], "127.0.0.1"),
            // No header: the peer.
            (&one, peer, &[], "127.0.0.1"),
            (&one, peer, &["203.0.113.7"], "203.0.113.7"),
            // What the client wrote (left) never counts.
            (&one, peer, &["1.1.1.1, 203.0.113.7"], "203.0.113.7"),
            (&one, peer, &["1.1.1.1", "203.0.113.7"], "203.0.113.7"),
            (
                &one,
                peer,
                &[" 1.1.1.1 ,2.2.2.2,  203.0.113.7 "],
                "203.0.113.7",
            ),
            // Two hops: the entry the outer proxy appended.
            (
                &two,
                peer,
                &["1.1.1.1, 203.0.113.7, 10.0.0.2"],
                "203.0.113.7",
            ),
            // Fewer entries than hops: the left-most.
            (&two, peer, &["203.0.113.7"], "203.0.113.7"),
            // Ports and brackets.
            (&one, peer, &["203.0.113.7:5123"], "203.0.113.7"),
            (&one, peer, &["[2001:db8::7]:443"], "2001:db8::7"),
            (&one, peer, &["[2001:db8::7]"], "2001:db8::7"),
            (&one, peer, &["2001:db8::7"], "2001:db8::7"),
            (&one, peer, &["::ffff:203.0.113.7"], "203.0.113.7"),
            // No address where the proxy's entry should be: the proxy's
            // own view (the peer), never a value further left.
            (&one, peer, &["203.0.113.7, unknown"], "127.0.0.1"),
            (&one, peer, &["203.0.113.7,"], "127.0.0.1"),
            (&two, peer, &["1.1.1.1, garbage, 10.0.0.2"], "10.0.0.2"),
            // The list form: listed proxies are skipped from the right.
            (
                &listed,
                peer,
                &["1.1.1.1, 203.0.113.7, 10.0.0.2"],
                "203.0.113.7",
            ),
            (
                &listed,
                peer,
                &["203.0.113.7, 10.1.1.1", "10.0.0.2"],
                "203.0.113.7",
            ),
            (&listed, peer, &["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
            (&listed, peer, &["1.1.1.1, nonsense, 10.0.0.2"], "10.0.0.2"),
            // A peer that is no listed proxy wrote the header itself.
            (&listed, ip("198.51.100.1"), &["10.0.0.2"], "198.51.100.1"),
            (
                &listed,
                ip("::ffff:127.0.0.1"),
                &["203.0.113.7"],
                "203.0.113.7",
            ),
        ];
        for (trust, peer, xff, client) in cases {
            assert_eq!(
                trust.client(*peer, &headers(xff)),
                ip(client),
                "{trust:?} from {peer} with {xff:?}"
            );
        }
    }

    #[test]
    fn a_header_that_is_not_text_spoils_only_its_entries() {
        let mut map = HeaderMap::new();
        map.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.7").unwrap(),
        );
        assert_eq!(
            TrustProxy::Hops(1).client(ip("127.0.0.1"), &map),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn limit_keys_are_addresses_and_ipv6_64s() {
        for (addr, key) in [
            ("203.0.113.7", "203.0.113.7"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
            ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
            ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
            ("::1", "::/64"),
        ] {
            assert_eq!(LimitKey::of(ip(addr)).to_string(), key, "{addr}");
        }
    }
}
