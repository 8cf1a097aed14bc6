//! Cursor paging shared by every list in the management API.

/// What a caller asks of a list: at most `limit` items after the opaque `cursor`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    /// Opaque position returned by the previous page (`ListPage::next`).
    pub cursor: Option<String>,
}

impl Page {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;

    pub fn first(limit: u32) -> Self {
        Page {
            limit,
            cursor: None,
        }
    }
}

/// One page of a list, with the total count of matching items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    pub total: u64,
    /// Cursor for the next page, absent on the last page.
    pub next: Option<String>,
}
