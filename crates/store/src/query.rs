//! Index range queries: `eq` on a prefix of the index fields, then at most one lower and one upper
//! bound on the next field; ascending or descending; limits honoured at the storage level.

use tickethub_value::Value;

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
        IndexQuery { table: table.to_string(), index: "by_creation_time".to_string(), eq: vec![], lower: None, upper: None, order }
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
