//! Property test: random index range scans agree with a naive in-memory model that filters and
//! sorts the documents by their Value tuples.

mod support;

use proptest::prelude::*;
use tickethub_store::{Bound, DocReader, IndexQuery, Order, Schema, StoreError, StoreOptions};
use tickethub_value::{Object, Value};

fn value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        (-3i64..3).prop_map(|i| Some(Value::Int64(i))),
        (-3i32..3).prop_map(|i| Some(Value::Float64(f64::from(i) / 2.0))),
        any::<bool>().prop_map(|b| Some(Value::Boolean(b))),
        "[ab]{0,2}".prop_map(|s| Some(Value::String(s))),
        proptest::collection::vec(0u8..3, 0..2).prop_map(|b| Some(Value::Bytes(b))),
    ]
}

#[derive(Clone, Debug)]
struct QuerySpec {
    eq: Vec<Option<Value>>,
    lower: Option<(Option<Value>, bool)>,
    upper: Option<(Option<Value>, bool)>,
    desc: bool,
    limit: Option<usize>,
}

fn query_spec() -> impl Strategy<Value = QuerySpec> {
    (
        proptest::collection::vec(value(), 0..=2),
        proptest::option::of((value(), any::<bool>())),
        proptest::option::of((value(), any::<bool>())),
        any::<bool>(),
        proptest::option::of(1usize..6),
    )
        .prop_map(|(eq, lower, upper, desc, limit)| {
            // Bounds need a field after the eq prefix and a real value (undefined only in eq).
            let (lower, upper) = if eq.len() == 2 {
                (None, None)
            } else {
                (lower, upper)
            };
            let fix = |b: Option<(Option<Value>, bool)>| {
                b.map(|(v, inc)| (Some(v.unwrap_or(Value::Null)), inc))
            };
            QuerySpec {
                eq,
                lower: fix(lower),
                upper: fix(upper),
                desc,
                limit,
            }
        })
}

const FIELDS: [&str; 2] = ["a", "b"];

fn run(
    docs: Vec<(Option<Value>, Option<Value>)>,
    specs: Vec<QuerySpec>,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let schema =
        Schema::from_toml("[tables.t]\nvalidate = false\nindexes.by_ab = [\"a\", \"b\"]\n")
            .unwrap();
    let store = support::open(
        dir.path(),
        schema,
        StoreOptions {
            readers: 1,
            max_batch: 8,
            durable: false,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let inserted = docs.clone();
    let (ids, _) = store
        .mutate(move |tx| {
            let mut ids = Vec::new();
            for (a, b) in inserted {
                let mut o = Object::new();
                if let Some(a) = a {
                    o.insert("a".into(), a);
                }
                if let Some(b) = b {
                    o.insert("b".into(), b);
                }
                ids.push(tx.insert("t", o)?);
            }
            Ok::<_, StoreError>(ids)
        })
        .unwrap();
    let r = store.read().unwrap();
    for spec in specs {
        let mut q = IndexQuery {
            table: "t".into(),
            index: "by_ab".into(),
            eq: spec
                .eq
                .iter()
                .enumerate()
                .map(|(i, v)| (FIELDS[i].to_string(), v.clone()))
                .collect(),
            lower: None,
            upper: None,
            order: if spec.desc { Order::Desc } else { Order::Asc },
        };
        let bound_field = FIELDS.get(spec.eq.len()).copied();
        if let Some(field) = bound_field {
            q.lower = spec.lower.clone().map(|(v, inclusive)| Bound {
                field: field.into(),
                value: v.unwrap(),
                inclusive,
            });
            q.upper = spec.upper.clone().map(|(v, inclusive)| Bound {
                field: field.into(),
                value: v.unwrap(),
                inclusive,
            });
        }
        let got: Vec<_> = r
            .collect(&q, spec.limit)
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();

        // The model: insertion order is creation order, which breaks ties.
        let mut model: Vec<(usize, [Option<Value>; 2])> = docs
            .iter()
            .enumerate()
            .map(|(i, (a, b))| (i, [a.clone(), b.clone()]))
            .collect();
        model.retain(|(_, vals)| spec.eq.iter().enumerate().all(|(i, v)| vals[i] == *v));
        if let Some(pos) = bound_field.map(|_| spec.eq.len()) {
            if let Some((x, inclusive)) = &spec.lower {
                model.retain(|(_, vals)| {
                    if *inclusive {
                        vals[pos] >= *x
                    } else {
                        vals[pos] > *x
                    }
                });
            }
            if let Some((x, inclusive)) = &spec.upper {
                model.retain(|(_, vals)| {
                    if *inclusive {
                        vals[pos] <= *x
                    } else {
                        vals[pos] < *x
                    }
                });
            }
        }
        model.sort_by(|x, y| x.1.cmp(&y.1).then(x.0.cmp(&y.0)));
        if spec.desc {
            model.reverse();
        }
        if let Some(limit) = spec.limit {
            model.truncate(limit);
        }
        let want: Vec<_> = model.iter().map(|(i, _)| ids[*i]).collect();
        prop_assert_eq!(got, want, "query {:?}", spec);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn index_scans_match_the_model(
        docs in proptest::collection::vec((value(), value()), 0..40),
        specs in proptest::collection::vec(query_spec(), 1..12),
    ) {
        run(docs, specs)?;
    }
}
