//! Where things are in a workflow file: `file:line:col` of every entry and field, for TOML
//! (from `toml_edit` spans) and JSON (from raw slices of the text), and the rewording of
//! serde's messages into ones that say the field and the fix.

use super::WorkflowError;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::cell::RefCell;
use std::fmt;
use std::ops::Range;
use toml_edit::{ImDocument, Item, TableLike, Value};

/// A part of the document a semantic error points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    Defaults,
    Stage(usize),
    Task(usize),
}

/// The parsed text with positions, and how to turn a [`Place`] and field into a location.
pub(super) struct Locator<'a> {
    origin: &'a str,
    text: &'a str,
    lines: LineIndex<'a>,
    tree: Tree<'a>,
}

/// The syntax tree of the text, when it parsed.
pub(super) enum Tree<'a> {
    /// A syntax error: locations are the file name alone.
    Unparsed,
    Toml(ImDocument<&'a str>),
    Json(JsonTree<'a>),
}

/// A JSON workflow as raw slices of the text: each top-level member, and each entry of
/// `stages` and `tasks` (empty when the member is not an array).
pub(super) struct JsonTree<'a> {
    pub top: Members<'a>,
    stages: Vec<&'a RawValue>,
    tasks: Vec<&'a RawValue>,
    /// The members of the entry looked up last: checks ask for several fields of one entry
    /// in a row.
    last: RefCell<Option<(Place, Members<'a>)>>,
}

/// A JSON object's members in file order, each value a raw slice of the text.
pub(super) struct Members<'a>(pub Vec<(String, &'a RawValue)>);

impl<'a> Members<'a> {
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Locator<'a> {
    /// A locator for TOML text (its tree is `Unparsed` on a syntax error).
    pub fn toml(origin: &'a str, text: &'a str) -> Locator<'a> {
        let tree = match ImDocument::parse(text) {
            Ok(doc) => Tree::Toml(doc),
            Err(_) => Tree::Unparsed,
        };
        Locator::with(origin, text, tree)
    }

    /// A locator for JSON text (its tree is `Unparsed` on a syntax error or when the text is
    /// not an object).
    pub fn json(origin: &'a str, text: &'a str) -> Locator<'a> {
        let tree = match serde_json::from_str::<Members>(text) {
            Ok(top) => {
                let list = |key: &str| {
                    top.get(key)
                        .and_then(|v| serde_json::from_str::<Vec<&RawValue>>(v.get()).ok())
                        .unwrap_or_default()
                };
                Tree::Json(JsonTree {
                    stages: list("stages"),
                    tasks: list("tasks"),
                    top,
                    last: RefCell::new(None),
                })
            }
            Err(_) => Tree::Unparsed,
        };
        Locator::with(origin, text, tree)
    }

    fn with(origin: &'a str, text: &'a str, tree: Tree<'a>) -> Locator<'a> {
        Locator {
            origin,
            text,
            lines: LineIndex::new(text),
            tree,
        }
    }

    pub fn origin(&self) -> &'a str {
        self.origin
    }

    pub fn text(&self) -> &'a str {
        self.text
    }

    pub fn tree(&self) -> &Tree<'a> {
        &self.tree
    }

    /// `origin:line:col` of a byte offset of the text.
    pub fn at_offset(&self, offset: usize) -> String {
        let (line, col) = self.lines.line_col(offset);
        format!("{}:{line}:{col}", self.origin)
    }

    /// Byte offset of a slice of the text (raw JSON values are slices of it).
    pub fn offset_of(&self, part: &str) -> usize {
        (part.as_ptr() as usize)
            .checked_sub(self.text.as_ptr() as usize)
            .filter(|&o| o <= self.text.len())
            .unwrap_or(0)
    }

    /// The location of `field` in `place` (or of `place` itself when the field is absent).
    pub fn at(&self, place: Place, field: Option<&str>) -> String {
        let start = match &self.tree {
            Tree::Unparsed => None,
            Tree::Toml(doc) => toml_span(doc, place, field).map(|s| s.start),
            Tree::Json(tree) => tree.find(place, field).map(|v| self.offset_of(v.get())),
        };
        match start {
            Some(s) => self.at_offset(s),
            None => self.origin.to_string(),
        }
    }

    /// An error at `place`/`field`.
    pub fn error(&self, place: Place, field: Option<&str>, message: String) -> WorkflowError {
        WorkflowError {
            location: self.at(place, field),
            message,
        }
    }
}

impl<'a> JsonTree<'a> {
    /// The raw value of `field` in `place`, or of `place` itself without a field.
    fn find(&self, place: Place, field: Option<&str>) -> Option<&'a RawValue> {
        let entry = match place {
            Place::Defaults => self.top.get("defaults")?,
            Place::Stage(i) => *self.stages.get(i)?,
            Place::Task(i) => *self.tasks.get(i)?,
        };
        let Some(field) = field else {
            return Some(entry);
        };
        let mut last = self.last.borrow_mut();
        if last.as_ref().is_none_or(|(p, _)| *p != place) {
            let members = serde_json::from_str::<Members>(entry.get()).ok()?;
            *last = Some((place, members));
        }
        let found = last.as_ref().and_then(|(_, m)| m.get(field));
        Some(found.unwrap_or(entry))
    }
}

/// The span of `field` in `place` of a TOML document (of `place` when the field is absent).
fn toml_span(doc: &ImDocument<&str>, place: Place, field: Option<&str>) -> Option<Range<usize>> {
    let (table, table_span): (&dyn TableLike, Option<Range<usize>>) = match place {
        Place::Defaults => {
            let item = doc.get("defaults")?;
            (item.as_table_like()?, item.span())
        }
        Place::Stage(i) => element(doc.get("stages")?, i)?,
        Place::Task(i) => element(doc.get("tasks")?, i)?,
    };
    let found = field.and_then(|f| table.get_key_value(f));
    match found {
        Some((key, item)) => item.span().or_else(|| key.span()),
        None => table_span,
    }
}

/// Entry `i` of an array of tables (`[[tasks]]`) or of an inline array (`tasks = [{..}]`).
fn element(item: &Item, i: usize) -> Option<(&dyn TableLike, Option<Range<usize>>)> {
    match item {
        Item::ArrayOfTables(a) => {
            let t = a.get(i)?;
            Some((t, t.span()))
        }
        Item::Value(Value::Array(a)) => {
            let v = a.get(i)?;
            Some((v.as_inline_table()?, v.span()))
        }
        _ => None,
    }
}

/// Byte offset to 1-based line and column (in characters).
struct LineIndex<'a> {
    starts: Vec<usize>,
    text: &'a str,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> LineIndex<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts, text }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let end = offset.min(self.text.len());
        let col = self
            .text
            .get(start..end)
            .map_or(end - start, |s| s.chars().count())
            + 1;
        (line + 1, col)
    }
}

/// A TOML syntax or type error (serde's `message` at `span`), reworded, at its line:column;
/// at `fallback` when it has no span.
pub(super) fn toml_error(
    loc: &Locator,
    message: &str,
    span: Option<Range<usize>>,
    fallback: &str,
) -> WorkflowError {
    let Some(span) = span else {
        return WorkflowError {
            location: fallback.to_string(),
            message: explain(message, None),
        };
    };
    let (line, col) = loc.lines.line_col(span.start);
    let line_text = loc.text.lines().nth(line - 1).unwrap_or("");
    let prefix: String = line_text.chars().take(col - 1).collect();
    WorkflowError {
        location: format!("{}:{line}:{col}", loc.origin),
        message: explain(message, toml_key_before(&prefix)),
    }
}

/// A JSON syntax or type error from serde_json, reworded, at its line:column. `base` is the
/// byte offset in the text of the slice that was parsed (0 for the whole text).
pub(super) fn json_error(loc: &Locator, e: &serde_json::Error, base: usize) -> WorkflowError {
    let message = json_message(e);
    let message = message.as_str();
    let (base_line, base_col) = loc.lines.line_col(base);
    let (line, col) = if e.line() <= 1 {
        (base_line, base_col + e.column().saturating_sub(1))
    } else {
        (base_line + e.line() - 1, e.column())
    };
    let line_text = loc.text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let prefix: String = line_text.chars().take(col).collect();
    WorkflowError {
        location: format!("{}:{line}:{col}", loc.origin),
        message: explain(message, json_key_before(&prefix)),
    }
}

/// serde_json's message without its ` at line L column C`.
pub(super) fn json_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_string()
}

/// The key of `key = value` whose value starts where `prefix` ends.
fn toml_key_before(prefix: &str) -> Option<&str> {
    let (before, _) = prefix.rsplit_once('=')?;
    let key = before
        .trim_end()
        .rsplit(|c: char| c.is_whitespace() || c == '{' || c == ',' || c == '.')
        .next()?;
    let key = key.trim_matches('"');
    (!key.is_empty()).then_some(key)
}

/// The key of `"key": value` whose value ends where `prefix` ends.
fn json_key_before(prefix: &str) -> Option<&str> {
    let mut rest = prefix;
    while let Some((before, _)) = rest.rsplit_once(':') {
        let before = before.trim_end();
        if let Some(quoted) = before.strip_suffix('"') {
            let (_, key) = quoted.rsplit_once('"')?;
            return (!key.is_empty()).then_some(key);
        }
        rest = before;
    }
    None
}

/// serde's message with the field named and a fix added.
pub(super) fn explain(message: &str, key: Option<&str>) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let names: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        let Some((unknown, valid)) = names.split_first() else {
            return message.to_string();
        };
        let hint = super::build::closest(unknown, valid.iter().copied())
            .map(|c| format!("did you mean `{c}`? "))
            .unwrap_or_default();
        return format!(
            "unknown field `{unknown}`; {hint}valid fields here: {}",
            valid.join(", ")
        );
    }
    if message.starts_with("missing field `name`") {
        return "missing field `name`; every [[tasks]] and [[stages]] entry needs name = \"...\""
            .to_string();
    }
    let fix = if ["i64", "u32", "u64", "i32"]
        .iter()
        .any(|t| message.ends_with(&format!("expected {t}")))
    {
        "; write a whole number without quotes"
    } else if message.ends_with("expected f64") {
        "; write a number without quotes"
    } else if message.ends_with("expected a boolean") {
        "; write true or false"
    } else if message.ends_with("expected a string") {
        "; write it in quotes"
    } else if message.ends_with("expected a sequence") {
        "; write a list: [\"a\", \"b\"]"
    } else {
        ""
    };
    match key {
        Some(k) if message.starts_with("invalid") => format!("field `{k}`: {message}{fix}"),
        _ => format!("{message}{fix}"),
    }
}
