//! The workflow file as written: the serde (and JSON Schema) shape shared by TOML and JSON.
//! Nothing here is validated beyond types; `build` turns it into a [`super::Workflow`].

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// An EManager workflow: tasks and task arrays, ordered stages and dependencies.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "EManager workflow")]
pub struct WorkflowDoc {
    /// Name of the workflow (shown in plans and reports). Defaults to `workflow`.
    #[serde(default)]
    pub name: Option<String>,
    /// Values applied to every task that does not set the field itself (`env` is merged key by
    /// key, the task's value winning).
    #[serde(default)]
    pub defaults: Option<DefaultsDoc>,
    /// Ordered stages: every task of a stage waits for every task of the previous (non-empty)
    /// stage.
    #[serde(default)]
    pub stages: Vec<StageDoc>,
    /// The tasks; an entry with `count` is an array of `count` tasks.
    #[serde(default)]
    pub tasks: Vec<TaskDoc>,
}

/// One `[[stages]]` entry.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageDoc {
    /// Unique stage name; tasks join it with `stage = "NAME"`.
    pub name: String,
    /// Free text for humans.
    #[serde(default)]
    pub description: Option<String>,
}

/// Declares `DefaultsDoc` and `TaskDoc` from one field list, so that `[defaults]` accepts
/// exactly the task fields (but `name` and `count`), and lists those names for messages.
macro_rules! task_doc_types {
    ($($(#[$meta:meta])* $field:ident : $ty:ty,)*) => {
        /// `[defaults]`: any task field but `name` and `count`.
        #[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct DefaultsDoc {
            $($(#[$meta])* #[serde(default)] pub $field: Option<$ty>,)*
        }

        /// One `[[tasks]]` entry: a task, or an array of tasks when `count` is given.
        #[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct TaskDoc {
            /// Unique task name. In an array, `{index}` is replaced by the member's index
            /// (`-{index}` is appended when absent).
            pub name: String,
            /// Makes this entry an array of `count` tasks, indexed from 0.
            #[serde(default)]
            #[schemars(range(min = 1))]
            pub count: Option<u32>,
            $($(#[$meta])* #[serde(default)] pub $field: Option<$ty>,)*
        }
    };
}

task_doc_types! {
    /// The program and its arguments (argv). A single string only with `shell = true`.
    command: Command,
    /// Run `command` through `sh -c`.
    shell: bool,
    /// Environment variables; `{index}` is substituted in values.
    env: BTreeMap<String, String>,
    /// Working directory; `{index}` is substituted.
    cwd: String,
    /// Total cores of the task (all processes together). Default 1.
    #[schemars(range(min = 1))]
    cores: i64,
    /// GPUs of the task. Default 0.
    gpus: u32,
    /// Memory of the task in MiB. Default 0 (unknown).
    mem_mb: u64,
    /// Processes (MPI ranks); must divide `cores`. Default 1.
    #[schemars(range(min = 1))]
    processes: i64,
    /// Launch with MPI (`srun`/`mpirun`); such a task may span whole nodes.
    mpi: bool,
    /// Estimated run time in seconds (planning and packing).
    #[schemars(range(min = 0))]
    est_duration_s: f64,
    /// Kill the task after this many seconds.
    walltime_s: f64,
    /// Runs after a failure before the task fails for good. Default 2.
    retries: u32,
    /// Higher runs first among ready tasks.
    priority: i32,
    /// Free labels for reports and selection.
    tags: Vec<String>,
    /// Files the task reads: `"path"` or `{ path, size_bytes }`; `{index}` is substituted.
    input_files: Vec<FileRef>,
    /// Files the task writes: `"path"` or `{ path, size_bytes }`; `{index}` is substituted.
    output_files: Vec<FileRef>,
    /// The stage (declared in `[[stages]]`) the task belongs to.
    stage: String,
    /// Tasks that must be DONE first: a task name, an array by its template (`sim-{index}`) or
    /// base name (`sim`), or a whole stage (`stage:NAME`).
    depends_on: Vec<String>,
}

/// `command`: an argv list, or one string that `sh -c` runs (with `shell = true`).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Argv(Vec<String>),
    Line(String),
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of strings (argv), or one string with shell = true")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Command, E> {
                Ok(Command::Line(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                Ok(Command::Argv(argv))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Command {
    fn schema_name() -> Cow<'static, str> {
        "Command".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "argv list, or one shell line (only with shell = true)",
            "anyOf": [
                { "type": "array", "items": { "type": "string" }, "minItems": 1 },
                { "type": "string", "minLength": 1 }
            ]
        })
    }
}

/// An input or output file: `"path"` or `{ path, size_bytes }`.
#[derive(Clone, Debug, PartialEq)]
pub struct FileRef {
    pub path: String,
    pub size_bytes: Option<u64>,
}

/// The table form of [`FileRef`].
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FileTable {
    path: String,
    #[serde(default)]
    size_bytes: Option<u64>,
}

impl<'de> Deserialize<'de> for FileRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path string or a table { path, size_bytes }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<FileRef, E> {
                Ok(FileRef {
                    path: s.to_string(),
                    size_bytes: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileRef, A::Error> {
                let t = FileTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(FileRef {
                    path: t.path,
                    size_bytes: t.size_bytes,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for FileRef {
    fn schema_name() -> Cow<'static, str> {
        "FileRef".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let table = generator.subschema_for::<FileTable>();
        json_schema!({
            "description": "a path, or { path, size_bytes }",
            "anyOf": [ { "type": "string" }, table ]
        })
    }
}
