//! A minimal aligned-table renderer and helpers to pull display strings out of JSON.

use serde_json::Value;

/// Column separator between padded cells.
const GAP: &str = "  ";

/// Rows of text rendered under a header, each column padded to its widest cell.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<I, S>(headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing trailing cells render empty, extra cells are kept (and widen the table).
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header line followed by one line per row, each ending in `\n`. Cells are padded to
    /// the column's width in characters; the last column is not padded (no trailing spaces).
    /// Newlines and tabs inside a cell are shown as spaces so rows stay on one line.
    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain(std::iter::once(self.headers.len()))
            .max()
            .unwrap_or(0);
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect()
        };
        let lines: Vec<Vec<String>> = std::iter::once(&self.headers)
            .chain(self.rows.iter())
            .map(|r| {
                (0..columns)
                    .map(|i| r.get(i).map(|s| clean(s)).unwrap_or_default())
                    .collect()
            })
            .collect();
        let mut widths = vec![0usize; columns];
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in &lines {
            let mut text = String::new();
            for (i, (cell, w)) in line.iter().zip(&widths).enumerate() {
                if i > 0 {
                    text.push_str(GAP);
                }
                text.push_str(cell);
                if i + 1 < columns {
                    let pad = w.saturating_sub(cell.chars().count());
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Renders `label: value` pairs with the labels padded to one width, for single resources.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let pad = width - k.chars().count();
        out.push_str(k);
        out.push(':');
        out.extend(std::iter::repeat_n(' ', pad + 1));
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// The value at a dotted path (`"cibaSettings.deliveryMode"`) as display text: strings as is,
/// arrays joined with `,`, objects as compact JSON, and `-` for null or absent.
pub fn cell(v: &Value, path: &str) -> String {
    let mut cur = v;
    for part in path.split('.') {
        match cur.get(part) {
            Some(next) => cur = next,
            None => return "-".to_owned(),
        }
    }
    display(cur)
}

/// Display text of one JSON value (see [`cell`]).
pub fn display(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(","),
        Value::Object(_) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pads_columns_to_the_widest_cell() {
        let mut t = Table::new(["ID", "NAME", "TYPE"]);
        t.row(["1", "Demo environment", "SANDBOX"]);
        t.row(["22222", "P", "PRODUCTION"]);
        assert_eq!(
            t.render(),
            "ID     NAME              TYPE\n\
             1      Demo environment  SANDBOX\n\
             22222  P                 PRODUCTION\n"
        );
    }

    #[test]
    fn header_only_and_short_rows_and_no_trailing_spaces() {
        let t = Table::new(["A", "B"]);
        assert!(t.is_empty());
        assert_eq!(t.render(), "A  B\n");

        let mut t = Table::new(["A", "LONG HEADER"]);
        t.row(["xyz"]);
        t.row(["1", ""]);
        let out = t.render();
        assert_eq!(out, "A    LONG HEADER\nxyz\n1\n");
        assert!(out.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn counts_characters_not_bytes_and_flattens_newlines() {
        let mut t = Table::new(["N", "X"]);
        t.row(["é", "1"]);
        t.row(["ab\ncd", "2"]);
        assert_eq!(t.render(), "N      X\né      1\nab cd  2\n");
    }

    #[test]
    fn key_values_align_labels() {
        let out = key_values(&[("id", "1".into()), ("status", "PENDING".into())]);
        assert_eq!(out, "id:     1\nstatus: PENDING\n");
    }

    #[test]
    fn cells_from_json_paths() {
        let v = json!({
            "a": {"b": "x"}, "n": null, "list": ["CIBA", "REFRESH_TOKEN"],
            "on": true, "num": 3, "empty": []
        });
        assert_eq!(cell(&v, "a.b"), "x");
        assert_eq!(cell(&v, "a.c"), "-");
        assert_eq!(cell(&v, "n"), "-");
        assert_eq!(cell(&v, "n.deeper"), "-");
        assert_eq!(cell(&v, "list"), "CIBA,REFRESH_TOKEN");
        assert_eq!(cell(&v, "on"), "yes");
        assert_eq!(cell(&v, "num"), "3");
        assert_eq!(cell(&v, "empty"), "-");
    }
}
