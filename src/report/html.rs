//! A self-contained HTML page: inline CSS, figures as inline SVG, and one small
//! inline script that sorts a table by the column header clicked. Nothing is
//! fetched from anywhere, so a page reads the same offline, from a file, or in
//! an object store's browser.

use std::fmt::Write;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// A table cell: its text, and for numbers the value a sort compares.
pub struct Cell {
    text: String,
    sort: Option<f64>,
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Cell {
        Cell { text: text.into(), sort: None }
    }

    /// A number shown as `text` and sorted by `value`.
    pub fn number(value: f64, text: impl Into<String>) -> Cell {
        Cell { text: text.into(), sort: Some(value) }
    }

    /// `value` shown with `decimals` decimals; `None` shows "–" and sorts first.
    pub fn maybe(value: Option<f64>, decimals: usize) -> Cell {
        // + 0.0 turns -0.0 (an empty sum) into 0.0, so it never shows as "-0.0".
        match value.map(|v| v + 0.0) {
            Some(v) => Cell::number(v, format!("{v:.decimals$}")),
            None => Cell::number(f64::NEG_INFINITY, "–"),
        }
    }

    pub fn count(value: u64) -> Cell {
        Cell::number(value as f64, value.to_string())
    }
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1180px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
p.note { color: #555; font-size: 0.9rem; }
dl.facts { display: grid; grid-template-columns: max-content auto max-content auto; gap: 0.2rem 1rem; font-size: 0.92rem; }
dl.facts dt { color: #555; }
dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; border: 1px solid #eee; width: 560px; }
figure svg { display: block; }
figcaption { font-size: 0.85rem; color: #555; padding: 0.2rem 0.5rem 0.4rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { padding: 0.15rem 0.6rem; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f6f6f6; position: sticky; top: 0; }
th.sortable { cursor: pointer; }
td:first-child, th:first-child, td.text { text-align: left; }
.scroll { max-height: 28rem; overflow: auto; border: 1px solid #eee; display: inline-block; }
";

/// Sorts a table by the clicked header's column: numbers by `data-sort`, text
/// by its content; a second click reverses.
const SORT_SCRIPT: &str = "
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, column) {
    th.classList.add('sortable');
    th.addEventListener('click', function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var down = th.dataset.order !== 'desc';
      th.dataset.order = down ? 'desc' : 'asc';
      var key = function (row) {
        var cell = row.cells[column];
        return cell.dataset.sort !== undefined ? parseFloat(cell.dataset.sort) : cell.textContent;
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var order = x < y ? -1 : x > y ? 1 : 0;
        return down ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
";

/// A page being written, section by section.
pub struct Page {
    title: String,
    body: String,
    figures: usize,
    in_section: bool,
}

impl Page {
    pub fn new(title: &str, subtitle: &str) -> Page {
        let body = format!("<h1>{}</h1>\n<p class=\"note\">{}</p>\n", escape(title), escape(subtitle));
        Page { title: title.to_string(), body, figures: 0, in_section: false }
    }

    /// Starts a section `<section id="{id}">` with its heading; sections end
    /// where the next begins.
    pub fn section(&mut self, id: &str, heading: &str) {
        if self.in_section {
            self.body.push_str("</section>\n");
        }
        self.in_section = true;
        let _ = writeln!(self.body, "<section id=\"{}\">\n<h2>{}</h2>", escape(id), escape(heading));
    }

    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p class=\"note\">{}</p>", escape(text));
    }

    /// A grid of label: value pairs.
    pub fn facts(&mut self, facts: &[(&str, String)]) {
        self.body.push_str("<dl class=\"facts\">\n");
        for (label, value) in facts {
            let _ = writeln!(self.body, "<dt>{}</dt><dd>{}</dd>", escape(label), escape(value));
        }
        self.body.push_str("</dl>\n");
    }

    /// A row of figures, each an SVG with its caption.
    pub fn figures(&mut self, figures: Vec<(String, String)>) {
        self.body.push_str("<div class=\"figures\">\n");
        for (svg, caption) in figures {
            self.figures += 1;
            let _ = writeln!(
                self.body,
                "<figure id=\"figure-{}\">{svg}<figcaption>Figure {}. {}</figcaption></figure>",
                self.figures,
                self.figures,
                escape(&caption)
            );
        }
        self.body.push_str("</div>\n");
    }

    /// A table; with `sortable`, clicking a header sorts by its column.
    pub fn table(&mut self, id: &str, headers: &[&str], rows: Vec<Vec<Cell>>, sortable: bool) {
        let class = if sortable { " class=\"sortable\"" } else { "" };
        let _ = write!(self.body, "<div class=\"scroll\"><table id=\"{}\"{class}><thead><tr>", escape(id));
        for header in headers {
            let _ = write!(self.body, "<th>{}</th>", escape(header));
        }
        self.body.push_str("</tr></thead>\n<tbody>\n");
        for row in rows {
            self.body.push_str("<tr>");
            for cell in row {
                match cell.sort {
                    Some(value) => {
                        let value = if value.is_finite() { value.to_string() } else { "-1e308".to_string() };
                        let _ = write!(self.body, "<td data-sort=\"{value}\">{}</td>", escape(&cell.text));
                    }
                    None => {
                        let _ = write!(self.body, "<td class=\"text\">{}</td>", escape(&cell.text));
                    }
                }
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</tbody></table></div>\n");
    }

    /// The whole document.
    pub fn finish(mut self) -> String {
        if self.in_section {
            self.body.push_str("</section>\n");
        }
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{}<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n",
            escape(&self.title),
            self.body
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere() {
        let mut page = Page::new("a <b> & \"c\"", "x");
        page.section("s", "<i>");
        page.table("t", &["<th>"], vec![vec![Cell::text("<td>"), Cell::number(1.5, "<n>")]], true);
        let html = page.finish();
        assert!(!html.contains("<b>") && !html.contains("<i>") && !html.contains("<td>") && !html.contains("<n>"));
        assert!(html.contains("a &lt;b&gt; &amp; &quot;c&quot;") && html.contains("data-sort=\"1.5\""));
        assert_eq!(html.matches("<section").count(), html.matches("</section>").count());
    }
}
