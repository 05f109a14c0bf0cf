//! Reads a workflow file one entry at a time, so that one bad entry does not hide the
//! problems of the others. The text is parsed once (a syntax error stops there: nothing
//! after it can be trusted); then the top-level keys, `[defaults]`, every `[[stages]]` entry
//! and every `[[tasks]]` entry are deserialized on their own, each error at its own
//! line:column. An entry that does not deserialize stays as a placeholder holding its name
//! (and `count`), so that the entries depending on it get no second, misleading error.

use super::doc::{DefaultsDoc, StageDoc, TaskDoc, WorkflowDoc};
use super::locate::{self, Locator, Members, Place, Tree};
use super::{Format, WorkflowError};
use serde::de::{DeserializeOwned, IgnoredAny, IntoDeserializer};
use serde_json::value::RawValue;
use std::collections::HashSet;
use toml_edit::{Item, Table, TableLike, Value};

/// The file's entries, and what could not be read.
pub(super) struct Read {
    /// Entries that did not deserialize are placeholders (name and count when readable).
    pub doc: WorkflowDoc,
    /// Per `[[stages]]` entry: it did not deserialize (its error is in `errors`).
    pub stage_refused: Vec<bool>,
    /// Per `[[tasks]]` entry: it did not deserialize (its error is in `errors`).
    pub task_refused: Vec<bool>,
    pub errors: Vec<WorkflowError>,
}

/// The top-level keys, in the order serde names them.
const TOP_FIELDS: [&str; 4] = ["name", "defaults", "stages", "tasks"];

/// One value of the parsed document.
#[derive(Clone, Copy)]
enum Node<'t> {
    TomlItem(&'t Item),
    TomlTable(&'t Table),
    TomlValue(&'t Value),
    Json(&'t RawValue),
}

/// Reads every entry of the text behind `loc`; only a syntax error is returned as `Err`.
pub(super) fn read(loc: &Locator, format: Format) -> Result<Read, WorkflowError> {
    let top: Vec<(String, Node, String)> = match loc.tree() {
        Tree::Unparsed => return Err(syntax_error(loc, format)),
        Tree::Toml(doc) => {
            let table = doc.as_table();
            table
                .iter()
                .map(|(k, item)| {
                    let at = table
                        .get_key_value(k)
                        .and_then(|(key, _)| key.span())
                        .map_or_else(|| loc.origin().to_string(), |s| loc.at_offset(s.start));
                    (k.to_string(), Node::TomlItem(item), at)
                })
                .collect()
        }
        Tree::Json(tree) => tree
            .top
            .0
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Node::Json(v),
                    loc.at_offset(loc.offset_of(v.get())),
                )
            })
            .collect(),
    };
    let mut r = Reader {
        loc,
        errors: Vec::new(),
    };
    let mut out = Read {
        doc: WorkflowDoc {
            name: None,
            defaults: None,
            stages: Vec::new(),
            tasks: Vec::new(),
        },
        stage_refused: Vec::new(),
        task_refused: Vec::new(),
        errors: Vec::new(),
    };
    let mut seen = HashSet::new();
    for (key, node, at) in top {
        if !seen.insert(key.clone()) {
            r.errors.push(WorkflowError {
                location: at,
                message: format!("duplicate field `{key}`; write it once"),
            });
            continue;
        }
        match key.as_str() {
            "name" => out.doc.name = r.keep(r.de::<String>(node, &at)),
            "defaults" => {
                let fallback = loc.at(Place::Defaults, None);
                out.doc.defaults = r.keep(r.de::<DefaultsDoc>(node, &fallback));
            }
            "stages" => {
                for (i, entry) in r.list(node, &at).into_iter().enumerate() {
                    let fallback = loc.at(Place::Stage(i), None);
                    let (stage, refused) = match r.de_entry::<StageDoc>(entry, &fallback) {
                        Some(s) => (s, false),
                        None => {
                            let name = entry_name(entry).0.unwrap_or_default();
                            (
                                StageDoc {
                                    name,
                                    description: None,
                                },
                                true,
                            )
                        }
                    };
                    out.doc.stages.push(stage);
                    out.stage_refused.push(refused);
                }
            }
            "tasks" => {
                for (i, entry) in r.list(node, &at).into_iter().enumerate() {
                    let fallback = loc.at(Place::Task(i), None);
                    let (task, refused) = match r.de_entry::<TaskDoc>(entry, &fallback) {
                        Some(t) => (t, false),
                        None => {
                            let (name, count) = entry_name(entry);
                            let placeholder = TaskDoc {
                                name: name.unwrap_or_default(),
                                count,
                                ..TaskDoc::default()
                            };
                            (placeholder, true)
                        }
                    };
                    out.doc.tasks.push(task);
                    out.task_refused.push(refused);
                }
            }
            _ => {
                let expected: Vec<String> = TOP_FIELDS.iter().map(|f| format!("`{f}`")).collect();
                let message = format!(
                    "unknown field `{key}`, expected one of {}",
                    expected.join(", ")
                );
                r.errors.push(WorkflowError {
                    location: at,
                    message: locate::explain(&message, None),
                });
            }
        }
    }
    out.errors = r.errors;
    Ok(out)
}

/// The one error of a text that does not parse, as serde words it.
fn syntax_error(loc: &Locator, format: Format) -> WorkflowError {
    let unreadable = || WorkflowError {
        location: loc.origin().to_string(),
        message: format!("cannot read the file as {}", format.as_str().to_uppercase()),
    };
    match format {
        Format::Toml => match toml::from_str::<WorkflowDoc>(loc.text()) {
            Err(e) => locate::toml_error(loc, e.message(), e.span(), loc.origin()),
            Ok(_) => unreadable(),
        },
        Format::Json => match serde_json::from_str::<WorkflowDoc>(loc.text()) {
            Err(e) => locate::json_error(loc, &e, 0),
            Ok(_) => unreadable(),
        },
    }
}

struct Reader<'l, 'a> {
    loc: &'l Locator<'a>,
    errors: Vec<WorkflowError>,
}

impl Reader<'_, '_> {
    /// The value, or `None` with its error recorded.
    fn keep<T>(&mut self, r: Result<T, WorkflowError>) -> Option<T> {
        r.map_err(|e| self.errors.push(e)).ok()
    }

    /// Deserializes one value; an error without a position of its own is at `fallback`.
    fn de<T: DeserializeOwned>(&self, node: Node, fallback: &str) -> Result<T, WorkflowError> {
        let value = match node {
            Node::Json(raw) => {
                return serde_json::from_str(raw.get())
                    .map_err(|e| locate::json_error(self.loc, &e, self.loc.offset_of(raw.get())));
            }
            Node::TomlItem(item) => item.clone().into_value().ok(),
            Node::TomlTable(t) => Some(Value::InlineTable(t.clone().into_inline_table())),
            Node::TomlValue(v) => Some(v.clone()),
        };
        let Some(value) = value else {
            return Err(WorkflowError {
                location: fallback.to_string(),
                message: "empty value".into(),
            });
        };
        T::deserialize(value.into_deserializer())
            .map_err(|e| locate::toml_error(self.loc, e.message(), e.span(), fallback))
    }

    /// Deserializes one `[[stages]]` or `[[tasks]]` entry and records every problem of it:
    /// after an error, the field it is about is left out and the rest read again, so that an
    /// unknown field does not hide a value of the wrong type beside it. `None` when the entry
    /// had any problem.
    fn de_entry<T: DeserializeOwned>(&mut self, node: Node, fallback: &str) -> Option<T> {
        let mut left_out: Vec<String> = Vec::new();
        loop {
            let (result, field) = self.de_leaving_out::<T>(node, &left_out, fallback);
            match result {
                Ok(v) => return left_out.is_empty().then_some(v),
                Err(e) => {
                    self.errors.push(e);
                    match field {
                        // A problem of the entry as a whole (a missing field) ends it.
                        Some(f) if !left_out.contains(&f) => left_out.push(f),
                        _ => return None,
                    }
                }
            }
        }
    }

    /// Deserializes `node` without its fields `left_out`; on an error, also the field the
    /// error is about (`None` for the entry as a whole).
    fn de_leaving_out<T: DeserializeOwned>(
        &self,
        node: Node,
        left_out: &[String],
        fallback: &str,
    ) -> (Result<T, WorkflowError>, Option<String>) {
        let field_of = |path: &serde_path_to_error::Path| match path.iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
            _ => None,
        };
        if let Node::Json(raw) = node {
            let base = self.loc.offset_of(raw.get());
            if left_out.is_empty() {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                return match serde_path_to_error::deserialize::<_, T>(&mut de) {
                    Ok(v) => (Ok(v), None),
                    Err(e) => {
                        let field = field_of(e.path());
                        (Err(locate::json_error(self.loc, e.inner(), base)), field)
                    }
                };
            }
            // The members left, as a new object: an error in it is placed at the member's
            // value in the file.
            let Ok(members) = serde_json::from_str::<Members>(raw.get()) else {
                return (self.de(node, fallback), None);
            };
            let kept: Vec<&(String, &RawValue)> = members
                .0
                .iter()
                .filter(|(k, _)| !left_out.contains(k))
                .collect();
            let text = format!(
                "{{{}}}",
                kept.iter()
                    .map(|(k, v)| format!(
                        "{}:{}",
                        serde_json::to_string(k).unwrap_or_default(),
                        v.get()
                    ))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let mut de = serde_json::Deserializer::from_str(&text);
            return match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Ok(v) => (Ok(v), None),
                Err(e) => {
                    let field = field_of(e.path());
                    let message = locate::json_message(e.inner());
                    let at = field
                        .as_ref()
                        .and_then(|f| kept.iter().find(|(k, _)| k == f))
                        .map_or_else(
                            || self.loc.at_offset(base),
                            |(_, v)| self.loc.at_offset(self.loc.offset_of(v.get())),
                        );
                    let error = WorkflowError {
                        location: at,
                        message: locate::explain(&message, field.as_deref()),
                    };
                    (Err(error), field)
                }
            };
        }
        let value = match node {
            Node::TomlItem(item) => item.clone().into_value().ok(),
            Node::TomlTable(t) => Some(Value::InlineTable(t.clone().into_inline_table())),
            Node::TomlValue(v) => Some(v.clone()),
            Node::Json(_) => None,
        };
        let Some(mut value) = value else {
            return (self.de(node, fallback), None);
        };
        if let Value::InlineTable(t) = &mut value {
            for f in left_out {
                t.remove(f);
            }
        }
        match serde_path_to_error::deserialize::<_, T>(value.into_deserializer()) {
            Ok(v) => (Ok(v), None),
            Err(e) => {
                let field = field_of(e.path());
                let inner = e.into_inner();
                let error = locate::toml_error(self.loc, inner.message(), inner.span(), fallback);
                (Err(error), field)
            }
        }
    }

    /// The entries of an array (`[[tasks]]` or `tasks = [...]`); none, with the error
    /// recorded, when the value is not an array.
    fn list<'t>(&mut self, node: Node<'t>, at: &str) -> Vec<Node<'t>> {
        match node {
            Node::TomlItem(Item::ArrayOfTables(a)) => a.iter().map(Node::TomlTable).collect(),
            Node::TomlItem(Item::Value(Value::Array(a))) | Node::TomlValue(Value::Array(a)) => {
                a.iter().map(Node::TomlValue).collect()
            }
            Node::Json(raw) => {
                let parsed = serde_json::from_str::<Vec<&RawValue>>(raw.get())
                    .map_err(|e| locate::json_error(self.loc, &e, self.loc.offset_of(raw.get())));
                self.keep(parsed)
                    .unwrap_or_default()
                    .into_iter()
                    .map(Node::Json)
                    .collect()
            }
            other => {
                if let Err(e) = self.de::<Vec<IgnoredAny>>(other, at) {
                    self.errors.push(e);
                }
                Vec::new()
            }
        }
    }
}

/// The `name` and `count` of an entry that did not deserialize, when they are readable.
fn entry_name(node: Node) -> (Option<String>, Option<u32>) {
    let table: Option<&dyn TableLike> = match node {
        Node::Json(raw) => {
            let Ok(members) = serde_json::from_str::<Members>(raw.get()) else {
                return (None, None);
            };
            let name = members
                .get("name")
                .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
            let count = members
                .get("count")
                .and_then(|v| serde_json::from_str::<u32>(v.get()).ok());
            return (name, count);
        }
        Node::TomlTable(t) => Some(t),
        Node::TomlValue(Value::InlineTable(t)) => Some(t),
        Node::TomlItem(item) => item.as_table_like(),
        Node::TomlValue(_) => None,
    };
    let Some(table) = table else {
        return (None, None);
    };
    let name = table.get("name").and_then(Item::as_str).map(str::to_string);
    let count = table
        .get("count")
        .and_then(Item::as_integer)
        .and_then(|n| u32::try_from(n).ok());
    (name, count)
}
