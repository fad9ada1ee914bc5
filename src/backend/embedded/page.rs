//! Pagination: one page of a tool's matches in the real server's
//! `PaginatedResponseSchema` shape. It must never index out of range, whatever
//! `limit` and `offset` were (both are validated integers, but may be huge).

use serde_json::{json, Value};

use super::dataset::DATA_SOURCE;

/// A validated `limit` and `offset`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Page {
    /// Most items on the page, 1..=100.
    limit: i64,
    /// Items skipped before the page, >= 0.
    offset: i64,
}

impl Page {
    /// A page of at most `limit` items after `offset` skipped ones.
    pub(super) const fn new(limit: i64, offset: i64) -> Self {
        Page { limit, offset }
    }

    /// One page of `items` in the real server's `PaginatedResponseSchema` shape
    /// (`data`, `total`, `limit`, `offset`, `hasMore`) plus `dataSource`.
    pub(super) fn apply(self, items: Vec<Value>) -> Value {
        let total = items.len();
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let limit = usize::try_from(self.limit).unwrap_or(0);
        let data: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
        let has_more = offset.saturating_add(data.len()) < total;
        json!({
            "data": data,
            "total": total,
            "limit": self.limit,
            "offset": self.offset,
            "hasMore": has_more,
            "dataSource": DATA_SOURCE,
        })
    }
}
