//! Names to indices: duplicate names, `depends_on` (tasks, arrays, stages) and the cycle
//! check. Runs after every entry is expanded, once per entry; the cycle check runs on the
//! entries that passed their checks, even when others did not.

use super::{closest, pick, Builder};
use crate::workflow::dag::Dag;
use crate::workflow::doc::{DefaultsDoc, TaskDoc};
use crate::workflow::locate::Place;
use crate::workflow::{Group, Workflow, WorkflowError};
use std::collections::HashMap;
use std::ops::Range;

/// `sim-{index}` -> `sim`: the template without `{index}` and a trailing `-`, `_` or `.`.
pub(super) fn base_name(template: &str) -> String {
    let s = template.replace("{index}", "");
    s.trim_end_matches(['-', '_', '.']).to_string()
}

impl Builder<'_, '_> {
    /// Finds duplicate names and turns every entry's `depends_on` into task and group indices.
    pub(super) fn resolve_dependencies(
        &mut self,
        docs: &[TaskDoc],
        refused: &[bool],
        defaults: &DefaultsDoc,
        ranges: &[Range<usize>],
    ) {
        let mut names: HashMap<&str, usize> = HashMap::with_capacity(self.tasks.len());
        let mut duplicates = Vec::new();
        for (e, range) in ranges.iter().enumerate() {
            for t in range.clone() {
                let name = self.tasks[t].spec.name.as_str();
                if let Some(&first) = names.get(name) {
                    duplicates.push((e, name.to_string(), self.tasks[first].entry));
                    break; // one report per entry is enough
                }
                names.insert(name, t);
            }
        }
        let mut errors = Vec::new();
        for (e, name, first) in duplicates {
            let at = self.loc.at(Place::Task(first), Some("name"));
            errors.push(self.loc.error(
                Place::Task(e),
                Some("name"),
                format!(
                    "task name `{name}` is used twice (first at {at}); task names must be unique"
                ),
            ));
        }

        let mut resolved = Vec::with_capacity(docs.len());
        let mut array_groups: HashMap<usize, usize> = HashMap::new();
        for (i, t) in docs.iter().enumerate() {
            let mut tasks = Vec::new();
            let mut groups = Vec::new();
            if refused[i] {
                resolved.push((tasks, groups));
                continue;
            }
            if let Some((deps, place)) = pick(&t.depends_on, &defaults.depends_on, i) {
                for dep in deps {
                    if let Some(stage) = dep.strip_prefix("stage:") {
                        match self.stages.iter().find(|s| s.name == stage) {
                            Some(s) => groups.push(s.group),
                            None => {
                                let hint = self.stage_hint(stage);
                                errors.push(self.loc.error(place, Some("depends_on"), format!(
                                    "task `{}` depends on `{dep}`, but stage `{stage}` is not declared; {hint}",
                                    self.entries[i].name
                                )));
                            }
                        }
                    } else if let Some(&task) = names.get(dep.as_str()) {
                        tasks.push(task);
                    } else if let Some(&array) = self.arrays.get(dep.as_str()) {
                        let g = *array_groups.entry(array).or_insert_with(|| {
                            self.groups.push(Group {
                                name: self.entries[array].name.clone(),
                                members: ranges[array].clone().collect(),
                            });
                            self.groups.len() - 1
                        });
                        groups.push(g);
                    } else if !self.refused.contains(dep.as_str())
                        && !docs.iter().any(|d| d.count.is_none() && d.name == *dep)
                    {
                        // (A task that exists but was refused has its own error already.)
                        errors.push(self.missing_dependency(i, place, dep, docs));
                    }
                }
            }
            tasks.sort_unstable();
            tasks.dedup();
            groups.sort_unstable();
            groups.dedup();
            resolved.push((tasks, groups));
        }
        self.errors.extend(errors);
        for ((tasks, groups), range) in resolved.into_iter().zip(ranges) {
            if tasks.is_empty() && groups.is_empty() {
                continue;
            }
            for t in &mut self.tasks[range.clone()] {
                t.depends_on.clone_from(&tasks);
                t.depends_on_groups.clone_from(&groups);
            }
        }
    }

    fn missing_dependency(
        &self,
        i: usize,
        place: Place,
        dep: &str,
        docs: &[TaskDoc],
    ) -> WorkflowError {
        let singles = docs
            .iter()
            .filter(|t| t.count.is_none())
            .map(|t| t.name.clone());
        let stages = self.stages.iter().map(|s| format!("stage:{}", s.name));
        let candidates: Vec<String> = singles
            .chain(self.arrays.keys().cloned())
            .chain(stages)
            .collect();
        let hint = match closest(dep, candidates.iter().map(String::as_str)) {
            Some(c) => format!("did you mean `{c}`?"),
            None => "name a task, an array (`sim-{index}` or `sim`) or a stage (`stage:NAME`)"
                .to_string(),
        };
        self.loc.error(
            place,
            Some("depends_on"),
            format!(
                "task `{}` depends on `{dep}`, which is not a task, array or stage; {hint}",
                self.entries[i].name
            ),
        )
    }

    /// Rejects a dependency cycle, showing it in `depends_on` direction (`a -> b -> a`).
    pub(super) fn check_cycles(&mut self) {
        let explicit = self
            .tasks
            .iter()
            .any(|t| !t.depends_on.is_empty() || !t.depends_on_groups.is_empty());
        if !explicit {
            return; // stage barriers alone always point forward
        }
        let wf = Workflow {
            name: String::new(),
            tasks: std::mem::take(&mut self.tasks),
            stages: std::mem::take(&mut self.stages),
            groups: std::mem::take(&mut self.groups),
            entries: Vec::new(),
        };
        if let Some(mut cycle) = Dag::new(&wf).find_cycle() {
            let n = wf.tasks.len();
            // Start at a task with its own `depends_on`: that is where the fix goes.
            let has_deps = |v: usize| {
                v < n
                    && (!wf.tasks[v].depends_on.is_empty()
                        || !wf.tasks[v].depends_on_groups.is_empty())
            };
            let start = (0..cycle.len())
                .filter(|&k| has_deps(cycle[k]))
                .min_by_key(|&k| cycle[k])
                .unwrap_or(0);
            cycle.rotate_left(start);
            let name = |v: usize| {
                if v < n {
                    wf.tasks[v].spec.name.clone()
                } else {
                    wf.groups[v - n].name.clone()
                }
            };
            let mut shown: Vec<String> = cycle.iter().map(|&v| name(v)).collect();
            shown.push(name(cycle[0]));
            let entry = if cycle[0] < n {
                wf.tasks[cycle[0]].entry
            } else {
                0
            };
            self.error(
                Place::Task(entry),
                "depends_on",
                format!(
                    "dependency cycle: {}; remove one of these dependencies",
                    shown.join(" -> ")
                ),
            );
        }
        self.tasks = wf.tasks;
        self.stages = wf.stages;
        self.groups = wf.groups;
    }
}
