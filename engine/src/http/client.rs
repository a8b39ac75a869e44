//! Who sent a webhook: the connection's peer, or, when the peer is a trusted proxy, the
//! sender its `X-Forwarded-For` (or RFC 7239 `Forwarded`) header names.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use warp::http::HeaderMap;

/// The sender's address. From a trusted proxy, the forwarding header is read right to left
/// (each proxy appends the address it got the request from) and the first address that is not
/// itself a trusted proxy is the sender; the entries left of it were written by the sender and
/// prove nothing. `None` when a trusted proxy's header cannot be read: the sender is unknown.
pub fn sender(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = canonical(peer?.ip());
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let chain = forwarded_for(headers)?;
    let mut sender = peer;
    for entry in chain.iter().rev() {
        sender = canonical(*entry);
        if !is_trusted(sender, trusted) {
            break;
        }
    }
    Some(sender)
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses of `X-Forwarded-For` (all of its lines, in order), else of `Forwarded`'s
/// `for=` parameters; `None` when neither is there or an entry is not an address.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let values = |name: &str| -> Option<Vec<String>> {
        let lines: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().map(str::to_owned))
            .collect::<Result<_, _>>()
            .ok()?;
        (!lines.is_empty()).then_some(lines)
    };
    if let Some(lines) = values("x-forwarded-for") {
        return lines
            .iter()
            .flat_map(|line| line.split(','))
            .map(|entry| parse_node(entry.trim()))
            .collect();
    }
    let lines = values("forwarded")?;
    lines
        .iter()
        .flat_map(|line| line.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"').to_owned())
            })
        })
        .map(|node| parse_node(&node))
        .collect()
}

/// An address as forwarding headers write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`
/// or `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|ip| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let proxy: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let direct: SocketAddr = "203.0.113.9:4000".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let forged = headers(&[("x-forwarded-for", "192.0.2.1")]);
        assert_eq!(sender(Some(direct), &forged, &trusted), Some(direct.ip()));
        assert_eq!(
            sender(Some(proxy), &forged, &trusted),
            Some("192.0.2.1".parse().unwrap())
        );
        // The sender wrote the left entry; the proxy appended the address it saw.
        let chain = headers(&[("x-forwarded-for", "198.51.100.7, 192.0.2.1, 10.0.0.2")]);
        assert_eq!(
            sender(Some(proxy), &chain, &trusted),
            Some("192.0.2.1".parse().unwrap())
        );
        let forwarded = headers(&[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https")]);
        assert_eq!(
            sender(Some(proxy), &forwarded, &trusted),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(sender(Some(proxy), &headers(&[]), &trusted), None);
        assert_eq!(
            sender(
                Some(proxy),
                &headers(&[("x-forwarded-for", "unknown")]),
                &trusted
            ),
            None
        );
        let mapped: SocketAddr = "[::ffff:203.0.113.9]:1".parse().unwrap();
        assert_eq!(
            sender(Some(mapped), &forged, &trusted),
            Some("203.0.113.9".parse().unwrap())
        );
    }
}
