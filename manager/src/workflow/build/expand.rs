//! Array expansion: one checked entry becomes `count` tasks, `{index}` substituted.

use crate::workflow::doc::FileRef;
use crate::workflow::TaskDef;
use emanager_shared::model::FileSpec;
use emanager_shared::TaskSpec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A `[[tasks]]` entry that passed its checks: what all its members share.
pub(super) struct Template {
    /// The name; for arrays it holds `{index}`.
    pub name: String,
    pub is_array: bool,
    pub count: usize,
    pub command: Vec<String>,
    /// Every field but name, command, env and files.
    pub proto: TaskSpec,
    /// Shared by all members; `{index}` in values is substituted on use (`TaskDef::env`).
    pub env: Arc<BTreeMap<String, String>>,
    pub inputs: Vec<FileRef>,
    pub outputs: Vec<FileRef>,
    pub stage: Option<usize>,
    pub entry: usize,
}

impl Template {
    /// Appends the entry's task(s) to `tasks` and, with a stage, to its members.
    pub fn expand(&self, tasks: &mut Vec<TaskDef>, mut stage_members: Option<&mut Vec<usize>>) {
        tasks.reserve(self.count);
        for index in 0..self.count {
            let mut spec = self.proto.clone();
            let ix = self.is_array.then(|| index.to_string());
            let ix = ix.as_deref();
            spec.name = subst(&self.name, ix);
            spec.command = self.command.iter().map(|a| subst(a, ix)).collect();
            spec.input_files = files(&self.inputs, ix);
            spec.output_files = files(&self.outputs, ix);
            if let (Some(cwd), Some(_)) = (&self.proto.cwd, ix) {
                spec.cwd = Some(subst(cwd, ix));
            }
            if let Some(members) = stage_members.as_deref_mut() {
                members.push(tasks.len());
            }
            tasks.push(TaskDef {
                spec,
                depends_on: Vec::new(),
                depends_on_groups: Vec::new(),
                stage: self.stage,
                entry: self.entry,
                index: self.is_array.then_some(index as u32),
                env: self.env.clone(),
            });
        }
    }
}

/// `s` with `{index}` replaced, for array members (`index` is `None` outside arrays).
fn subst(s: &str, index: Option<&str>) -> String {
    match index {
        Some(ix) if s.contains("{index}") => s.replace("{index}", ix),
        _ => s.to_string(),
    }
}

fn files(refs: &[FileRef], index: Option<&str>) -> Vec<FileSpec> {
    refs.iter()
        .map(|f| FileSpec {
            path: subst(&f.path, index),
            size_bytes: f.size_bytes,
        })
        .collect()
}
