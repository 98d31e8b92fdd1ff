//! The one place that turns names and values into SQL text. Every identifier that reaches a
//! statement goes through [`ident`]; every literal built into DDL through [`literal`].
use crate::bail;
use crate::error::Result;

/// A quoted SQL identifier: `my "table"` → `"my ""table"""`.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted SQL string literal, for DDL where parameters cannot be bound (trigger bodies).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Names must be usable as identifiers: non-empty and free of NUL, which SQLite cannot store.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        bail!("{what} name is empty");
    }
    if name.contains('\0') {
        bail!("{what} name {name:?} contains a NUL character");
    }
    Ok(())
}

/// A SQL text from `sql/` with `{{placeholders}}`, filled in one pass so that values (which
/// may hold user identifiers) are never scanned for placeholders themselves. Full-line `--`
/// comments are dropped so they do not end up inside stored trigger bodies.
pub struct Template {
    text: String,
    values: Vec<(&'static str, String)>,
}

impl Template {
    pub fn new(source: &str) -> Self {
        let text = source
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        Template {
            text,
            values: Vec::new(),
        }
    }

    pub fn set(mut self, name: &'static str, value: &str) -> Self {
        self.values.push((name, value.to_string()));
        self
    }

    /// The finished text; a placeholder left unfilled is a bug in the caller.
    pub fn render(self) -> Result<String> {
        let mut out = String::with_capacity(self.text.len());
        let mut rest = self.text.as_str();
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("internal error: unclosed SQL template placeholder")
            };
            let name = &after[..end];
            let Some((_, value)) = self.values.iter().find(|(n, _)| *n == name) else {
                bail!("internal error: SQL template placeholder {{{{{name}}}}} was not filled");
            };
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers_and_literals() {
        assert_eq!(ident("tasks"), "\"tasks\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn template_fills_and_reports_missing() {
        let t = Template::new("-- comment\nSELECT {{a}}, {{b}}").set("a", "1");
        assert!(t.render().unwrap_err().message().contains("{{b}}"));
        let t = Template::new("SELECT {{a}}, {{b}}")
            .set("a", "'{{b}}'")
            .set("b", "2");
        assert_eq!(
            t.render().unwrap(),
            "SELECT '{{b}}', 2",
            "values are not scanned again"
        );
    }
}
