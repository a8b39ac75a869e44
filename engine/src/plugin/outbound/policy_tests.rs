//! The address policy over every range, with no network.
use super::*;

fn grants(hosts: &[&str]) -> Grants {
    Grants {
        hosts: hosts.iter().map(|h| Grant::parse(h).unwrap()).collect(),
        allow_private: false,
    }
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn grants_parse_scheme_host_and_port() {
    let g = Grant::parse("https://hooks.slack.com").unwrap();
    assert_eq!(g.scheme, Scheme::Https);
    assert_eq!(g.host, HostPattern::Name("hooks.slack.com".into()));
    assert_eq!(g.port, 443);
    let g = Grant::parse("https://*.Example.com:8443").unwrap();
    assert_eq!(g.host, HostPattern::Subdomains("example.com".into()));
    assert_eq!(g.port, 8443);
    let g = Grant::parse("http://127.0.0.1:9000").unwrap();
    assert_eq!(g.host, HostPattern::Address(ip("127.0.0.1")));
    assert_eq!(g.port, 9000);
    let g = Grant::parse("http://[::1]:9000/").unwrap();
    assert_eq!(g.host, HostPattern::Address(ip("::1")));
    let g = Grant::parse("http://*:8080").unwrap();
    assert_eq!((g.host, g.port), (HostPattern::Any, 8080));
    assert_eq!(Grant::parse("http://*").unwrap().port, 80);
    assert_eq!(
        Grant::parse("http://localhost:9000").unwrap().to_string(),
        "http://localhost:9000"
    );
}

#[test]
fn malformed_grants_are_errors() {
    for (text, want) in [
        ("https://hooks.slack.com/services/x", "path"),
        ("https://example.com?token=1", "query"),
        ("https://example.com/#frag", "query"),
        ("ftp://example.com", "scheme"),
        ("hooks.slack.com", "malformed"),
        ("https://", "malformed"),
        ("https://user:pw@example.com", "credentials"),
        ("https://a.*.example.com", "wildcard"),
        ("https://*example.com", "wildcard"),
        ("https://*.127.0.0.1", "wildcard"),
        ("https://example.com:99999", "malformed"),
        ("https://exa mple.com", "malformed"),
    ] {
        let err = Grant::parse(text).unwrap_err();
        let kind = match err {
            GrantError::Malformed(_) => "malformed",
            GrantError::Scheme(_) => "scheme",
            GrantError::Path(_) => "path",
            GrantError::Query(_) => "query",
            GrantError::Credentials(_) => "credentials",
            GrantError::Wildcard(_) => "wildcard",
        };
        assert_eq!(kind, want, "{text}: {err}");
    }
}

#[test]
fn scheme_host_and_port_must_match() {
    let g = grants(&["https://hooks.slack.com", "https://*.example.com:8443"]);
    let public = [ip("93.184.216.34")];
    assert!(decide(&g, &url("https://hooks.slack.com/services/T/B"), &public).is_ok());
    assert!(decide(&g, &url("https://HOOKS.slack.com./x"), &public).is_ok());
    assert!(decide(&g, &url("https://a.example.com:8443/"), &public).is_ok());
    assert!(decide(&g, &url("https://a.b.example.com:8443/"), &public).is_ok());
    for denied in [
        "http://hooks.slack.com/",
        "https://hooks.slack.com:8443/",
        "https://example.com:8443/",
        "https://a.example.com/",
        "https://evilexample.com:8443/",
        "https://hooks.slack.com.evil.net/",
    ] {
        let err = decide(&g, &url(denied), &public).unwrap_err();
        assert!(matches!(err, Denial::NotGranted { .. }), "{denied}: {err}");
    }
    let err = decide(&grants(&[]), &url("https://api.example.com/x"), &public).unwrap_err();
    assert_eq!(
        err.to_string(),
        "https://api.example.com:443 is not granted to this step; add it to the step's allow_hosts (granted: none)"
    );
    assert_eq!(err.host(), "api.example.com");
}

/// Every non-public range, as addresses a public name might resolve to.
const RESTRICTED: &[&str] = &[
    "169.254.169.254",
    "169.254.0.1",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.1.2.3",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.0.8",
    "198.18.0.1",
    "::",
    "::1",
    "fe80::1",
    "febf::1",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:192.168.1.1",
    "::ffff:100.64.0.1",
    "::ffff:0.0.0.0",
    "::ffff:224.0.0.1",
    "::127.0.0.1",
    "::10.0.0.1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::7f00:1",
    "2002:7f00:1::",
    "2002:a9fe:a9fe::1",
];

#[test]
fn every_restricted_range_is_refused_for_names() {
    let g = grants(&[
        "https://api.example.com",
        "https://*.example.org",
        "https://*",
    ]);
    for host in ["https://api.example.com/", "https://x.example.org/"] {
        for address in RESTRICTED {
            let err = decide(&g, &url(host), &[ip(address)]).unwrap_err();
            assert!(matches!(err, Denial::Restricted { .. }), "{address}: {err}");
        }
    }
}

#[test]
fn public_addresses_pass() {
    let g = grants(&["https://api.example.com"]);
    for address in [
        "93.184.216.34",
        "8.8.8.8",
        "100.63.255.255",
        "100.128.0.1",
        "172.32.0.1",
        "169.253.0.1",
        "2606:4700::1111",
        "2001:4860:4860::8888",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ] {
        assert!(
            decide(&g, &url("https://api.example.com/"), &[ip(address)]).is_ok(),
            "{address}"
        );
    }
}

#[test]
fn one_restricted_address_among_public_ones_refuses_the_call() {
    let g = grants(&["https://api.example.com"]);
    let err = decide(
        &g,
        &url("https://api.example.com/"),
        &[ip("93.184.216.34"), ip("169.254.169.254")],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "api.example.com resolves to 169.254.169.254 (link-local, cloud metadata among them), \
         which a step may not reach; to reach it, grant this exact host (no wildcard) and set \
         allow_private = true on the step"
    );
    assert!(matches!(
        decide(&g, &url("https://api.example.com/"), &[]),
        Err(Denial::NoAddress { .. })
    ));
}

#[test]
fn literal_addresses_need_a_literal_grant() {
    // A wildcard grant matches the literal address but never unlocks it.
    let any = grants(&["http://*:9000"]);
    for literal in [
        "http://127.0.0.1:9000/",
        "http://[::1]:9000/",
        "http://[::ffff:127.0.0.1]:9000/",
        "http://2130706433:9000/",
        "http://0x7f.1:9000/",
        "http://017700000001:9000/",
        "http://127.1:9000/",
        "http://0:9000/",
        "http://169.254.169.254:9000/latest/meta-data",
        "http://[fe80::1]:9000/",
    ] {
        let u = url(literal);
        let t = target(&any, &u).unwrap();
        let TargetHost::Address(address) = t.host else {
            panic!("{literal} parsed as a name: {:?}", t.host);
        };
        let err = decide(&any, &u, &[address]).unwrap_err();
        assert!(matches!(err, Denial::Restricted { .. }), "{literal}: {err}");
    }
    // The decimal form is the address it stands for.
    assert_eq!(
        target(&any, &url("http://2130706433:9000/")).unwrap().host,
        TargetHost::Address(ip("127.0.0.1"))
    );

    // A grant naming the literal address unlocks exactly that address.
    let exact = grants(&["http://127.0.0.1:9000", "http://[::1]:9000"]);
    assert!(decide(&exact, &url("http://127.0.0.1:9000/x"), &[ip("127.0.0.1")]).is_ok());
    assert!(decide(&exact, &url("http://2130706433:9000/"), &[ip("127.0.0.1")]).is_ok());
    assert!(decide(&exact, &url("http://[::1]:9000/"), &[ip("::1")]).is_ok());
    for other in [
        "http://[::ffff:127.0.0.1]:9000/",
        "http://127.0.0.2:9000/",
        "http://127.0.0.1:9001/",
        "http://localhost:9000/",
    ] {
        assert!(
            matches!(target(&exact, &url(other)), Err(Denial::NotGranted { .. })),
            "{other}"
        );
    }
    // Unspecified and multicast stay refused even when named.
    let zero = grants(&["http://0.0.0.0:9000"]);
    assert!(decide(&zero, &url("http://0.0.0.0:9000/"), &[ip("0.0.0.0")]).is_err());
}

#[test]
fn names_reach_private_addresses_only_with_allow_private_and_an_exact_grant() {
    let mut g = grants(&["http://localhost:9000", "http://*.internal:9000"]);
    let loopback = [ip("127.0.0.1"), ip("::1")];
    assert!(decide(&g, &url("http://localhost:9000/"), &loopback).is_err());
    g.allow_private = true;
    assert!(decide(&g, &url("http://localhost:9000/"), &loopback).is_ok());
    assert!(decide(&g, &url("http://svc.internal:9000/"), &[ip("10.0.0.1")]).is_err());
    assert!(decide(&g, &url("http://localhost:9000/"), &[ip("0.0.0.0")]).is_err());
    assert!(decide(&g, &url("http://localhost:9000/"), &[ip("ff02::1")]).is_err());
}
