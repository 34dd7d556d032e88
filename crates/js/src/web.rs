//! The Rust half of the web APIs that actions and HTTP actions use (`web.js` is the other half):
//! UTF-8 encoding, randomness, SHA digests and HMAC, base64, and WHATWG URL parsing. Each is a
//! synchronous host function over a well-kept crate (`sha2`, `hmac`, `url`...); the classes
//! (`TextEncoder`, `crypto.subtle`, `URL`, `Headers`, `Request`, `Response`) are JavaScript.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rquickjs::function::Opt;
use rquickjs::{Ctx, Exception, Function, Object, TypedArray};

const WEB: &str = include_str!("web.js");

/// Largest `crypto.getRandomValues` request, as the Web Crypto spec bounds it.
const MAX_RANDOM_BYTES: usize = 65_536;

/// A copy of the bytes a typed array views.
fn bytes_of(array: &TypedArray<'_, u8>) -> Vec<u8> {
    match array.as_raw() {
        // SAFETY: the pointer and length come from QuickJS for a live, attached buffer, and
        // they are copied at once, on the thread that owns the runtime, with no JavaScript
        // running in between that could detach or resize it.
        #[allow(unsafe_code)]
        Some(raw) => unsafe { raw.as_ref() }.to_vec(),
        // A detached buffer reads as empty, as in browsers.
        None => Vec::new(),
    }
}

fn bytes<'js>(ctx: &Ctx<'js>, data: Vec<u8>) -> rquickjs::Result<TypedArray<'js, u8>> {
    TypedArray::new(ctx.clone(), data)
}

/// A hash algorithm of Web Crypto, by its normalized name.
#[derive(Clone, Copy)]
enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn parse(ctx: &Ctx<'_>, name: &str) -> rquickjs::Result<Hash> {
        match name.to_ascii_uppercase().as_str() {
            "SHA-1" => Ok(Hash::Sha1),
            "SHA-256" => Ok(Hash::Sha256),
            "SHA-384" => Ok(Hash::Sha384),
            "SHA-512" => Ok(Hash::Sha512),
            _ => Err(Exception::throw_type(
                ctx,
                &format!(
                    "Unsupported hash algorithm {name:?} (SHA-1, SHA-256, SHA-384 and SHA-512 are)"
                ),
            )),
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Hash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            // HMAC takes a key of any length.
            let mut mac =
                <M as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Hash::Sha1 => run::<Hmac<sha1::Sha1>>(key, data),
            Hash::Sha256 => run::<Hmac<sha2::Sha256>>(key, data),
            Hash::Sha384 => run::<Hmac<sha2::Sha384>>(key, data),
            Hash::Sha512 => run::<Hmac<sha2::Sha512>>(key, data),
        }
    }
}

/// Compare without an early exit, so a signature check leaks nothing through its timing.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A parsed URL as `web.js`'s `URL` keeps it.
fn url_parts<'js>(ctx: &Ctx<'js>, url: &url::Url) -> rquickjs::Result<Object<'js>> {
    use url::quirks;
    let parts = Object::new(ctx.clone())?;
    parts.set("href", quirks::href(url))?;
    parts.set("origin", quirks::origin(url))?;
    parts.set("protocol", quirks::protocol(url))?;
    parts.set("username", quirks::username(url))?;
    parts.set("password", quirks::password(url))?;
    parts.set("host", quirks::host(url))?;
    parts.set("hostname", quirks::hostname(url))?;
    parts.set("port", quirks::port(url))?;
    parts.set("pathname", quirks::pathname(url))?;
    parts.set("search", quirks::search(url))?;
    parts.set("hash", quirks::hash(url))?;
    Ok(parts)
}

fn invalid_url(ctx: &Ctx<'_>, input: &str) -> rquickjs::Error {
    Exception::throw_type(ctx, &format!("Invalid URL: {input:?}"))
}

fn utf8_encode<'js>(ctx: Ctx<'js>, text: String) -> rquickjs::Result<TypedArray<'js, u8>> {
    bytes(&ctx, text.into_bytes())
}

fn utf8_decode(
    ctx: Ctx<'_>,
    data: TypedArray<'_, u8>,
    fatal: bool,
    ignore_bom: bool,
) -> rquickjs::Result<String> {
    let data = bytes_of(&data);
    let body = match data.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) if !ignore_bom => rest,
        _ => &data[..],
    };
    if fatal {
        String::from_utf8(body.to_vec())
            .map_err(|_| Exception::throw_type(&ctx, "The encoded data was not valid UTF-8"))
    } else {
        Ok(String::from_utf8_lossy(body).into_owned())
    }
}

fn random_bytes<'js>(ctx: Ctx<'js>, length: usize) -> rquickjs::Result<TypedArray<'js, u8>> {
    if length > MAX_RANDOM_BYTES {
        return Err(Exception::throw_range(
            &ctx,
            &format!(
                "crypto.getRandomValues: {length} bytes asked, at most {MAX_RANDOM_BYTES} allowed"
            ),
        ));
    }
    let mut data = vec![0u8; length];
    rand::rngs::OsRng.fill_bytes(&mut data);
    bytes(&ctx, data)
}

fn digest<'js>(
    ctx: Ctx<'js>,
    hash: String,
    data: TypedArray<'js, u8>,
) -> rquickjs::Result<TypedArray<'js, u8>> {
    let hash = Hash::parse(&ctx, &hash)?;
    bytes(&ctx, hash.digest(&bytes_of(&data)))
}

fn hmac<'js>(
    ctx: Ctx<'js>,
    hash: String,
    key: TypedArray<'js, u8>,
    data: TypedArray<'js, u8>,
) -> rquickjs::Result<TypedArray<'js, u8>> {
    let hash = Hash::parse(&ctx, &hash)?;
    bytes(&ctx, hash.hmac(&bytes_of(&key), &bytes_of(&data)))
}

fn hmac_verify<'js>(
    ctx: Ctx<'js>,
    hash: String,
    key: TypedArray<'js, u8>,
    signature: TypedArray<'js, u8>,
    data: TypedArray<'js, u8>,
) -> rquickjs::Result<bool> {
    let hash = Hash::parse(&ctx, &hash)?;
    let expected = hash.hmac(&bytes_of(&key), &bytes_of(&data));
    Ok(same_bytes(&expected, &bytes_of(&signature)))
}

fn base64_encode(data: TypedArray<'_, u8>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes_of(&data))
}

fn base64_decode<'js>(ctx: Ctx<'js>, text: String) -> rquickjs::Result<TypedArray<'js, u8>> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| Exception::throw_type(&ctx, &format!("Invalid base64: {e}")))?;
    bytes(&ctx, data)
}

fn url_parse<'js>(
    ctx: Ctx<'js>,
    input: String,
    base: Opt<String>,
) -> rquickjs::Result<Object<'js>> {
    let base = match base.0 {
        Some(base) => Some(url::Url::parse(&base).map_err(|_| invalid_url(&ctx, &base))?),
        None => None,
    };
    let url = url::Url::options()
        .base_url(base.as_ref())
        .parse(&input)
        .map_err(|_| invalid_url(&ctx, &input))?;
    url_parts(&ctx, &url)
}

fn url_set<'js>(
    ctx: Ctx<'js>,
    href: String,
    part: String,
    value: String,
) -> rquickjs::Result<Object<'js>> {
    use url::quirks;
    let mut url = url::Url::parse(&href).map_err(|_| invalid_url(&ctx, &href))?;
    // Setters that the spec lets fail leave the URL as it was, as in browsers.
    let _ = match part.as_str() {
        "href" => {
            quirks::set_href(&mut url, &value).map_err(|_| invalid_url(&ctx, &value))?;
            Ok(())
        }
        "protocol" => quirks::set_protocol(&mut url, &value),
        "username" => quirks::set_username(&mut url, &value),
        "password" => quirks::set_password(&mut url, &value),
        "host" => quirks::set_host(&mut url, &value),
        "hostname" => quirks::set_hostname(&mut url, &value),
        "port" => quirks::set_port(&mut url, &value),
        "pathname" => {
            quirks::set_pathname(&mut url, &value);
            Ok(())
        }
        "search" => {
            quirks::set_search(&mut url, &value);
            Ok(())
        }
        "hash" => {
            quirks::set_hash(&mut url, &value);
            Ok(())
        }
        other => {
            return Err(Exception::throw_type(
                &ctx,
                &format!("URL has no settable part {other:?}"),
            ))
        }
    };
    url_parts(&ctx, &url)
}

fn form_decode(text: String) -> Vec<Vec<String>> {
    let text = text.strip_prefix('?').unwrap_or(&text);
    url::form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| vec![k.into_owned(), v.into_owned()])
        .collect()
}

fn form_encode(pairs: Vec<Vec<String>>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for pair in &pairs {
        if let [name, value] = pair.as_slice() {
            out.append_pair(name, value);
        }
    }
    out.finish()
}

/// Install `__tickethub_web` (the host functions) and run `web.js`, which takes it.
pub(crate) fn install(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let web = Object::new(ctx.clone())?;
    web.set("utf8Encode", Function::new(ctx.clone(), utf8_encode)?)?;
    web.set("utf8Decode", Function::new(ctx.clone(), utf8_decode)?)?;
    web.set("randomBytes", Function::new(ctx.clone(), random_bytes)?)?;
    web.set("digest", Function::new(ctx.clone(), digest)?)?;
    web.set("hmac", Function::new(ctx.clone(), hmac)?)?;
    web.set("hmacVerify", Function::new(ctx.clone(), hmac_verify)?)?;
    web.set("base64Encode", Function::new(ctx.clone(), base64_encode)?)?;
    web.set("base64Decode", Function::new(ctx.clone(), base64_decode)?)?;
    web.set("urlParse", Function::new(ctx.clone(), url_parse)?)?;
    web.set("urlSet", Function::new(ctx.clone(), url_set)?)?;
    web.set("formDecode", Function::new(ctx.clone(), form_decode)?)?;
    web.set("formEncode", Function::new(ctx.clone(), form_encode)?)?;
    ctx.globals().set("__tickethub_web", web)?;
    ctx.eval::<(), _>(WEB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2() {
        let mac = Hash::Sha256.hmac(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn byte_comparison_needs_equal_length_and_content() {
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"ab"));
    }
}
