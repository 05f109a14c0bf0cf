//! From the file's shape to a validated [`Workflow`]: defaults, per-entry checks, array
//! expansion, name resolution and the cycle check. Checks run once per `[[tasks]]` entry,
//! not per array member, so a million-task array costs one check and one expansion.

use super::doc::{Command, DefaultsDoc, FileRef, TaskDoc, WorkflowDoc};
use super::locate::{Locator, Place};
use super::{dag::Dag, Entry, Group, Stage, TaskDef, Workflow, WorkflowError, WorkflowErrors};
use emanager_shared::model::FileSpec;
use emanager_shared::{TaskId, TaskSpec};
use std::collections::{BTreeMap, HashMap};

/// The closest candidate to `word` (edit distance at most half its length, min 2).
pub(super) fn closest<'c>(
    word: &str,
    candidates: impl Iterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (word.chars().count() / 2).max(2);
    candidates
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Builds the workflow, collecting every semantic error.
pub(super) fn build(doc: WorkflowDoc, loc: &Locator) -> Result<Workflow, WorkflowErrors> {
    let mut b = Builder {
        loc,
        errors: Vec::new(),
        defaults: doc.defaults.unwrap_or_default(),
        stages: Vec::new(),
        groups: Vec::new(),
        entries: Vec::new(),
        tasks: Vec::new(),
        arrays: HashMap::new(),
    };
    b.add_stages(doc.stages);
    let mut ranges = Vec::with_capacity(doc.tasks.len());
    for (i, t) in doc.tasks.iter().enumerate() {
        let start = b.tasks.len();
        b.add_entry(i, t);
        ranges.push(start..b.tasks.len());
    }
    b.resolve_dependencies(&doc.tasks, &ranges);
    if b.errors.is_empty() {
        b.check_cycles();
    }
    if !b.errors.is_empty() {
        return Err(WorkflowErrors(b.errors));
    }
    Ok(Workflow {
        name: doc.name.unwrap_or_else(|| "workflow".into()),
        tasks: b.tasks,
        stages: b.stages,
        groups: b.groups,
        entries: b.entries,
    })
}

struct Builder<'l> {
    loc: &'l Locator<'l>,
    errors: Vec<WorkflowError>,
    defaults: DefaultsDoc,
    stages: Vec<Stage>,
    groups: Vec<Group>,
    entries: Vec<Entry>,
    tasks: Vec<TaskDef>,
    /// Array template and base name -> entry index.
    arrays: HashMap<String, usize>,
}

/// A field's value from the task entry or else from `[defaults]`, with where it came from.
fn pick<'a, T>(task: &'a Option<T>, default: &'a Option<T>, i: usize) -> Option<(&'a T, Place)> {
    match (task, default) {
        (Some(v), _) => Some((v, Place::Task(i))),
        (None, Some(v)) => Some((v, Place::Defaults)),
        (None, None) => None,
    }
}

/// `sim-{index}` -> `sim`: the template without `{index}` and a trailing `-`, `_` or `.`.
fn base_name(template: &str) -> String {
    let s = template.replace("{index}", "");
    s.trim_end_matches(['-', '_', '.']).to_string()
}

fn subst(s: &str, index: &str) -> String {
    if s.contains("{index}") {
        s.replace("{index}", index)
    } else {
        s.to_string()
    }
}

impl Builder<'_> {
    fn error(&mut self, place: Place, field: &str, message: String) {
        let e = self.loc.error(place, Some(field), message);
        self.errors.push(e);
    }

    fn add_stages(&mut self, stages: Vec<super::doc::StageDoc>) {
        for (i, s) in stages.into_iter().enumerate() {
            if s.name.trim().is_empty() || s.name.contains(':') {
                self.error(
                    Place::Stage(i),
                    "name",
                    format!(
                        "stage name `{}` is not usable; give a non-empty name without `:`",
                        s.name
                    ),
                );
                continue;
            }
            if let Some(first) = self.stages.iter().position(|t| t.name == s.name) {
                let at = self.loc.at(Place::Stage(first), Some("name"));
                self.error(
                    Place::Stage(i),
                    "name",
                    format!(
                        "stage `{}` is declared twice (first at {at}); stage names must be unique",
                        s.name
                    ),
                );
                continue;
            }
            self.stages.push(Stage {
                name: s.name.clone(),
                description: s.description,
                group: self.groups.len(),
            });
            self.groups.push(Group {
                name: format!("stage:{}", s.name),
                members: Vec::new(),
            });
        }
    }

    /// Checks entry `i` and, when it is sound, appends its task(s).
    fn add_entry(&mut self, i: usize, t: &TaskDoc) {
        let errors_before = self.errors.len();
        let d = self.defaults.clone();
        let is_array = t.count.is_some();
        let template = if is_array && !t.name.contains("{index}") {
            format!("{}-{{index}}", t.name)
        } else {
            t.name.clone()
        };
        let shown = template.clone();
        if t.name.trim().is_empty() {
            self.error(
                Place::Task(i),
                "name",
                "task name is empty; give name = \"...\"".into(),
            );
        }
        if t.count == Some(0) {
            self.error(
                Place::Task(i),
                "count",
                format!(
                    "task `{shown}` has count = 0, which makes no tasks; use count = 1 or more"
                ),
            );
        }
        let shell = pick(&t.shell, &d.shell, i).is_some_and(|(s, _)| *s);
        let command = match pick(&t.command, &d.command, i) {
            None => {
                self.error(
                    Place::Task(i),
                    "command",
                    format!(
                        "task `{shown}` has no `command`; add command = [\"program\", \"arg\"]"
                    ),
                );
                Vec::new()
            }
            Some((Command::Argv(argv), place)) => {
                if argv.first().is_none_or(|p| p.trim().is_empty()) {
                    self.error(place, "command", format!(
                        "task `{shown}` has an empty `command`; give the program and its arguments, e.g. command = [\"/bin/echo\", \"hi\"]"
                    ));
                }
                argv.clone()
            }
            Some((Command::Line(line), place)) => {
                if line.trim().is_empty() {
                    self.error(place, "command", format!(
                        "task `{shown}` has an empty `command`; give the program and its arguments, e.g. command = [\"/bin/echo\", \"hi\"]"
                    ));
                } else if !shell {
                    self.error(place, "command", format!(
                        "task `{shown}` has a single-string `command` but no shell; split it into argv (command = [\"prog\", \"arg\"]) or set shell = true"
                    ));
                }
                vec![line.clone()]
            }
        };
        let cores = self.positive(&shown, "cores", pick(&t.cores, &d.cores, i));
        let processes = self.positive(&shown, "processes", pick(&t.processes, &d.processes, i));
        if let (Some(c), Some(p)) = (cores, processes) {
            if c % p != 0 {
                let (_, place) = pick(&t.processes, &d.processes, i).expect("checked above");
                self.error(place, "processes", format!(
                    "task `{shown}` has cores = {c}, which processes = {p} does not divide; cores is the task's total, use a multiple of {p} (e.g. cores = {})",
                    (c / p + 1) * p
                ));
            }
        }
        if let Some((&e, place)) = pick(&t.est_duration_s, &d.est_duration_s, i) {
            if e.is_nan() || e < 0.0 {
                self.error(
                    place,
                    "est_duration_s",
                    format!(
                    "task `{shown}` has est_duration_s = {e}; give the estimated seconds, 0 or more"
                ),
                );
            }
        }
        if let Some((&w, place)) = pick(&t.walltime_s, &d.walltime_s, i) {
            if w.is_nan() || w <= 0.0 {
                self.error(place, "walltime_s", format!(
                    "task `{shown}` has walltime_s = {w}; give the limit in seconds, more than 0, or leave it out"
                ));
            }
        }
        let stage = pick(&t.stage, &d.stage, i).and_then(|(name, place)| {
            let found = self.stages.iter().position(|s| &s.name == name);
            if found.is_none() {
                let hint = self.stage_hint(name);
                self.error(
                    place,
                    "stage",
                    format!("task `{shown}` names stage `{name}`, which is not declared; {hint}"),
                );
            }
            found
        });
        self.entries.push(Entry {
            name: shown,
            count: t.count,
            location: self.loc.at(Place::Task(i), None),
            cores_location: self.loc.at(
                pick(&t.cores, &d.cores, i).map_or(Place::Task(i), |p| p.1),
                Some("cores"),
            ),
            gpus_location: self.loc.at(
                pick(&t.gpus, &d.gpus, i).map_or(Place::Task(i), |p| p.1),
                Some("gpus"),
            ),
            mem_location: self.loc.at(
                pick(&t.mem_mb, &d.mem_mb, i).map_or(Place::Task(i), |p| p.1),
                Some("mem_mb"),
            ),
        });
        if is_array {
            self.arrays.entry(template.clone()).or_insert(i);
            self.arrays.entry(base_name(&template)).or_insert(i);
        }
        if self.errors.len() > errors_before {
            return;
        }

        let mut proto = TaskSpec::new(TaskId(uuid::Uuid::nil()), String::new(), Vec::new());
        proto.shell = shell;
        proto.cwd = pick(&t.cwd, &d.cwd, i).map(|(c, _)| c.clone());
        proto.cores = cores.unwrap_or(1);
        proto.processes = processes.unwrap_or(1);
        proto.gpus = pick(&t.gpus, &d.gpus, i).map_or(0, |(v, _)| *v);
        proto.mem_mb = pick(&t.mem_mb, &d.mem_mb, i).map_or(0, |(v, _)| *v);
        proto.mpi = pick(&t.mpi, &d.mpi, i).is_some_and(|(v, _)| *v);
        proto.est_duration_s =
            pick(&t.est_duration_s, &d.est_duration_s, i).map_or(0.0, |(v, _)| *v);
        proto.walltime_s = pick(&t.walltime_s, &d.walltime_s, i).map(|(v, _)| *v);
        proto.retries = pick(&t.retries, &d.retries, i).map_or(2, |(v, _)| *v);
        proto.priority = pick(&t.priority, &d.priority, i).map_or(0, |(v, _)| *v);
        proto.tags = pick(&t.tags, &d.tags, i)
            .map(|(v, _)| v.clone())
            .unwrap_or_default();
        let mut env: BTreeMap<String, String> = d.env.clone().unwrap_or_default();
        env.extend(t.env.clone().unwrap_or_default());
        let inputs = pick(&t.input_files, &d.input_files, i)
            .map(|(v, _)| v.clone())
            .unwrap_or_default();
        let outputs = pick(&t.output_files, &d.output_files, i)
            .map(|(v, _)| v.clone())
            .unwrap_or_default();

        let entry = self.entries.len() - 1;
        let stage_group = stage.map(|s| self.stages[s].group);
        let count = t.count.unwrap_or(1) as usize;
        self.tasks.reserve(count);
        let env = std::sync::Arc::new(env);
        for index in 0..count {
            let mut spec = proto.clone();
            if is_array {
                let ix = index.to_string();
                spec.name = subst(&template, &ix);
                spec.command = command.iter().map(|a| subst(a, &ix)).collect();
                spec.input_files = files(&inputs, Some(&ix));
                spec.output_files = files(&outputs, Some(&ix));
            } else {
                spec.name = template.clone();
                spec.command = command.clone();
                spec.input_files = files(&inputs, None);
                spec.output_files = files(&outputs, None);
            }
            if let Some(g) = stage_group {
                self.groups[g].members.push(self.tasks.len());
            }
            self.tasks.push(TaskDef {
                spec,
                depends_on: Vec::new(),
                depends_on_groups: Vec::new(),
                stage,
                entry,
                index: is_array.then_some(index as u32),
                env: env.clone(),
            });
        }
    }

    /// A count field that must be 1 or more (and fit in u32); `None` when absent or wrong.
    fn positive(&mut self, shown: &str, field: &str, v: Option<(&i64, Place)>) -> Option<u32> {
        let (&n, place) = v?;
        if n < 1 {
            let what = if field == "cores" {
                "cores is the task's total core count and must be 1 or more (e.g. cores = 1)"
            } else {
                "processes is the number of ranks and must be 1 or more (e.g. processes = 1)"
            };
            self.error(
                place,
                field,
                format!("task `{shown}` asks for {n} {field}; {what}"),
            );
            return None;
        }
        match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(
                    place,
                    field,
                    format!(
                        "task `{shown}` asks for {n} {field}; the most is {}",
                        u32::MAX
                    ),
                );
                None
            }
        }
    }

    fn stage_hint(&self, name: &str) -> String {
        if self.stages.is_empty() {
            return format!("declare it with [[stages]] name = \"{name}\"");
        }
        let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
        match closest(name, names.iter().copied()) {
            Some(c) => format!("did you mean `{c}`? declared stages: {}", names.join(", ")),
            None => format!("declared stages: {}", names.join(", ")),
        }
    }

    /// Finds duplicate names and turns every entry's `depends_on` into task and group indices.
    fn resolve_dependencies(&mut self, docs: &[TaskDoc], ranges: &[std::ops::Range<usize>]) {
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
            if let Some((deps, place)) = pick(&t.depends_on, &self.defaults.depends_on, i) {
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
                    } else {
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
    fn check_cycles(&mut self) {
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

fn files(refs: &[FileRef], index: Option<&str>) -> Vec<FileSpec> {
    refs.iter()
        .map(|f| FileSpec {
            path: index.map_or_else(|| f.path.clone(), |ix| subst(&f.path, ix)),
            size_bytes: f.size_bytes,
        })
        .collect()
}
