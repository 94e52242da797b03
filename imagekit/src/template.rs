//! Name templates (`{distro} TEST - {arch} [{date}]`): checked when a pipeline is loaded, so a
//! typo fails before anything is created.
//!
//! ```
//! use imagekit::template::Template;
//! let t = Template::parse("{distro} TEST - {arch} [{date}]", &["distro", "arch", "date"]).unwrap();
//! let vars = [("distro", "ALMA9"), ("arch", "x86_64"), ("date", "2026-11-24")];
//! assert_eq!(t.render(&vars.into_iter().collect()), "ALMA9 TEST - x86_64 [2026-11-24]");
//! assert!(Template::parse("{distro} {arhc}", &["distro", "arch"]).is_err());
//! ```

use std::collections::BTreeMap;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

/// A parsed template: literal text and `{variable}`s; `{{` and `}}` are literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses `source`, accepting only the variables in `known`.
    pub fn parse(source: &str, known: &[&str]) -> Result<Template> {
        let bad = |why: String| Error::InvalidInput(format!("template {source:?}: {why}"));
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.next_if(|(_, c)| *c == '{').is_some() => text.push('{'),
                '}' if chars.next_if(|(_, c)| *c == '}').is_some() => text.push('}'),
                '{' => {
                    let name: String = std::iter::from_fn(|| chars.next_if(|(_, c)| *c != '}' && *c != '{'))
                        .map(|(_, c)| c)
                        .collect();
                    if chars.next_if(|(_, c)| *c == '}').is_none() {
                        return Err(bad(format!("the brace at {i} is not closed")));
                    }
                    if !known.contains(&name.as_str()) {
                        return Err(bad(format!("unknown variable {{{name}}}; known: {}", known.join(", "))));
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Var(name));
                }
                '}' => return Err(bad(format!("a lone '}}' at {i} (write '}}}}' for a literal brace)"))),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables it uses.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Fills in the variables (a missing one renders empty; [`Template::parse`] already checked the names).
    pub fn render(&self, vars: &BTreeMap<&str, &str>) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Var(v) => vars.get(v.as_str()).copied().unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bad_templates_say_where_and_why() {
        let known = ["distro", "arch"];
        for (t, why) in [
            ("{distro", "not closed"),
            ("{distro}}", "lone"),
            ("x } y", "lone"),
            ("{}", "unknown variable {}"),
            ("{Distro}", "unknown variable {Distro}"),
        ] {
            let e = Template::parse(t, &known).unwrap_err().to_string();
            assert!(e.contains(why), "{t}: {e}");
        }
        let t = Template::parse("{{literal}} {arch}", &known).unwrap();
        assert_eq!(
            t.render(&[("arch", "aarch64")].into_iter().collect()),
            "{literal} aarch64"
        );
        assert_eq!(t.variables().collect::<Vec<_>>(), ["arch"]);
    }
}
