//! From the file's entries to a validated [`Workflow`]: defaults, per-entry checks, array
//! expansion, name resolution and the cycle check. Checks run once per `[[tasks]]` entry,
//! not per array member, so a million-task array costs one check and one expansion. Every
//! problem is collected: entries that did not deserialize (`read`) are skipped, the others
//! are checked, and the cycle check runs on what is left.

mod expand;
mod resolve;

use super::doc::{Command, DefaultsDoc, TaskDoc};
use super::locate::{Locator, Place};
use super::read::Read;
use super::{Entry, Group, Stage, TaskDef, Workflow, WorkflowError, WorkflowErrors};
use emanager_shared::{TaskId, TaskSpec};
use expand::Template;
use resolve::base_name;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

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

/// Builds the workflow from what `read` gave, collecting every error (`read`'s first).
pub(super) fn build(read: Read, loc: &Locator) -> Result<Workflow, WorkflowErrors> {
    let Read {
        doc,
        stage_refused,
        task_refused,
        errors,
    } = read;
    let mut b = Builder {
        loc,
        errors,
        stages: Vec::new(),
        groups: Vec::new(),
        entries: Vec::new(),
        tasks: Vec::new(),
        arrays: HashMap::new(),
        refused: HashSet::new(),
    };
    let defaults = doc.defaults.unwrap_or_default();
    b.add_stages(doc.stages, &stage_refused);
    let mut ranges = Vec::with_capacity(doc.tasks.len());
    for (i, t) in doc.tasks.iter().enumerate() {
        let start = b.tasks.len();
        if task_refused[i] {
            b.add_refused(i, t);
        } else {
            b.add_entry(i, t, &defaults);
        }
        ranges.push(start..b.tasks.len());
    }
    b.resolve_dependencies(&doc.tasks, &task_refused, &defaults, &ranges);
    b.check_cycles();
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

struct Builder<'l, 'a> {
    loc: &'l Locator<'a>,
    errors: Vec<WorkflowError>,
    stages: Vec<Stage>,
    groups: Vec<Group>,
    entries: Vec<Entry>,
    tasks: Vec<TaskDef>,
    /// Array template and base name -> entry index.
    arrays: HashMap<String, usize>,
    /// Names (and array templates and base names) of entries that did not deserialize: a
    /// dependency on them is not reported again.
    refused: HashSet<String>,
}

/// The name template of an entry: arrays without `{index}` get `-{index}` appended.
fn template_of(name: &str, is_array: bool) -> String {
    if is_array && !name.contains("{index}") {
        format!("{name}-{{index}}")
    } else {
        name.to_string()
    }
}

/// A field's value from the task entry or else from `[defaults]`, with where it came from.
fn pick<'a, T>(task: &'a Option<T>, default: &'a Option<T>, i: usize) -> Option<(&'a T, Place)> {
    match (task, default) {
        (Some(v), _) => Some((v, Place::Task(i))),
        (None, Some(v)) => Some((v, Place::Defaults)),
        (None, None) => None,
    }
}

impl Builder<'_, '_> {
    fn error(&mut self, place: Place, field: &str, message: String) {
        let e = self.loc.error(place, Some(field), message);
        self.errors.push(e);
    }

    fn add_stages(&mut self, stages: Vec<super::doc::StageDoc>, refused: &[bool]) {
        let mut declared: HashMap<String, usize> = HashMap::new();
        for (i, s) in stages.into_iter().enumerate() {
            if refused[i] && (s.name.is_empty() || declared.contains_key(&s.name)) {
                continue; // its error is reported; a readable name is still declared
            }
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
            if let Some(&first) = declared.get(&s.name) {
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
            declared.insert(s.name.clone(), i);
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

    /// Records entry `i`, which did not deserialize (its error is reported): no tasks, and
    /// its name stands for a dependency that is not reported as missing.
    fn add_refused(&mut self, i: usize, t: &TaskDoc) {
        let template = template_of(&t.name, t.count.is_some());
        if !t.name.is_empty() {
            self.refused.insert(t.name.clone());
            if t.count.is_some() {
                self.refused.insert(base_name(&template));
                self.refused.insert(template.clone());
            }
        }
        let at = self.loc.at(Place::Task(i), None);
        self.entries.push(Entry {
            name: template,
            count: t.count,
            location: at.clone(),
            cores_location: at.clone(),
            gpus_location: at.clone(),
            mem_location: at,
        });
    }

    /// Checks entry `i` and, when it is sound, appends its task(s).
    fn add_entry(&mut self, i: usize, t: &TaskDoc, d: &DefaultsDoc) {
        let errors_before = self.errors.len();
        let is_array = t.count.is_some();
        let template = template_of(&t.name, is_array);
        let shown = template.clone();
        if t.name.trim().is_empty() {
            self.error(
                Place::Task(i),
                "name",
                "task name is empty; give name = \"...\"".into(),
            );
        } else if t.name.starts_with("stage:") {
            self.error(
                Place::Task(i),
                "name",
                format!("task name `{}` starts with `stage:`, which depends_on reserves for stages; rename the task", t.name),
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
        let command = self.command(i, t, d, &shown, shell);
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
        self.check_times(i, t, d, &shown);
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

        let template = Template {
            name: template,
            is_array,
            count: t.count.unwrap_or(1) as usize,
            command,
            proto: prototype(t, d, i, shell, cores, processes),
            env: Arc::new(env(t, d)),
            inputs: pick(&t.input_files, &d.input_files, i)
                .map(|(v, _)| v.clone())
                .unwrap_or_default(),
            outputs: pick(&t.output_files, &d.output_files, i)
                .map(|(v, _)| v.clone())
                .unwrap_or_default(),
            stage,
            entry: self.entries.len() - 1,
        };
        let members = stage.map(|s| &mut self.groups[self.stages[s].group].members);
        template.expand(&mut self.tasks, members);
    }

    /// The entry's argv, checked: present, not empty, a single string only with a shell.
    fn command(
        &mut self,
        i: usize,
        t: &TaskDoc,
        d: &DefaultsDoc,
        shown: &str,
        shell: bool,
    ) -> Vec<String> {
        match pick(&t.command, &d.command, i) {
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
        }
    }

    /// `est_duration_s` must be 0 or more, `walltime_s` more than 0.
    fn check_times(&mut self, i: usize, t: &TaskDoc, d: &DefaultsDoc, shown: &str) {
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
}

/// The spec every member of entry `i` starts from (name, command and files come later).
fn prototype(
    t: &TaskDoc,
    d: &DefaultsDoc,
    i: usize,
    shell: bool,
    cores: Option<u32>,
    processes: Option<u32>,
) -> TaskSpec {
    let mut proto = TaskSpec::new(TaskId(uuid::Uuid::nil()), String::new(), Vec::new());
    proto.shell = shell;
    proto.cwd = pick(&t.cwd, &d.cwd, i).map(|(c, _)| c.clone());
    proto.cores = cores.unwrap_or(1);
    proto.processes = processes.unwrap_or(1);
    proto.gpus = pick(&t.gpus, &d.gpus, i).map_or(0, |(v, _)| *v);
    proto.mem_mb = pick(&t.mem_mb, &d.mem_mb, i).map_or(0, |(v, _)| *v);
    proto.mpi = pick(&t.mpi, &d.mpi, i).is_some_and(|(v, _)| *v);
    proto.est_duration_s = pick(&t.est_duration_s, &d.est_duration_s, i).map_or(0.0, |(v, _)| *v);
    proto.walltime_s = pick(&t.walltime_s, &d.walltime_s, i).map(|(v, _)| *v);
    proto.retries = pick(&t.retries, &d.retries, i).map_or(2, |(v, _)| *v);
    proto.priority = pick(&t.priority, &d.priority, i).map_or(0, |(v, _)| *v);
    proto.tags = pick(&t.tags, &d.tags, i)
        .map(|(v, _)| v.clone())
        .unwrap_or_default();
    proto
}

/// The defaults' env with the task's on top.
fn env(t: &TaskDoc, d: &DefaultsDoc) -> BTreeMap<String, String> {
    let mut env = d.env.clone().unwrap_or_default();
    env.extend(t.env.clone().unwrap_or_default());
    env
}
