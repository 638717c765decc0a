//! Where a push may go: the URL policy of an endpoint, the address policy of every
//! connection, and the DNS resolver that enforces the latter at connect time.
//!
//! A merchant (or anyone holding an `admin` token) chooses the URL; the receiver makes the
//! request from inside the merchant's network. Without these rules an endpoint URL could make
//! the receiver POST to its own database port, a cloud metadata service
//! (`169.254.169.254`, `fd00:ec2::254`, `100.100.100.200`) or any internal host.
//!
//! Owns:
//! - [`Target::parse`]: an absolute `https` URL (`http` only with
//!   [`TargetPolicy::allow_http`]), with a host, without userinfo or fragment, at most
//!   [`MAX_URL_LEN`] bytes; any port. An IP-literal host and the `localhost` names are
//!   checked here already, so a bad endpoint is refused when it is registered;
//! - [`forbidden`]: which addresses a push never reaches unless
//!   [`TargetPolicy::allow_private`] (development): unspecified, loopback, RFC 1918 private,
//!   CGNAT 100.64/10, link-local (metadata), unique-local fc00::/7, site-local, multicast,
//!   broadcast, documentation and benchmarking ranges, reserved and deprecated ranges, and
//!   the IPv4-mapped, NAT64 and 6to4 forms of every forbidden IPv4 address;
//! - [`GuardedResolver`]: the client's `reqwest::dns::Resolve`. It resolves the name and
//!   drops forbidden addresses *before* the connector sees them, so the address checked is
//!   the address connected to: no second lookup, no DNS-rebinding window. A name left with
//!   no allowed address fails with [`AddressRefused`].
//!
//! IP-literal hosts never reach a resolver (hyper connects to them directly), so
//! [`super::client`] re-checks them before every request; proxies are disabled in the client
//! for the same reason (a proxy would resolve the name itself). Redirects are never followed.
//!
//! Invariants: no error or `Debug`/`Display` of this module shows more of a URL than its
//! origin (scheme, host, port): userinfo is refused, and the path and query may hold the
//! merchant's own tokens.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};
use url::{Host, Url};

/// Longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// What the configuration allows beyond public `https` targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetPolicy {
    /// Accept `http://` URLs (development only: pushes carry verification outcomes).
    pub allow_http: bool,
    /// Reach loopback, private, link-local and the other [`forbidden`] addresses
    /// (`push.allow_private_targets`; development sets it).
    pub allow_private: bool,
}

impl TargetPolicy {
    /// Why `ip` may not be reached under this policy, if it may not.
    pub fn refuses(&self, ip: IpAddr) -> Option<Forbidden> {
        if self.allow_private {
            None
        } else {
            forbidden(ip)
        }
    }

    /// `addrs` less the refused ones, or why all of them were refused.
    ///
    /// Why filter rather than refuse a name with any forbidden address: the connection goes
    /// only to the addresses kept here, so a forbidden one beside public ones is simply never
    /// used; refusing would let one stray record block a merchant's endpoint.
    pub fn filter(&self, addrs: Vec<IpAddr>) -> Result<Vec<IpAddr>, AddressRefused> {
        let mut first_refusal = None;
        let allowed: Vec<IpAddr> = addrs
            .into_iter()
            .filter(|ip| match self.refuses(*ip) {
                Some(reason) => {
                    first_refusal.get_or_insert(reason);
                    false
                }
                None => true,
            })
            .collect();
        match (allowed.is_empty(), first_refusal) {
            (true, Some(reason)) => Err(AddressRefused { reason }),
            _ => Ok(allowed),
        }
    }
}

/// A validated endpoint URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    url: Url,
}

/// Why an endpoint URL is refused. Never contains the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the URL is longer than {MAX_URL_LEN} bytes")]
    TooLong,
    #[error("not an absolute URL")]
    NotAUrl,
    #[error("only https URLs are accepted")]
    HttpsRequired,
    #[error("only http and https URLs are accepted")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL may not carry a user name or password")]
    Userinfo,
    #[error("the URL may not carry a fragment")]
    Fragment,
    #[error("the host is a {0} address, which pushes may not reach")]
    ForbiddenAddress(Forbidden),
    #[error("the host is a localhost name, which pushes may not reach")]
    LocalhostName,
}

impl Target {
    /// Checks `text` against the URL policy, and an IP-literal or `localhost` host against
    /// the address policy. A DNS name is checked again, after resolution, at every connect.
    pub fn parse(text: &str, policy: &TargetPolicy) -> Result<Self, TargetError> {
        if text.len() > MAX_URL_LEN {
            return Err(TargetError::TooLong);
        }
        let url = Url::parse(text).map_err(|_| TargetError::NotAUrl)?;
        match url.scheme() {
            "https" => {}
            "http" if policy.allow_http => {}
            "http" => return Err(TargetError::HttpsRequired),
            _ => return Err(TargetError::Scheme),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::Userinfo);
        }
        if url.fragment().is_some() {
            return Err(TargetError::Fragment);
        }
        let target = Self { url };
        match target.host()? {
            HostKind::Ip(ip) => {
                if let Some(reason) = policy.refuses(ip) {
                    return Err(TargetError::ForbiddenAddress(reason));
                }
            }
            HostKind::Name(name) => {
                if !policy.allow_private && is_localhost_name(name) {
                    return Err(TargetError::LocalhostName);
                }
            }
        }
        Ok(target)
    }

    /// The full URL, for the request only: never log it.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `scheme://host:port`: what logs, errors and metrics may show.
    pub fn origin(&self) -> String {
        self.url.origin().ascii_serialization()
    }

    /// The host as an address (an IP literal, which no resolver sees) or a name.
    pub fn host(&self) -> Result<HostKind<'_>, TargetError> {
        match self.url.host().ok_or(TargetError::NoHost)? {
            Host::Ipv4(ip) => Ok(HostKind::Ip(IpAddr::V4(ip))),
            Host::Ipv6(ip) => Ok(HostKind::Ip(IpAddr::V6(ip))),
            Host::Domain(name) => Ok(HostKind::Name(name)),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Target").field(&self.origin()).finish()
    }
}

/// A URL's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// `localhost` and `*.localhost` (RFC 6761: always loopback), with or without the root dot.
fn is_localhost_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Why an address is not reachable by a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    Unspecified,
    Loopback,
    /// RFC 1918, and IPv6 site-local and local-use NAT64.
    Private,
    /// 100.64.0.0/10, carrier-grade NAT (also some clouds' metadata, e.g. 100.100.100.200).
    SharedAddressSpace,
    /// 169.254.0.0/16 (the metadata services' 169.254.169.254) and fe80::/10.
    LinkLocal,
    /// fc00::/7 (e.g. fd00:ec2::254).
    UniqueLocal,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    /// Special-purpose or deprecated ranges that no merchant's server lives in.
    Reserved,
}

impl Forbidden {
    /// A stable code, for attempt records and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::SharedAddressSpace => "shared_address_space",
            Self::LinkLocal => "link_local",
            Self::UniqueLocal => "unique_local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::Reserved => "reserved",
        }
    }
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(segments: [u16; 8], len: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len)
}

/// IPv4 ranges a push never reaches (IANA special-purpose registry), most specific first.
const FORBIDDEN_V4: [(Ipv4Net, Forbidden); 16] = [
    (v4(0, 0, 0, 0, 8), Forbidden::Unspecified),
    (v4(10, 0, 0, 0, 8), Forbidden::Private),
    (v4(100, 64, 0, 0, 10), Forbidden::SharedAddressSpace),
    (v4(127, 0, 0, 0, 8), Forbidden::Loopback),
    (v4(169, 254, 0, 0, 16), Forbidden::LinkLocal),
    (v4(172, 16, 0, 0, 12), Forbidden::Private),
    // IETF protocol assignments (incl. Oracle Cloud's metadata 192.0.0.192).
    (v4(192, 0, 0, 0, 24), Forbidden::Reserved),
    (v4(192, 0, 2, 0, 24), Forbidden::Documentation),
    // The deprecated 6to4 relay anycast.
    (v4(192, 88, 99, 0, 24), Forbidden::Reserved),
    (v4(192, 168, 0, 0, 16), Forbidden::Private),
    (v4(198, 18, 0, 0, 15), Forbidden::Benchmarking),
    (v4(198, 51, 100, 0, 24), Forbidden::Documentation),
    (v4(203, 0, 113, 0, 24), Forbidden::Documentation),
    (v4(224, 0, 0, 0, 4), Forbidden::Multicast),
    (v4(255, 255, 255, 255, 32), Forbidden::Broadcast),
    (v4(240, 0, 0, 0, 4), Forbidden::Reserved),
];

/// IPv6 ranges a push never reaches, most specific first. The forms that embed an IPv4
/// address (mapped, NAT64, 6to4) are handled before this table, by their IPv4 address.
const FORBIDDEN_V6: [(Ipv6Net, Forbidden); 13] = [
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), Forbidden::Unspecified),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), Forbidden::Loopback),
    // IPv4-compatible addresses (deprecated).
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 96), Forbidden::Reserved),
    // Local-use NAT64 (RFC 8215): translates into the local network.
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), Forbidden::Private),
    // Discard-only.
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), Forbidden::Reserved),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        Forbidden::Documentation,
    ),
    // IETF protocol assignments: Teredo (a tunnel to any IPv4 address), benchmarking, ORCHID.
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), Forbidden::Reserved),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        Forbidden::Documentation,
    ),
    // SRv6 segment identifiers.
    (v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16), Forbidden::Reserved),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), Forbidden::UniqueLocal),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), Forbidden::LinkLocal),
    // Site-local (deprecated, still routed inside some networks).
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), Forbidden::Private),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), Forbidden::Multicast),
];

/// NAT64's well-known prefix (RFC 6052): a DNS64 resolver maps every IPv4-only host into it,
/// so public addresses in it must stay reachable.
const NAT64: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
/// 6to4 (RFC 3056): the IPv4 address of the relay site is bits 16..48.
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

/// Why `ip` is not reachable by a push, or `None` when it is a public unicast address.
pub fn forbidden(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(ip) => forbidden_v4(ip),
        IpAddr::V6(ip) => forbidden_v6(ip),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    FORBIDDEN_V4
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, reason)| *reason)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return forbidden_v4(mapped);
    }
    let bits = u128::from(ip);
    if NAT64.contains(&ip) {
        return forbidden_v4(Ipv4Addr::from(bits as u32));
    }
    if SIX_TO_FOUR.contains(&ip) {
        return forbidden_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    FORBIDDEN_V6
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, reason)| *reason)
}

/// A name resolved only to addresses a push may not reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the host resolves only to addresses pushes may not reach ({reason})")]
pub struct AddressRefused {
    /// Why the first refused address was refused.
    pub reason: Forbidden,
}

/// A name that could not be resolved (or resolved to nothing).
#[derive(Debug, thiserror::Error)]
#[error("the host name could not be resolved")]
pub struct LookupFailed(#[source] pub io::Error);

type Lookup<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Name resolution, behind a trait so tests can make any name resolve anywhere.
pub trait Resolver: Send + Sync + 'static {
    fn lookup(&self, host: String) -> Lookup<'static>;
}

/// The operating system's resolver (`getaddrinfo` on a blocking thread, via tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup(&self, host: String) -> Lookup<'static> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// The push client's resolver: resolves with `inner`, keeps only the addresses `policy`
/// allows ([`TargetPolicy::filter`]), and fails with [`AddressRefused`] when none is left.
pub struct GuardedResolver {
    inner: Arc<dyn Resolver>,
    policy: TargetPolicy,
}

impl GuardedResolver {
    pub fn new(inner: Arc<dyn Resolver>, policy: TargetPolicy) -> Self {
        Self { inner, policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup = self.inner.lookup(name.as_str().to_owned());
        let policy = self.policy;
        Box::pin(async move {
            let addrs = lookup.await.map_err(LookupFailed)?;
            if addrs.is_empty() {
                return Err(
                    LookupFailed(io::Error::new(io::ErrorKind::NotFound, "no addresses")).into(),
                );
            }
            let allowed = policy.filter(addrs)?;
            // Port 0: reqwest puts in the URL's port (or the scheme's).
            let addrs: reqwest::dns::Addrs =
                Box::new(allowed.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    const STRICT: TargetPolicy = TargetPolicy {
        allow_http: false,
        allow_private: false,
    };
    const DEVELOPMENT: TargetPolicy = TargetPolicy {
        allow_http: true,
        allow_private: true,
    };

    #[test]
    fn forbidden_addresses_are_named() {
        use Forbidden::*;
        let cases = [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.1", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.100.100.200", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("169.254.169.254", LinkLocal),
            ("169.254.0.1", LinkLocal),
            ("192.0.0.192", Reserved),
            ("192.0.2.10", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("192.88.99.1", Reserved),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("::", Unspecified),
            ("::1", Loopback),
            ("::127.0.0.1", Reserved),
            ("::8.8.8.8", Reserved),
            ("fe80::1", LinkLocal),
            ("fc00::1", UniqueLocal),
            ("fd00:ec2::254", UniqueLocal),
            ("fec0::1", Private),
            ("ff02::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001::1", Reserved),
            ("2001:2::1", Reserved),
            ("100::1", Reserved),
            ("64:ff9b:1::1", Private),
            ("5f00::1", Reserved),
            // IPv4 inside IPv6: the embedded address decides.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:100.64.0.1", SharedAddressSpace),
            ("::ffff:0.0.0.0", Unspecified),
            ("::ffff:255.255.255.255", Broadcast),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("2002:7f00:1::1", Loopback),
            ("2002:c0a8:101::", Private),
        ];
        for (text, expected) in cases {
            assert_eq!(forbidden(ip(text)), Some(expected), "{text}");
        }
    }

    #[test]
    fn public_unicast_addresses_are_allowed() {
        for text in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.255.255",
            "192.0.3.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
            assert_eq!(forbidden(ip(text)), None, "{text}");
        }
    }

    #[test]
    fn only_https_urls_with_a_host_and_no_userinfo_are_endpoints() {
        let cases = [
            ("http://example.com/hook", TargetError::HttpsRequired),
            ("ftp://example.com/hook", TargetError::Scheme),
            ("file:///etc/passwd", TargetError::Scheme),
            ("https://user:pw@example.com/", TargetError::Userinfo),
            ("https://user@example.com/", TargetError::Userinfo),
            ("https://example.com/#x", TargetError::Fragment),
            ("example.com/hook", TargetError::NotAUrl),
            ("https://", TargetError::NotAUrl),
        ];
        for (text, expected) in cases {
            assert_eq!(Target::parse(text, &STRICT), Err(expected), "{text}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(Target::parse(&long, &STRICT), Err(TargetError::TooLong));
        for ok in [
            "https://example.com/hook?token=abc",
            "https://example.com:8443/hook",
            "https://8.8.8.8/hook",
            "https://[2606:4700:4700::1111]:444/",
        ] {
            assert!(Target::parse(ok, &STRICT).is_ok(), "{ok}");
        }
        assert!(Target::parse("http://example.com/hook", &DEVELOPMENT).is_ok());
    }

    #[test]
    fn ip_literal_and_localhost_hosts_are_checked_when_registered() {
        let cases = [
            (
                "https://127.0.0.1/",
                TargetError::ForbiddenAddress(Forbidden::Loopback),
            ),
            (
                "https://169.254.169.254/latest/meta-data/",
                TargetError::ForbiddenAddress(Forbidden::LinkLocal),
            ),
            (
                "https://[::ffff:127.0.0.1]/",
                TargetError::ForbiddenAddress(Forbidden::Loopback),
            ),
            (
                "https://[::1]:8080/",
                TargetError::ForbiddenAddress(Forbidden::Loopback),
            ),
            // The URL parser reads every spelling of an IPv4 address as that address.
            (
                "https://2130706433/",
                TargetError::ForbiddenAddress(Forbidden::Loopback),
            ),
            (
                "https://0x7f.1/",
                TargetError::ForbiddenAddress(Forbidden::Loopback),
            ),
            (
                "https://0/",
                TargetError::ForbiddenAddress(Forbidden::Unspecified),
            ),
            ("https://localhost/", TargetError::LocalhostName),
            ("https://LOCALHOST./", TargetError::LocalhostName),
            ("https://api.localhost/", TargetError::LocalhostName),
        ];
        for (text, expected) in cases {
            assert_eq!(Target::parse(text, &STRICT), Err(expected), "{text}");
            assert!(
                Target::parse(text, &DEVELOPMENT).is_ok(),
                "allowed in development: {text}"
            );
        }
    }

    #[test]
    fn a_target_shows_only_its_origin() {
        let target = Target::parse(
            "https://hooks.example.com:8443/t/SECRETPATH?token=SECRETQUERY",
            &STRICT,
        )
        .unwrap();

        assert_eq!(target.origin(), "https://hooks.example.com:8443");
        let debug = format!("{target:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(
            target.url().as_str().contains("SECRETQUERY"),
            "the request keeps it"
        );
    }

    #[test]
    fn resolved_addresses_are_filtered_and_a_name_with_none_left_is_refused() {
        assert_eq!(
            STRICT.filter(vec![ip("127.0.0.1"), ip("8.8.8.8"), ip("::1")]),
            Ok(vec![ip("8.8.8.8")])
        );
        assert_eq!(
            STRICT.filter(vec![ip("::1"), ip("127.0.0.1")]),
            Err(AddressRefused {
                reason: Forbidden::Loopback
            })
        );
        assert_eq!(
            DEVELOPMENT.filter(vec![ip("127.0.0.1")]),
            Ok(vec![ip("127.0.0.1")])
        );
    }
}
