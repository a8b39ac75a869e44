//! The address policy of outbound calls: which URLs a step may reach, decided as a pure function
//! of the step's grants, the URL the guest asked for and the addresses its host name resolved
//! to. Nothing here does I/O, so every range is tested without a network.
//!
//! The rules:
//! - the URL's scheme, host and port must match a grant (`allow_hosts`);
//! - every address the host resolves to must be public; loopback, private (RFC 1918),
//!   carrier-grade NAT, link-local (the cloud metadata service at 169.254.169.254 among them),
//!   unique-local, unspecified, multicast, broadcast and reserved addresses, and IPv6 forms that
//!   embed one of those IPv4 addresses, are refused;
//! - unless the grant names that literal address (`http://127.0.0.1:9000`), or names the host
//!   exactly and the step says `allow_private = true`. A wildcard grant (`*.example.com`, `*`)
//!   never unlocks them. Unspecified, multicast and broadcast addresses are never reachable.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// A URL scheme a grant may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    /// The port a URL of this scheme uses when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The host part of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// One host name, lower-case, as the URL parser normalises it.
    Name(String),
    /// `*.suffix`: any name ending in `.suffix` (not `suffix` itself).
    Subdomains(String),
    /// `*`: any host, names and public addresses alike.
    Any,
    /// A literal address: also reachable when it is loopback or private.
    Address(IpAddr),
}

/// One entry of a step's `allow_hosts`: scheme, host (or wildcard) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub scheme: Scheme,
    pub host: HostPattern,
    /// The port; the scheme's default when the grant names none.
    pub port: u16,
}

/// Why a grant string is not a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error(
        "`{0}` is not a host grant: write a scheme and a host, with an optional port, such as \"https://hooks.slack.com\" or \"http://127.0.0.1:9000\""
    )]
    Malformed(String),
    #[error("`{0}`: the scheme must be http or https")]
    Scheme(String),
    #[error("`{0}`: a grant names a host, not a path; remove everything after the host and port")]
    Path(String),
    #[error("`{0}`: a grant names a host, not a query or fragment; remove it")]
    Query(String),
    #[error("`{0}`: a grant holds no user name or password; put credentials in headers")]
    Credentials(String),
    #[error(
        "`{0}`: a wildcard is `*` or a leading `*.` before a host name, such as \"https://*.example.com\""
    )]
    Wildcard(String),
}

impl Grant {
    /// Parses `scheme://host[:port]`, where host may be `*`, `*.name`, a name or an address.
    pub fn parse(text: &str) -> Result<Grant, GrantError> {
        let malformed = || GrantError::Malformed(text.to_owned());
        let (scheme_text, rest) = text.split_once("://").ok_or_else(malformed)?;
        let scheme = Scheme::parse(&scheme_text.to_ascii_lowercase())
            .ok_or_else(|| GrantError::Scheme(text.to_owned()))?;
        // The authority ends at the first `/`, `?` or `#`; anything after it but a lone `/`
        // is a path, query or fragment, which a grant does not scope.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if tail.starts_with('?') || tail.starts_with('#') || tail.contains(['?', '#']) {
            return Err(GrantError::Query(text.to_owned()));
        }
        if !tail.is_empty() && tail != "/" {
            return Err(GrantError::Path(text.to_owned()));
        }
        if authority.contains('@') {
            return Err(GrantError::Credentials(text.to_owned()));
        }
        if authority.is_empty() {
            return Err(malformed());
        }
        // Wildcards are taken off before the URL parser sees the host, which would otherwise
        // take `*` for part of a name.
        let (wildcard, authority) = if authority == "*" || authority.starts_with("*:") {
            (Some(true), &authority[1..])
        } else if let Some(rest) = authority.strip_prefix("*.") {
            (Some(false), rest)
        } else {
            (None, authority)
        };
        if authority.contains('*') {
            return Err(GrantError::Wildcard(text.to_owned()));
        }
        let port_of = |url: &Url| url.port().unwrap_or(scheme.default_port());
        if wildcard == Some(true) {
            // `*` or `*:port`: parse the port against a placeholder host.
            let url = Url::parse(&format!("{}://any{authority}", scheme.as_str()))
                .map_err(|_| malformed())?;
            if url.host_str() != Some("any") {
                return Err(malformed());
            }
            return Ok(Grant {
                scheme,
                host: HostPattern::Any,
                port: port_of(&url),
            });
        }
        let url =
            Url::parse(&format!("{}://{authority}", scheme.as_str())).map_err(|_| malformed())?;
        let host = match url.host() {
            None => return Err(malformed()),
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_owned();
                if name.is_empty() {
                    return Err(malformed());
                }
                if wildcard == Some(false) {
                    HostPattern::Subdomains(name)
                } else {
                    HostPattern::Name(name)
                }
            }
            Some(Host::Ipv4(ip)) if wildcard.is_none() => HostPattern::Address(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) if wildcard.is_none() => HostPattern::Address(IpAddr::V6(ip)),
            Some(_) => return Err(GrantError::Wildcard(text.to_owned())),
        };
        Ok(Grant {
            scheme,
            host,
            port: port_of(&url),
        })
    }

    fn matches(&self, target: &Target) -> bool {
        if self.scheme != target.scheme || self.port != target.port {
            return false;
        }
        match (&self.host, &target.host) {
            (HostPattern::Any, _) => true,
            (HostPattern::Name(granted), TargetHost::Name(name)) => granted == name,
            (HostPattern::Subdomains(suffix), TargetHost::Name(name)) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            (HostPattern::Address(granted), TargetHost::Address(ip)) => granted == ip,
            _ => false,
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        match &self.host {
            HostPattern::Name(name) => write!(f, "{name}")?,
            HostPattern::Subdomains(suffix) => write!(f, "*.{suffix}")?,
            HostPattern::Any => write!(f, "*")?,
            HostPattern::Address(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            HostPattern::Address(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
        }
        write!(f, ":{}", self.port)
    }
}

/// What a step may reach: its `allow_hosts` and `allow_private`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub hosts: Vec<Grant>,
    /// Names granted exactly (not by a wildcard) may resolve to loopback and private addresses.
    pub allow_private: bool,
}

/// The host of a URL, as the URL parser normalised it (so `http://2130706433/` is the address
/// 127.0.0.1, never a name handed to the resolver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHost {
    Name(String),
    Address(IpAddr),
}

impl fmt::Display for TargetHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetHost::Name(name) => write!(f, "{name}"),
            TargetHost::Address(IpAddr::V4(ip)) => write!(f, "{ip}"),
            TargetHost::Address(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// Where a request goes, once its URL matched a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    pub host: TargetHost,
    pub port: u16,
    /// The host may resolve to non-public addresses: a literal address grant, or an exact name
    /// grant with `allow_private`.
    private_ok: bool,
}

/// Why a call is refused. The message names the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("`{url}` is not an http or https URL with a host")]
    BadUrl { url: String },
    #[error(
        "{scheme}://{host}:{port} is not granted to this step; add it to the step's allow_hosts (granted: {granted})"
    )]
    NotGranted {
        scheme: &'static str,
        host: String,
        port: u16,
        granted: String,
    },
    #[error("{}", restricted_message(host, address, range, hint))]
    Restricted {
        host: String,
        address: IpAddr,
        range: &'static str,
        hint: &'static str,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
}

fn restricted_message(host: &str, address: &IpAddr, range: &str, hint: &str) -> String {
    let literal = match address {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    if literal == host {
        format!("{host} is a {range} address, which a step may not reach{hint}")
    } else {
        format!("{host} resolves to {address} ({range}), which a step may not reach{hint}")
    }
}

impl Denial {
    /// The host the call was for, as the message names it.
    pub fn host(&self) -> &str {
        match self {
            Denial::BadUrl { url } => url,
            Denial::NotGranted { host, .. }
            | Denial::Restricted { host, .. }
            | Denial::NoAddress { host } => host,
        }
    }
}

/// Matches `url` against the grants: the first half of the policy, before any name is resolved
/// (a name no grant covers is never looked up).
pub fn target(grants: &Grants, url: &Url) -> Result<Target, Denial> {
    let bad = || Denial::BadUrl {
        url: url.as_str().to_owned(),
    };
    let scheme = Scheme::parse(url.scheme()).ok_or_else(bad)?;
    let host = match url.host().ok_or_else(bad)? {
        Host::Domain(name) => TargetHost::Name(name.trim_end_matches('.').to_ascii_lowercase()),
        Host::Ipv4(ip) => TargetHost::Address(IpAddr::V4(ip)),
        Host::Ipv6(ip) => TargetHost::Address(IpAddr::V6(ip)),
    };
    let port = url.port().unwrap_or(scheme.default_port());
    let mut target = Target {
        scheme,
        host,
        port,
        private_ok: false,
    };
    let matching: Vec<&Grant> = grants.hosts.iter().filter(|g| g.matches(&target)).collect();
    if matching.is_empty() {
        let granted = if grants.hosts.is_empty() {
            "none".to_owned()
        } else {
            grants
                .hosts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Denial::NotGranted {
            scheme: scheme.as_str(),
            host: target.host.to_string(),
            port,
            granted,
        });
    }
    target.private_ok = matching.iter().any(|g| match &g.host {
        HostPattern::Address(_) => true,
        HostPattern::Name(_) => grants.allow_private,
        HostPattern::Subdomains(_) | HostPattern::Any => false,
    });
    Ok(target)
}

/// Checks every address the target's host resolved to (for a literal address, that address):
/// the second half of the policy. All must pass, so that the address connected to is one that
/// was checked, whichever of them it is.
pub fn check_addresses(target: &Target, resolved: &[IpAddr]) -> Result<(), Denial> {
    if resolved.is_empty() {
        return Err(Denial::NoAddress {
            host: target.host.to_string(),
        });
    }
    for &address in resolved {
        let Some(range) = restricted_range(address) else {
            continue;
        };
        let never = matches!(range.kind, RangeKind::Never);
        if target.private_ok && !never {
            continue;
        }
        let hint = match (never, &target.host) {
            (true, _) => "",
            (false, TargetHost::Address(_)) => {
                "; to reach it, grant this literal address in allow_hosts"
            }
            (false, TargetHost::Name(_)) => {
                "; to reach it, grant this exact host (no wildcard) and set allow_private = true on the step"
            }
        };
        return Err(Denial::Restricted {
            host: target.host.to_string(),
            address,
            range: range.name,
            hint,
        });
    }
    Ok(())
}

/// The whole policy: `url` against the grants, then the addresses its host resolved to.
pub fn decide(grants: &Grants, url: &Url, resolved: &[IpAddr]) -> Result<Target, Denial> {
    let target = target(grants, url)?;
    check_addresses(&target, resolved)?;
    Ok(target)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeKind {
    /// Reachable when explicitly granted.
    Private,
    /// Never reachable over HTTP: unspecified, multicast, broadcast.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    name: &'static str,
    kind: RangeKind,
}

const fn private(name: &'static str) -> Option<Range> {
    Some(Range {
        name,
        kind: RangeKind::Private,
    })
}

const fn never(name: &'static str) -> Option<Range> {
    Some(Range {
        name,
        kind: RangeKind::Never,
    })
}

/// The non-public range `ip` lies in, if any. IPv6 forms that carry an IPv4 address
/// (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged by that address.
fn restricted_range(ip: IpAddr) -> Option<Range> {
    match ip {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => restricted_v6(v6),
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<Range> {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() {
        never("unspecified")
    } else if ip.is_broadcast() {
        never("broadcast")
    } else if ip.is_multicast() {
        never("multicast")
    } else if ip.is_loopback() {
        private("loopback")
    } else if ip.is_private() {
        private("private network, RFC 1918")
    } else if a == 100 && (64..128).contains(&b) {
        private("carrier-grade NAT")
    } else if ip.is_link_local() {
        private("link-local, cloud metadata among them")
    } else if a == 0 {
        private("\"this network\" (0.0.0.0/8)")
    } else if a == 192 && b == 0 && c == 0 {
        private("IETF protocol assignments")
    } else if a == 198 && (b == 18 || b == 19) {
        private("benchmarking network")
    } else if a >= 240 {
        private("reserved")
    } else {
        None
    }
}

fn restricted_v6(ip: Ipv6Addr) -> Option<Range> {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return restricted_v4(v4);
    }
    if ip.is_unspecified() {
        return never("unspecified");
    }
    if ip.is_loopback() {
        return private("loopback");
    }
    if ip.is_multicast() {
        return never("multicast");
    }
    // IPv4-compatible (::a.b.c.d, deprecated) and the NAT64 prefix carry an IPv4 address in
    // their last 32 bits, 6to4 in bits 16 to 48; all reach that address in the end.
    let last_v4 = Ipv4Addr::new(
        (segments[6] >> 8) as u8,
        segments[6] as u8,
        (segments[7] >> 8) as u8,
        segments[7] as u8,
    );
    if segments[..6] == [0; 6] {
        return restricted_v4(last_v4).or(private("IPv4-compatible"));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return restricted_v4(last_v4);
    }
    if segments[0] == 0x2002 {
        let embedded = Ipv4Addr::new(
            (segments[1] >> 8) as u8,
            segments[1] as u8,
            (segments[2] >> 8) as u8,
            segments[2] as u8,
        );
        return restricted_v4(embedded);
    }
    match segments[0] {
        s if s & 0xfe00 == 0xfc00 => private("unique-local (fc00::/7)"),
        s if s & 0xffc0 == 0xfe80 => private("link-local (fe80::/10)"),
        s if s & 0xffc0 == 0xfec0 => private("site-local (fec0::/10)"),
        _ => None,
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
