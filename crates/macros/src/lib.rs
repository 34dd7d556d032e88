//! `#[derive(Args)]`: a function's argument struct is the single source of truth for both its
//! Rust type (deserialized with serde) and its Convex argument validator.
//!
//! The generated code names `::tickethub_runtime::{Args, Validator, Value}`, so the deriving
//! crate must depend on `tickethub-runtime` (which re-exports this derive as
//! `tickethub_runtime::Args`).
//!
//! # Type mapping (named-field structs only)
//!
//! | Rust field type                         | Validator                                   |
//! |-----------------------------------------|---------------------------------------------|
//! | `String`, `&str`                        | `String`                                    |
//! | `f64`, `f32`                            | `Float64` (Convex `v.number()`, a JS number) |
//! | `i8`..`i64`, `u8`..`u32`                | `Int64` (Convex `v.int64()`, a JS bigint)    |
//! | `bool`                                  | `Boolean`                                   |
//! | `Vec<T>`                                | `Array(T)`                                  |
//! | `Vec<u8>` with `#[arg(bytes)]`          | `Bytes`                                     |
//! | `Option<T>` as a field                  | `Optional(T)`: may be absent, but not null (as Convex's `v.optional`) |
//! | `Option<T>` inside another type         | `Union([T, Null])` (`Optional` only means something on a field) |
//! | `BTreeMap<K, V>`, `HashMap<K, V>`       | `Record(K, V)`                              |
//! | `Box<T>`                                | same as `T`                                 |
//! | `Value`, `serde_json::Value`            | `Any` (any path ending in `Value`)          |
//! | any other type `T`                      | `<T as Args>::validator()`, `Any` if `None` |
//!
//! A plain Rust integer is deliberately `int64`, not `number`: clients must send a bigint.
//! Use `f64` for arguments that JS callers pass as ordinary numbers.
//!
//! # Attributes
//!
//! - `#[arg(id = "events")]`: a `String` is `Id("events")` (also inside `Option`/`Vec`).
//! - `#[arg(one_of("valid", "used", "refunded"))]`: a `String` is a union of string literals.
//! - `#[arg(bytes)]`: a `Vec<u8>` is `Bytes` rather than an array of int64.
//! - Honoured serde attributes: `rename_all` on the struct (`camelCase`, `snake_case`,
//!   `PascalCase`, `lowercase`, `UPPERCASE`, `SCREAMING_SNAKE_CASE`, `kebab-case`,
//!   `SCREAMING-KEBAB-CASE`), and on fields `rename`, `default` (the field becomes optional),
//!   `skip`/`skip_deserializing` (left out of the validator). `flatten` is rejected.
//!
//! ```
//! use tickethub_macros::Args;
//! #[derive(serde::Deserialize, Args)]
//! #[serde(rename_all = "camelCase")]
//! struct ScanTicket {
//!     #[arg(id = "tickets")]
//!     ticket_id: String,
//!     #[arg(one_of("valid", "used"))]
//!     new_status: Option<String>,
//! }
//! ```
//!
//! Tuple structs and enums are compile errors; write `impl Args` by hand for those:
//!
//! ```compile_fail
//! #[derive(serde::Deserialize, tickethub_macros::Args)]
//! enum Status { Valid, Used }
//! ```
//! ```compile_fail
//! #[derive(serde::Deserialize, tickethub_macros::Args)]
//! struct Amount(f64);
//! ```
//! ```compile_fail
//! #[derive(serde::Deserialize, tickethub_macros::Args)]
//! struct Bad { #[arg(id = "events")] count: i64 }
//! ```

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    parse_macro_input, Attribute, Data, DeriveInput, Fields, GenericArgument, LitStr,
    PathArguments, Token, Type,
};

#[proc_macro_derive(Args, attributes(arg))]
pub fn derive_args(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    const HINT: &str = "for other shapes, implement `tickethub_runtime::Args` by hand";
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => named.named.iter().collect(),
            Fields::Unit => Vec::new(),
            Fields::Unnamed(_) => {
                let msg = format!("#[derive(Args)] needs a struct with named fields (Convex args are an object); {HINT}");
                return Err(syn::Error::new(input.ident.span(), msg));
            }
        },
        Data::Enum(_) | Data::Union(_) => {
            let msg = format!("#[derive(Args)] only supports structs with named fields; {HINT} (e.g. returning a `Validator::Union`)");
            return Err(syn::Error::new(input.ident.span(), msg));
        }
    };
    let rule = container_rename_rule(&input.attrs)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut inserts = Vec::new();
    for field in fields {
        let serde = SerdeField::parse(&field.attrs)?;
        if serde.skip {
            continue;
        }
        let ident = field.ident.as_ref().expect("named field");
        let name = serde
            .rename
            .unwrap_or_else(|| rule.apply(&ident.unraw().to_string()));
        if !seen.insert(name.clone()) {
            return Err(syn::Error::new(
                ident.span(),
                format!("two fields are both named `{name}` in the arguments object"),
            ));
        }
        let leaf = Leaf::parse(&field.attrs)?;
        let mut validator = validator_for(&field.ty, &leaf, Position::Field)?;
        if serde.default && !is_option(&field.ty) {
            // serde fills in a missing field, so the caller may leave it out.
            validator = quote!(::tickethub_runtime::Validator::Optional(::std::boxed::Box::new(#validator)));
        }
        inserts.push(quote!(fields.insert(::std::string::String::from(#name), #validator);));
    }
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::tickethub_runtime::Args for #ident #ty_generics #where_clause {
            fn validator() -> ::core::option::Option<::tickethub_runtime::Validator> {
                #[allow(unused_mut)]
                let mut fields = ::std::collections::BTreeMap::new();
                #(#inserts)*
                ::core::option::Option::Some(::tickethub_runtime::Validator::Object(fields))
            }
        }
    })
}

/// Whether an `Option` sits directly on a field (absent allowed) or inside another type (null allowed).
#[derive(Clone, Copy)]
enum Position {
    Field,
    Nested,
}

/// What `#[arg(...)]` says the innermost type of a field is, looking through Option/Vec/Box/map values.
enum Leaf {
    Inferred,
    Bytes,
    Id(String),
    OneOf(Vec<String>),
}

impl Leaf {
    fn parse(attrs: &[Attribute]) -> syn::Result<Leaf> {
        let mut leaf = Leaf::Inferred;
        for attr in attrs.iter().filter(|a| a.path().is_ident("arg")) {
            attr.parse_nested_meta(|meta| {
                if !matches!(leaf, Leaf::Inferred) {
                    return Err(meta.error("only one of `bytes`, `id`, `one_of` per field"));
                }
                leaf = if meta.path.is_ident("bytes") {
                    Leaf::Bytes
                } else if meta.path.is_ident("id") {
                    Leaf::Id(meta.value()?.parse::<LitStr>()?.value())
                } else if meta.path.is_ident("one_of") {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    let options = content.parse_terminated(|p| p.parse::<LitStr>(), Token![,])?;
                    if options.is_empty() {
                        return Err(meta.error("`one_of` needs at least one string literal"));
                    }
                    Leaf::OneOf(options.iter().map(LitStr::value).collect())
                } else {
                    return Err(meta.error("unknown #[arg] option; expected `bytes`, `id = \"table\"` or `one_of(\"a\", \"b\")`"));
                };
                Ok(())
            })?;
        }
        Ok(leaf)
    }
}

fn validator_for(ty: &Type, leaf: &Leaf, position: Position) -> syn::Result<TokenStream> {
    let path = match ty {
        Type::Reference(r) => return validator_for(&r.elem, leaf, position),
        Type::Paren(p) => return validator_for(&p.elem, leaf, position),
        Type::Group(g) => return validator_for(&g.elem, leaf, position),
        Type::Path(p) if p.qself.is_none() => &p.path,
        other => {
            return Err(syn::Error::new(
                other.span(),
                "#[derive(Args)] cannot map this type to a validator; use a named struct that implements Args",
            ))
        }
    };
    let segment = path.segments.last().expect("a path has a segment");
    let name = segment.ident.to_string();
    let args = type_args(&segment.arguments);
    let v = quote!(::tickethub_runtime::Validator);
    let boxed = |inner: TokenStream| quote!(::std::boxed::Box::new(#inner));
    let wrapper = match (name.as_str(), args.as_slice()) {
        ("Option", [inner]) => {
            let inner = validator_for(inner, leaf, Position::Nested)?;
            Some(match position {
                Position::Field => {
                    let inner = boxed(inner);
                    quote!(#v::Optional(#inner))
                }
                Position::Nested => quote!(#v::Union(::std::vec![#inner, #v::Null])),
            })
        }
        ("Box", [inner]) => Some(validator_for(inner, leaf, position)?),
        ("Vec", [inner]) if matches!(leaf, Leaf::Bytes) => {
            if !is_named(inner, "u8") {
                return Err(syn::Error::new(
                    inner.span(),
                    "#[arg(bytes)] needs `Vec<u8>`",
                ));
            }
            Some(quote!(#v::Bytes))
        }
        ("Vec", [inner]) => {
            let inner = boxed(validator_for(inner, leaf, Position::Nested)?);
            Some(quote!(#v::Array(#inner)))
        }
        ("BTreeMap" | "HashMap", [key, value]) => {
            let key = boxed(validator_for(key, &Leaf::Inferred, Position::Nested)?);
            let value = boxed(validator_for(value, leaf, Position::Nested)?);
            Some(quote!(#v::Record(#key, #value)))
        }
        _ => None,
    };
    if let Some(tokens) = wrapper {
        return Ok(tokens);
    }
    let is_string = matches!(name.as_str(), "String" | "str");
    let needs = |what: &str| {
        Err(syn::Error::new(
            ty.span(),
            format!("{what} must be on a `String` field (or Option/Vec of one)"),
        ))
    };
    match leaf {
        Leaf::Bytes => return Err(syn::Error::new(ty.span(), "#[arg(bytes)] needs `Vec<u8>`")),
        Leaf::Id(_) | Leaf::OneOf(_) if !is_string => return needs("#[arg(id)]/#[arg(one_of)]"),
        Leaf::Id(table) => return Ok(quote!(#v::Id(::std::string::String::from(#table)))),
        Leaf::OneOf(options) => {
            return Ok(quote!(#v::Union(::std::vec![#(
                #v::Literal(::tickethub_runtime::Value::String(::std::string::String::from(#options)))
            ),*])))
        }
        Leaf::Inferred => {}
    }
    Ok(match name.as_str() {
        "String" | "str" => quote!(#v::String),
        "f64" | "f32" => quote!(#v::Float64),
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" => quote!(#v::Int64),
        "bool" => quote!(#v::Boolean),
        "Value" => quote!(#v::Any),
        // Anything else must implement Args itself; spanned so a missing impl points at the field type.
        _ => {
            quote_spanned!(ty.span()=> <#ty as ::tickethub_runtime::Args>::validator().unwrap_or(#v::Any))
        }
    })
}

fn type_args(arguments: &PathArguments) -> Vec<&Type> {
    match arguments {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|g| match g {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn is_named(ty: &Type, name: &str) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.is_ident(name))
}

fn is_option(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

/// The serde field options that change the shape of the accepted object.
#[derive(Default)]
struct SerdeField {
    rename: Option<String>,
    default: bool,
    skip: bool,
}

impl SerdeField {
    fn parse(attrs: &[Attribute]) -> syn::Result<SerdeField> {
        let mut out = SerdeField::default();
        for_each_serde_option(attrs, |meta| {
            if meta.path.is_ident("rename") {
                out.rename = Some(deserialize_name(&meta)?);
            } else if meta.path.is_ident("default") {
                out.default = true;
                skip_option_value(&meta)?;
            } else if meta.path.is_ident("skip") || meta.path.is_ident("skip_deserializing") {
                out.skip = true;
            } else if meta.path.is_ident("flatten") {
                return Err(meta.error(
                    "#[derive(Args)] does not support #[serde(flatten)]; implement Args by hand",
                ));
            } else {
                skip_option_value(&meta)?;
            }
            Ok(())
        })?;
        Ok(out)
    }
}

fn container_rename_rule(attrs: &[Attribute]) -> syn::Result<RenameRule> {
    let mut rule = RenameRule::None;
    for_each_serde_option(attrs, |meta| {
        if meta.path.is_ident("rename_all") {
            let span = meta.path.span();
            let text = deserialize_name(&meta)?;
            rule = RenameRule::from_str(&text).ok_or_else(|| {
                syn::Error::new(
                    span,
                    format!("#[derive(Args)] does not know rename_all = \"{text}\""),
                )
            })?;
        } else {
            skip_option_value(&meta)?;
        }
        Ok(())
    })?;
    Ok(rule)
}

fn for_each_serde_option(
    attrs: &[Attribute],
    mut f: impl FnMut(syn::meta::ParseNestedMeta) -> syn::Result<()>,
) -> syn::Result<()> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("serde"))
        .try_for_each(|a| a.parse_nested_meta(&mut f))
}

/// `rename = "x"` or `rename(deserialize = "x", serialize = "y")`: the name used when deserializing.
fn deserialize_name(meta: &syn::meta::ParseNestedMeta) -> syn::Result<String> {
    if meta.input.peek(Token![=]) {
        return Ok(meta.value()?.parse::<LitStr>()?.value());
    }
    let mut name = None;
    meta.parse_nested_meta(|inner| {
        let value = inner.value()?.parse::<LitStr>()?.value();
        if inner.path.is_ident("deserialize") {
            name = Some(value);
        }
        Ok(())
    })?;
    name.ok_or_else(|| meta.error("expected a `deserialize = \"...\"` name"))
}

/// Consume an option's `= value` or `(...)` so unrelated serde options parse cleanly.
fn skip_option_value(meta: &syn::meta::ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

/// serde's `rename_all` rules, applied to snake_case Rust field names.
#[derive(Clone, Copy)]
enum RenameRule {
    None,
    Lower,
    Upper,
    Pascal,
    Camel,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

impl RenameRule {
    fn from_str(text: &str) -> Option<RenameRule> {
        Some(match text {
            "snake_case" => RenameRule::None,
            "lowercase" => RenameRule::Lower,
            "UPPERCASE" => RenameRule::Upper,
            "PascalCase" => RenameRule::Pascal,
            "camelCase" => RenameRule::Camel,
            "SCREAMING_SNAKE_CASE" => RenameRule::ScreamingSnake,
            "kebab-case" => RenameRule::Kebab,
            "SCREAMING-KEBAB-CASE" => RenameRule::ScreamingKebab,
            _ => return None,
        })
    }

    fn apply(self, field: &str) -> String {
        let pascal = || {
            field
                .split('_')
                .map(|word| {
                    let mut chars = word.chars();
                    chars
                        .next()
                        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                        .unwrap_or_default()
                })
                .collect::<String>()
        };
        match self {
            RenameRule::None | RenameRule::Lower => field.to_string(),
            RenameRule::Upper | RenameRule::ScreamingSnake => field.to_ascii_uppercase(),
            RenameRule::Pascal => pascal(),
            RenameRule::Camel => {
                let p = pascal();
                let mut chars = p.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
            RenameRule::Kebab => field.replace('_', "-"),
            RenameRule::ScreamingKebab => field.replace('_', "-").to_ascii_uppercase(),
        }
    }
}
