//! The dashboard's static assets, embedded with `include_bytes!` so the one binary serves the
//! whole UI offline. The UI is plain ES modules and CSS written by hand: no framework, no build
//! step, so building the binary needs no Node.js.
//!
//! The router serves `/dashboard` (the page) and `/dashboard/<file>` through [`asset`], adding
//! [`SECURITY_HEADERS`] to every answer. The page gets its data from the admin-only
//! `/api/dashboard/*` endpoints.

/// One embedded file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! assets {
    ($($name:literal => $type:expr),* $(,)?) => {
        /// Every embedded file, by its path under `/dashboard/`.
        pub const ASSETS: &[(&str, Asset)] = &[
            $(($name, Asset { content_type: $type, bytes: include_bytes!(concat!("../assets/", $name)) }),)*
        ];
    };
}

assets! {
    "index.html" => HTML,
    "app.css" => CSS,
    "favicon.svg" => SVG,
    "js/main.js" => JS,
    "js/api.js" => JS,
    "js/dom.js" => JS,
    "js/format.js" => JS,
    "js/data.js" => JS,
    "js/functions.js" => JS,
    "js/logs.js" => JS,
    "js/schedules.js" => JS,
    "js/schema.js" => JS,
    "js/health.js" => JS,
}

/// Headers sent with every dashboard answer: a strict CSP (no inline script, no eval, nothing
/// from elsewhere), no framing, no MIME sniffing, no referrer leaking the deployment URL.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    // Assets change with the binary; revalidation is cheap on loopback.
    ("cache-control", "no-cache"),
];

/// The file for `path`, the part of the URL after `/dashboard` (`""`, `"/"` and any path
/// without a file extension give the page itself, so hash and deep links load it).
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let name = path.trim_start_matches('/');
    let name = if name.is_empty() { "index.html" } else { name };
    ASSETS
        .iter()
        .find(|(candidate, _)| *candidate == name)
        .map(|(_, asset)| (asset.content_type, asset.bytes))
}

/// Total size of the embedded assets, in bytes (the budget is 300 KB).
pub fn total_size() -> usize {
    ASSETS.iter().map(|(_, asset)| asset.bytes.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_every_file_are_found() {
        assert_eq!(asset("").unwrap().0, HTML);
        assert_eq!(asset("/").unwrap().0, HTML);
        assert_eq!(asset("/js/main.js").unwrap().0, JS);
        assert!(asset("/nope.js").is_none());
        assert!(asset("/../Cargo.toml").is_none());
    }

    #[test]
    fn assets_stay_within_the_300_kb_budget() {
        let total = total_size();
        assert!(total <= 300 * 1024, "dashboard assets are {total} bytes");
    }

    /// Document content is data, never markup: no HTML parsing sinks and no eval anywhere.
    #[test]
    fn no_markup_sinks_or_eval_in_the_scripts() {
        const FORBIDDEN: &[&str] = &[
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout(\"",
        ];
        for (name, asset) in ASSETS {
            let text = std::str::from_utf8(asset.bytes).unwrap();
            for bad in FORBIDDEN {
                assert!(!text.contains(bad), "{name} uses {bad}");
            }
        }
    }

    /// The CSP forbids inline script and style; the page must not depend on them.
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = std::str::from_utf8(asset("").unwrap().1).unwrap();
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("style="), "inline style attribute");
        assert!(!page.contains("<style"), "inline style element");
        assert!(!page.contains(" on"), "inline event handler");
    }

    #[test]
    fn every_module_the_scripts_import_is_embedded() {
        for (name, file_asset) in ASSETS.iter().filter(|(n, _)| n.ends_with(".js")) {
            let text = std::str::from_utf8(file_asset.bytes).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let spec = line
                    .split('"')
                    .nth(1)
                    .unwrap_or_else(|| panic!("{name}: {line}"));
                let file = spec.trim_start_matches("./");
                assert!(
                    asset(&format!("/js/{file}")).is_some(),
                    "{name} imports {spec}"
                );
            }
        }
    }
}
