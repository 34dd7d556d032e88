//! Index range queries: `eq` on a prefix of the index fields, then at most one lower and one upper
//! bound on the next field; ascending or descending; limits honoured at the storage level.

use tickethub_value::key::{encode_element, prefix_successor};
use tickethub_value::{DocumentId, Value};

use crate::catalog::{id_key, Catalog, IndexKind, TableInfo};
use crate::log::IndexId;
use crate::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Bound {
    pub field: String,
    pub value: Value,
    pub inclusive: bool,
}

/// A range over one index. `index` is a user index name, or `by_creation_time` / `by_id`.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexQuery {
    pub table: String,
    pub index: String,
    /// `eq` constraints, in order; `None` matches documents missing the field.
    pub eq: Vec<(String, Option<Value>)>,
    pub lower: Option<Bound>,
    pub upper: Option<Bound>,
    pub order: Order,
}

impl IndexQuery {
    /// A full scan of `table` in creation order.
    pub fn full_scan(table: &str, order: Order) -> IndexQuery {
        IndexQuery {
            table: table.to_string(),
            index: "by_creation_time".to_string(),
            eq: vec![],
            lower: None,
            upper: None,
            order,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PageRequest {
    /// Opaque cursor from a previous page; None for the first page.
    pub cursor: Option<String>,
    /// 1..=32000.
    pub num_items: usize,
}

#[derive(Clone, Debug)]
pub struct Page {
    pub page: Vec<crate::Document>,
    pub is_done: bool,
    pub continue_cursor: String,
}

/// A validated query, resolved to one contiguous key range `[start, end)` of one index.
pub(crate) struct ScanPlan {
    pub index_id: IndexId,
    pub kind: IndexKind,
    pub start: Vec<u8>,
    /// `None`: up to the end of the index.
    pub end: Option<Vec<u8>>,
    pub order: Order,
}

impl ScanPlan {
    pub fn is_empty(&self) -> bool {
        self.end.as_ref().is_some_and(|end| self.start >= *end)
    }
}

/// Check `query` against the catalog (table, index, eq prefix, bound field) and compute its range.
pub(crate) fn plan(catalog: &Catalog, query: &IndexQuery) -> Result<ScanPlan, StoreError> {
    let table = catalog
        .table(&query.table)
        .ok_or_else(|| StoreError::UnknownTable(query.table.clone()))?;
    let index = table
        .index(&query.index)
        .ok_or_else(|| StoreError::UnknownIndex {
            table: query.table.clone(),
            index: query.index.clone(),
        })?;
    let fields = index.queryable_fields();
    // Built only for an error message: formatting it for every query was a tenth of a point
    // read's cost.
    let where_ = || format!("Index {}.{}", query.table, query.index);
    if query.eq.len() > fields.len() {
        return Err(StoreError::InvalidIndexRange(format!(
            "{} has {} fields ({}), but the query has {} `eq` conditions.",
            where_(),
            fields.len(),
            fields.join(", "),
            query.eq.len()
        )));
    }
    for (i, (field, _)) in query.eq.iter().enumerate() {
        if *field != fields[i] {
            return Err(StoreError::InvalidIndexRange(format!(
                "{}: `eq` conditions must follow the index fields in order; `eq` number {} is on `{field}`, expected `{}`.",
                where_(),
                i + 1,
                fields[i]
            )));
        }
    }
    let next_field = fields.get(query.eq.len());
    for bound in query.lower.iter().chain(query.upper.iter()) {
        match next_field {
            Some(expected) if *expected == bound.field => {}
            Some(expected) => {
                return Err(StoreError::InvalidIndexRange(format!(
                    "{}: a range bound must be on the field right after the `eq` fields; the bound is on `{}`, expected `{expected}`.",
                    where_(),
                    bound.field
                )))
            }
            None => {
                return Err(StoreError::InvalidIndexRange(format!(
                    "{}: every index field already has an `eq` condition, so the bound on `{}` has no field left.",
                    where_(),
                    bound.field
                )))
            }
        }
    }
    let (start, end) = match index.kind {
        IndexKind::ById => id_range(table, query)?,
        IndexKind::Entries => entries_range(query),
    };
    Ok(ScanPlan {
        index_id: index.id,
        kind: index.kind,
        start,
        end,
        order: query.order,
    })
}

fn entries_range(query: &IndexQuery) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut prefix = Vec::new();
    for (_, value) in &query.eq {
        encode_element(value.as_ref(), &mut prefix);
    }
    let with = |v: &Value| {
        let mut k = prefix.clone();
        encode_element(Some(v), &mut k);
        k
    };
    let start = match &query.lower {
        None => Some(prefix.clone()),
        Some(b) if b.inclusive => Some(with(&b.value)),
        // Nothing sorts after every extension of the key: the range is empty.
        Some(b) => prefix_successor(&with(&b.value)),
    };
    let end = match &query.upper {
        None => prefix_successor(&prefix),
        Some(b) if b.inclusive => prefix_successor(&with(&b.value)),
        Some(b) => Some(with(&b.value)),
    };
    match start {
        Some(start) => (start, end),
        None => (Vec::new(), Some(Vec::new())),
    }
}

/// `by_id` keys are raw id bytes; its one queryable field is `_id`, compared as an ID of `table`.
fn id_range(
    table: &TableInfo,
    query: &IndexQuery,
) -> Result<(Vec<u8>, Option<Vec<u8>>), StoreError> {
    let table_start = table.number.0.to_be_bytes().to_vec();
    let table_end = (u64::from(table.number.0) + 1).to_be_bytes()[4..].to_vec();
    let id_of = |v: &Value| -> Result<Vec<u8>, StoreError> {
        let Value::String(s) = v else {
            return Err(StoreError::InvalidIndexRange(format!(
                "Index {}.by_id: `_id` must be compared with an ID string, not a {}.",
                query.table,
                v.type_name()
            )));
        };
        let id = DocumentId::decode(s)?;
        Ok(id_key(&id))
    };
    let clamp = |k: Vec<u8>| k.clamp(table_start.clone(), table_end.clone());
    if let Some((_, value)) = query.eq.first() {
        return Ok(match value {
            // No document lacks an `_id`.
            None => (table_start.clone(), Some(table_start)),
            Some(v) => {
                let key = id_of(v)?;
                if key[..4] != table_start[..] {
                    (table_start.clone(), Some(table_start))
                } else {
                    let mut end = key.clone();
                    end.push(0);
                    (key, Some(end))
                }
            }
        });
    }
    let start = match &query.lower {
        None => table_start.clone(),
        Some(b) => {
            let mut k = clamp(id_of(&b.value)?);
            if !b.inclusive {
                k.push(0);
            }
            k
        }
    };
    let end = match &query.upper {
        None => table_end.clone(),
        Some(b) => {
            let mut k = clamp(id_of(&b.value)?);
            if b.inclusive {
                k.push(0);
            }
            k
        }
    };
    Ok((start, Some(end.min(table_end))))
}

/// Cursor text: base64url of a tag byte and, for a position, the last key returned.
const CURSOR_AFTER: u8 = b'k';
const CURSOR_END: u8 = b'e';

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cursor {
    /// Continue after this index key.
    After(Vec<u8>),
    /// Past the end of the range: nothing more.
    End,
}

impl Cursor {
    pub fn encode(&self) -> String {
        use base64::Engine as _;
        let mut bytes = Vec::new();
        match self {
            Cursor::After(key) => {
                bytes.push(CURSOR_AFTER);
                bytes.extend_from_slice(key);
            }
            Cursor::End => bytes.push(CURSOR_END),
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
    pub fn decode(text: &str) -> Result<Cursor, StoreError> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| StoreError::InvalidCursor)?;
        match bytes.split_first() {
            Some((&CURSOR_AFTER, key)) => Ok(Cursor::After(key.to_vec())),
            Some((&CURSOR_END, [])) => Ok(Cursor::End),
            _ => Err(StoreError::InvalidCursor),
        }
    }
}

/// Largest page a paginated query may ask for.
pub const MAX_PAGE_ITEMS: usize = 32_000;
