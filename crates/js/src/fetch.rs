//! `fetch` for pushed actions, over `reqwest`, to the addresses the server allows.
//!
//! By default an action reaches public addresses only: a name that resolves to a loopback,
//! private, link-local or otherwise internal address is refused, checked on the resolved
//! addresses (so DNS cannot smuggle one in) and on every redirect. An operator opens more with
//! `TICKETHUB_FETCH_ALLOW_HOSTS`, a comma-separated list of host names or IP addresses (the tests
//! open `127.0.0.1`).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value as Json};
use tickethub_runtime::FnError;

const ALLOW_ENV: &str = "TICKETHUB_FETCH_ALLOW_HOSTS";
/// A fetch that has not finished by then fails (the action's own limit is longer).
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 10;

/// Hosts (lowercase names or IP addresses) that may be reached even when internal.
static ALLOWED: LazyLock<HashSet<String>> = LazyLock::new(|| {
    std::env::var(ALLOW_ENV)
        .unwrap_or_default()
        .split(',')
        .map(|h| {
            h.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        })
        .filter(|h| !h.is_empty())
        .collect()
});

fn allowed_host(host: &str) -> bool {
    ALLOWED.contains(&host.to_ascii_lowercase())
}

/// Whether `ip` is an address on the public internet.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                // 100.64.0.0/10, shared address space (carrier-grade NAT).
                || (a == 100 && (64..128).contains(&b))
                // 198.18.0.0/15, benchmarking.
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Why a URL may not be fetched, or `None` if it may (names are checked again once resolved).
fn refusal(url: &reqwest::Url) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Some(format!(
            "fetch() supports http and https URLs only, not {}:",
            url.scheme()
        ));
    }
    let host = url.host_str()?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(ip) if !is_public(ip) && !allowed_host(literal) => Some(format!(
            "fetch() to {host} is not allowed: it is an internal address (the server's {ALLOW_ENV} lists the ones actions may reach)"
        )),
        _ => None,
    }
}

/// Resolves names, keeping only the addresses an action may reach.
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let open = allowed_host(&host);
            let usable: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| open || is_public(addr.ip()))
                .collect();
            if usable.is_empty() {
                return Err(format!(
                    "{host} resolves only to internal addresses, which actions may not reach (see {ALLOW_ENV})"
                )
                .into());
            }
            Ok(Box::new(usable.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver))
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match refusal(attempt.url()) {
                Some(why) => attempt.error(why),
                None => attempt.follow(),
            }
        }))
        .build()
        .expect("an HTTP client with a custom resolver builds")
});

fn fetch_error(what: impl std::fmt::Display) -> FnError {
    FnError::msg(format!("fetch failed: {what}"))
}

/// Send the request `web.js`'s `fetch` described and read the whole answer.
pub(crate) async fn send(args: &Json) -> Result<Json, FnError> {
    let url_text = args
        .get("url")
        .and_then(Json::as_str)
        .ok_or_else(|| fetch_error("no URL"))?;
    let url = reqwest::Url::parse(url_text).map_err(|e| fetch_error(format!("{url_text}: {e}")))?;
    if let Some(why) = refusal(&url) {
        return Err(FnError::msg(why));
    }
    let method = args.get("method").and_then(Json::as_str).unwrap_or("GET");
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| fetch_error(format!("invalid method {method:?}")))?;
    let mut request = CLIENT.request(method, url);
    for pair in args
        .get("headers")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(name), Some(value)) = (
            pair.get(0).and_then(Json::as_str),
            pair.get(1).and_then(Json::as_str),
        ) {
            request = request.header(name, value);
        }
    }
    if let Some(body) = args.get("body").and_then(Json::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| FnError::Internal(format!("fetch body: {e}")))?;
        request = request.body(bytes);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| fetch_error(describe(&e)))?;
    let limit = *tickethub_knobs::JS_FETCH_BODY_LIMIT_BYTES;
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(fetch_error(format!(
            "the response body is larger than {limit} bytes"
        )));
    }
    let status = response.status();
    let final_url = response.url().to_string();
    let headers: Vec<Json> = response
        .headers()
        .iter()
        .filter_map(|(name, value)| Some(json!([name.as_str(), value.to_str().ok()?])))
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| fetch_error(describe(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(fetch_error(format!(
                "the response body is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(json!({
        "status": status.as_u16(),
        "statusText": status.canonical_reason().unwrap_or(""),
        "headers": headers,
        "body": base64::engine::general_purpose::STANDARD.encode(&body),
        "url": final_url,
        "redirected": final_url != url_text,
    }))
}

/// reqwest's error with its causes (its own text alone says only "error sending request").
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn literal_internal_urls_and_other_schemes_are_refused() {
        let refused = |u: &str| refusal(&reqwest::Url::parse(u).unwrap());
        assert!(refused("http://169.254.169.254/latest/meta-data").is_some());
        assert!(refused("http://[::1]:8080/").is_some());
        assert!(refused("file:///etc/passwd").is_some());
        assert!(refused("https://example.com/").is_none());
    }
}
