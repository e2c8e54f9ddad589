//! Who may reach `/mcp`: the `Host` and `Origin` checks against DNS rebinding and cross-site
//! pages. A page on another site, or one whose name was rebound to 127.0.0.1, must not drive the
//! tools with a browser's help. The rule lives here alone (rmcp's own copy of the checks is
//! turned off), so each refusal can name the header and the flag that allows it.

use axum::http::{HeaderMap, Uri, header};

/// The names and browser origins `/mcp` accepts.
#[derive(Debug, Clone)]
pub struct AllowedPeers {
    /// Host names, lowercase, without brackets; an entry with a port (`name:8443`) matches that
    /// port only.
    hosts: Vec<Authority>,
    /// Origins as (scheme, host, port); a `None` port matches any port.
    origins: Vec<Origin>,
}

/// Which header was refused, with the value as sent (neither is a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `Host` (or the request's authority) names a host not allowed.
    Host(String),
    /// `Origin` is not the hub's own nor one of `--mcp-allowed-origin`.
    Origin(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl AllowedPeers {
    /// The loopback names, `extra_hosts` (`--allowed-host`), and as origins the hub's own
    /// loopback ones on `port`, `https://` on each extra host, and `extra_origins`
    /// (`--mcp-allowed-origin`).
    pub fn new(port: u16, extra_hosts: &[String], extra_origins: &[String]) -> Self {
        let mut hosts: Vec<Authority> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|h| Authority {
                host: (*h).to_owned(),
                port: None,
            })
            .collect();
        let extra: Vec<Authority> = extra_hosts
            .iter()
            .filter_map(|h| parse_authority(h))
            .collect();
        let mut origins: Vec<Origin> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|h| Origin {
                scheme: "http".to_owned(),
                host: (*h).to_owned(),
                port: Some(port),
            })
            .collect();
        // A hub reached by a real name sits behind a TLS proxy: its pages are https there.
        origins.extend(extra.iter().map(|h| Origin {
            scheme: "https".to_owned(),
            host: h.host.clone(),
            port: h.port,
        }));
        origins.extend(extra_origins.iter().filter_map(|o| parse_origin(o)));
        hosts.extend(extra);
        Self { hosts, origins }
    }

    /// `Ok` when the request's host is allowed and its `Origin`, if any, is too.
    pub fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))
            .unwrap_or_default();
        let allowed_host = parse_authority(&host).is_some_and(|sent| {
            self.hosts.iter().any(|allowed| {
                allowed.host == sent.host && allowed.port.is_none_or(|p| sent.port == Some(p))
            })
        });
        if !allowed_host {
            return Err(Refusal::Host(host));
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            // Not a browser (or a same-origin GET): nothing to check.
            return Ok(());
        };
        let text = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        let allowed_origin = parse_origin(&text).is_some_and(|sent| {
            self.origins.iter().any(|allowed| {
                allowed.scheme == sent.scheme
                    && allowed.host == sent.host
                    && allowed.port.is_none_or(|p| sent.port == Some(p))
            })
        });
        if allowed_origin {
            Ok(())
        } else {
            Err(Refusal::Origin(text))
        }
    }
}

impl Refusal {
    /// What was refused and the flag that allows it, in one sentence or two.
    pub fn explain(&self) -> String {
        match self {
            Self::Host(host) if host.is_empty() => "Forbidden: the request has no Host header; /mcp needs one (DNS-rebinding protection). Send Host with the name the hub is reached by.".to_owned(),
            Self::Host(host) => format!(
                "Forbidden: the Host header {host:?} is not a name this hub serves /mcp under (DNS-rebinding protection; only loopback names are by default). If clients reach the hub by that name (a reverse proxy, a real DNS name), start it with --allowed-host {}.",
                parse_authority(host).map_or_else(|| host.clone(), |a| a.host)
            ),
            Self::Origin(origin) => format!(
                "Forbidden: the Origin header {origin:?} may not use /mcp (a page of another site must not drive the tools; only the hub's own origins are allowed by default). To allow a browser app served from that origin, start the hub with --mcp-allowed-origin {origin}."
            ),
        }
    }

    /// The refused header's name.
    pub fn header(&self) -> &'static str {
        match self {
            Self::Host(_) => "Host",
            Self::Origin(_) => "Origin",
        }
    }
}

/// `name`, `name:port`, `[v6]`, `[v6]:port` or a bare IPv6 address, lowercased.
fn parse_authority(text: &str) -> Option<Authority> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    // A bare IPv6 address (`::1`) has colons but no brackets: all of it is the host.
    if text.matches(':').count() > 1 && !text.starts_with('[') {
        return Some(Authority {
            host: text.to_ascii_lowercase(),
            port: None,
        });
    }
    let authority: axum::http::uri::Authority = text.parse().ok()?;
    Some(Authority {
        host: authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
        port: authority.port_u16(),
    })
}

/// `scheme://host[:port]`, the port defaulting to the scheme's (80, 443); `:*` for any port.
fn parse_origin(text: &str) -> Option<Origin> {
    let text = text.trim().trim_end_matches('/');
    let (text, any_port) = match text.strip_suffix(":*") {
        Some(base) => (base, true),
        None => (text, false),
    };
    let uri: Uri = text.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    let default_port = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    Some(Origin {
        host: authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
        port: if any_port {
            None
        } else {
            authority.port_u16().or(default_port)
        },
        scheme,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(peers: &AllowedPeers, host: &str, origin: Option<&str>) -> Result<(), Refusal> {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        peers.check(&Uri::from_static("/mcp"), &headers)
    }

    #[test]
    fn loopback_names_and_own_origins_pass_others_are_named() {
        let peers = AllowedPeers::new(8787, &[], &[]);
        for host in ["localhost", "127.0.0.1:8787", "[::1]:8787", "LOCALHOST:1"] {
            assert_eq!(check(&peers, host, None), Ok(()), "{host}");
        }
        assert_eq!(
            check(&peers, "127.0.0.1:8787", Some("http://127.0.0.1:8787")),
            Ok(())
        );
        assert_eq!(
            check(&peers, "evil.example", None),
            Err(Refusal::Host("evil.example".into()))
        );
        assert_eq!(
            check(&peers, "localhost:8787", Some("http://localhost:9999")),
            Err(Refusal::Origin("http://localhost:9999".into()))
        );
    }

    #[test]
    fn allowed_hosts_and_origins_extend_the_lists() {
        let peers = AllowedPeers::new(
            8787,
            &["hub.example.com".into(), "other.example:8443".into()],
            &["https://app.example".into(), "http://dev.example:*".into()],
        );
        assert_eq!(check(&peers, "hub.example.com:443", None), Ok(()));
        assert_eq!(check(&peers, "other.example:8443", None), Ok(()));
        assert!(check(&peers, "other.example:9000", None).is_err());
        let host = "hub.example.com";
        assert_eq!(check(&peers, host, Some("https://hub.example.com")), Ok(()));
        assert_eq!(check(&peers, host, Some("https://app.example:443")), Ok(()));
        assert_eq!(check(&peers, host, Some("http://dev.example:3000")), Ok(()));
        assert!(check(&peers, host, Some("http://app.example")).is_err());
        assert!(check(&peers, host, Some("null")).is_err());
    }
}
