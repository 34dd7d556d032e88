//! Each derived validator is compared with one built by hand.

#![allow(dead_code)] // The structs exist for their derived validators; fields are never read.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use tickethub_runtime::Args;
use tickethub_value::validator::v;
use tickethub_value::{Validator, Value};

fn object(fields: &[(&str, Validator)]) -> Validator {
    v::object(
        fields
            .iter()
            .map(|(name, validator)| (*name, validator.clone())),
    )
}

fn derived<T: Args>() -> Validator {
    T::validator().expect("derived Args always returns an object validator")
}

#[derive(Deserialize, tickethub_macros::Args)]
struct Scalars {
    name: String,
    price: f64,
    ratio: f32,
    count: i64,
    small: i32,
    unsigned: u32,
    active: bool,
}

#[test]
fn scalars_map_to_their_convex_types() {
    let expected = object(&[
        ("name", v::string()),
        ("price", v::float64()),
        ("ratio", v::float64()),
        ("count", v::int64()),
        ("small", v::int64()),
        ("unsigned", v::int64()),
        ("active", v::boolean()),
    ]);
    assert_eq!(derived::<Scalars>(), expected);
}

#[derive(Deserialize, tickethub_macros::Args)]
struct Containers {
    tags: Vec<String>,
    note: Option<String>,
    matrix: Vec<Vec<f64>>,
    maybe_items: Vec<Option<i64>>,
    scores: BTreeMap<String, f64>,
    counts: HashMap<String, Vec<bool>>,
    #[allow(clippy::box_collection)] // on purpose: `Box<T>` maps to T's validator
    boxed: Box<String>,
    #[arg(bytes)]
    payload: Vec<u8>,
    #[arg(bytes)]
    thumbnail: Option<Vec<u8>>,
    raw_numbers: Vec<u8>,
    anything: serde_json::Value,
}

#[test]
fn containers_wrap_their_element_validators() {
    let expected = object(&[
        ("tags", v::array(v::string())),
        ("note", v::optional(v::string())),
        ("matrix", v::array(v::array(v::float64()))),
        // Inside an array, Option means "may be null", not "may be absent".
        ("maybe_items", v::array(v::nullable(v::int64()))),
        ("scores", v::record(v::string(), v::float64())),
        ("counts", v::record(v::string(), v::array(v::boolean()))),
        ("boxed", v::string()),
        ("payload", v::bytes()),
        ("thumbnail", v::optional(v::bytes())),
        ("raw_numbers", v::array(v::int64())),
        ("anything", v::any()),
    ]);
    assert_eq!(derived::<Containers>(), expected);
}

#[derive(Deserialize, tickethub_macros::Args)]
#[serde(rename_all = "camelCase")]
struct ScanTicket {
    #[arg(id = "tickets")]
    ticket_id: String,
    #[arg(id = "events")]
    event_id: Option<String>,
    #[arg(id = "users")]
    scanned_by: Vec<String>,
    #[arg(one_of("valid", "used", "refunded"))]
    new_status: String,
    #[arg(one_of("vip"))]
    seat_class: Option<String>,
    #[serde(rename = "gate")]
    gate_number: i64,
    r#type: String,
}

#[test]
fn ids_literal_unions_and_camel_case_names() {
    let status =
        v::union(["valid", "used", "refunded"].map(|s| v::literal(Value::String(s.into()))));
    let expected = object(&[
        ("ticketId", v::id("tickets")),
        ("eventId", v::optional(v::id("events"))),
        ("scannedBy", v::array(v::id("users"))),
        ("newStatus", status),
        (
            "seatClass",
            v::optional(v::union([v::literal(Value::String("vip".into()))])),
        ),
        ("gate", v::int64()),
        ("type", v::string()),
    ]);
    assert_eq!(derived::<ScanTicket>(), expected);
}

#[derive(Deserialize, tickethub_macros::Args)]
#[serde(rename_all = "camelCase")]
struct Seat {
    row_label: String,
    number: i64,
}

#[derive(Deserialize, tickethub_macros::Args)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Order {
    #[arg(id = "events")]
    event_id: String,
    seats: Vec<Seat>,
    preferred_seat: Option<Seat>,
    seats_by_section: BTreeMap<String, Seat>,
}

#[test]
fn nested_structs_use_their_own_validators() {
    let seat = object(&[("rowLabel", v::string()), ("number", v::int64())]);
    let expected = object(&[
        ("eventId", v::id("events")),
        ("seats", v::array(seat.clone())),
        ("preferredSeat", v::optional(seat.clone())),
        ("seatsBySection", v::record(v::string(), seat)),
    ]);
    assert_eq!(derived::<Order>(), expected);
}

/// A hand-written impl returning None (accept anything) is `any` where it is nested.
#[derive(Deserialize)]
struct Opaque {}

impl Args for Opaque {
    fn validator() -> Option<Validator> {
        None
    }
}

#[derive(Deserialize, tickethub_macros::Args)]
struct HoldsOpaque {
    blob: Opaque,
    blobs: Option<Vec<Opaque>>,
}

#[test]
fn a_nested_none_validator_becomes_any() {
    let expected = object(&[
        ("blob", v::any()),
        ("blobs", v::optional(v::array(v::any()))),
    ]);
    assert_eq!(derived::<HoldsOpaque>(), expected);
}

#[derive(Deserialize, tickethub_macros::Args)]
struct Unit;

#[derive(Deserialize, tickethub_macros::Args)]
struct Empty {}

#[test]
fn empty_structs_take_an_empty_object() {
    assert_eq!(derived::<Unit>(), object(&[]));
    assert_eq!(derived::<Empty>(), object(&[]));
}

#[derive(Deserialize, tickethub_macros::Args)]
#[serde(rename_all = "snake_case")]
struct SerdeOptions {
    page_size: f64,
    #[serde(default)]
    include_archived: bool,
    #[serde(default = "default_cursor")]
    cursor: Option<String>,
    #[serde(skip)]
    cached: Vec<String>,
    #[serde(skip_deserializing)]
    computed: i64,
    #[serde(rename(serialize = "outName", deserialize = "inName"))]
    two_names: String,
}

fn default_cursor() -> Option<String> {
    None
}

#[test]
fn serde_options_shape_the_object() {
    let expected = object(&[
        ("page_size", v::float64()),
        // serde fills missing defaulted fields, so the caller may omit them.
        ("include_archived", v::optional(v::boolean())),
        ("cursor", v::optional(v::string())),
        ("inName", v::string()),
    ]);
    assert_eq!(derived::<SerdeOptions>(), expected);
}

#[derive(Deserialize, tickethub_macros::Args)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
struct Kebab {
    max_price: f64,
}

#[derive(Deserialize, tickethub_macros::Args)]
#[serde(rename_all = "PascalCase")]
struct Pascal {
    max_price: f64,
}

#[test]
fn other_rename_rules_follow_serde() {
    assert_eq!(derived::<Kebab>(), object(&[("MAX-PRICE", v::float64())]));
    assert_eq!(derived::<Pascal>(), object(&[("MaxPrice", v::float64())]));
}

/// Any type path ending in `Value` (ours or serde_json's) accepts anything.
mod local {
    #[derive(serde::Deserialize)]
    pub struct Value {}
}

#[derive(Deserialize, tickethub_macros::Args)]
struct AnyValue {
    data: local::Value,
}

#[test]
fn value_fields_are_any() {
    assert_eq!(derived::<AnyValue>(), object(&[("data", v::any())]));
}

/// The derived type really is usable where the runtime asks for `Args`.
#[test]
fn derived_types_meet_the_args_bound() {
    fn validator_of<A: Args>() -> Option<Validator> {
        A::validator()
    }
    assert!(
        matches!(validator_of::<ScanTicket>(), Some(Validator::Object(fields)) if fields.len() == 7)
    );
}
