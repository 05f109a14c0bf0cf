//! Reads the original Application Skeleton input format (FORMAT.md) into stage definitions.
//!
//! The original parser consumes lines strictly in a fixed order and crashes on anything
//! else. This one reads each stage block by key, so it can say which line is wrong and what
//! was expected; where the intent is unambiguous (a bare `#` line, `Num_Stages`, a key out
//! of order, the polynomial form the HEAD regex rejects) it accepts with a warning.

use super::super::diag::Diagnostic;

/// Where an input file comes from, or what a mapping or substitution refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub stage: String,
    pub kind: FileKind,
    /// 1-based index of the input/output of the referenced stage.
    pub index: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Input,
    Output,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Input => "Input",
            FileKind::Output => "Output",
        }
    }
}

impl std::fmt::Display for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}_{}", self.stage, self.kind.as_str(), self.index)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Filesystem,
    File(FileRef),
}

/// What a polynomial value depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolySrc {
    /// The task's input k (1-based).
    Input(usize),
    Length,
}

/// A value spec: a statistical distribution or a polynomial.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueSpec {
    /// `uniform P`: the literal text P for every item; `num` is what task.c makes of it.
    Uniform { text: String, num: f64 },
    /// `normal`/`gauss [A, B]U`.
    Normal { mean: f64, stdev: f64, unit: String },
    /// `lognorm [A, B]U`: A, B are mu and sigma of the underlying normal.
    LogNorm { mu: f64, sigma: f64, unit: String },
    /// `triangular [A, B]U`: low, high, mode at the midpoint.
    Triangular { low: f64, high: f64, unit: String },
    /// `polynomial [a, b] SRC`: `int(a * x^b)`.
    Polynomial { a: f64, b: f64, src: PolySrc },
}

#[derive(Clone, Debug, PartialEq)]
pub struct InputDef {
    pub source: Option<(Source, usize)>,
    pub size: Option<(ValueSpec, usize)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Mapping {
    Combination { from: FileRef, m: usize },
    External { script: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct IterationDef {
    pub line: usize,
    pub num: usize,
    pub stages: Vec<String>,
    /// Input of the group's first stage fed, from the 2nd iteration on, by `target`.
    pub substitute_input: usize,
    pub target: FileRef,
}

/// One `Stage_Name` block, as written.
#[derive(Clone, Debug, PartialEq)]
pub struct StageDef {
    pub line: usize,
    pub name: String,
    pub task_type: String,
    pub task_mode: String,
    pub num_tasks: usize,
    pub length: (ValueSpec, usize),
    pub processes: u32,
    pub read_buffer: u64,
    pub write_buffer: u64,
    pub inputs: Vec<InputDef>,
    pub mapping: Option<(Mapping, usize)>,
    pub outputs: Vec<(ValueSpec, usize)>,
    pub interleave: u32,
    pub iteration: Option<IterationDef>,
}

/// True when `text` looks like the original format (its first statement is `Num_Stage`).
pub fn looks_like_skeleton_input(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            key == "Num_Stage" || key == "Num_Stages"
        })
        .unwrap_or(false)
}

struct Entry {
    line: usize,
    key: String,
    value: String,
}

/// Parses the whole file. Warnings are appended to `warnings`.
pub fn parse(
    text: &str,
    origin: &str,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Vec<StageDef>, Diagnostic> {
    let mut p = Parser { origin, warnings };
    let entries = p.lex(text)?;
    let Some(first) = entries.first() else {
        return Err(Diagnostic::file(
            origin,
            "the file has no statements; expected `Num_Stage = <number of stages>`",
        ));
    };
    match first.key.as_str() {
        "Num_Stage" => {}
        "Num_Stages" => p.warn(
            first.line,
            "`Num_Stages` read as `Num_Stage` (the original tool only accepts `Num_Stage` and would fail)",
        ),
        _ => {
            return Err(p.err(
                first.line,
                format!("expected `Num_Stage = <number of stages>`, found `{}`", show(first)),
            ))
        }
    }
    let num_stage = p.int(first, "Num_Stage")? as usize;
    let rest = &entries[1..];
    if let Some(e) = rest.first() {
        if e.key != "Stage_Name" {
            return Err(p.err(
                e.line,
                format!("expected `Stage_Name = <name>`, found `{}`", show(e)),
            ));
        }
    }
    let mut blocks: Vec<&[Entry]> = Vec::new();
    let mut start = 0;
    for i in 1..=rest.len() {
        if i == rest.len() || rest[i].key == "Stage_Name" {
            if i > start {
                blocks.push(&rest[start..i]);
            }
            start = i;
        }
    }
    if blocks.len() < num_stage {
        let line = rest.last().map(|e| e.line).unwrap_or(first.line);
        return Err(p.err(
            line,
            format!(
                "`Num_Stage = {num_stage}` (line {}) but the file has only {} stage block(s); expected another `Stage_Name = <name>`",
                first.line,
                blocks.len()
            ),
        ));
    }
    if blocks.len() > num_stage {
        let extra = &blocks[num_stage][0];
        p.warn(
            extra.line,
            format!(
                "`Num_Stage = {num_stage}`: stage `{}` and everything after it is ignored (as the original tool does)",
                extra.value
            ),
        );
    }
    let mut stages = Vec::new();
    for block in blocks.into_iter().take(num_stage) {
        stages.push(p.stage(block)?);
    }
    Ok(stages)
}

fn show(e: &Entry) -> String {
    format!("{} = {}", e.key, e.value)
}

struct Parser<'a> {
    origin: &'a str,
    warnings: &'a mut Vec<Diagnostic>,
}

/// The unconsumed entries of one stage block.
struct Block<'e> {
    stage: String,
    entries: &'e [Entry],
    used: Vec<bool>,
    /// Only one out-of-order warning per block.
    warned_order: bool,
}

impl<'a> Parser<'a> {
    fn err(&self, line: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(self.origin, line, message)
    }

    fn warn(&mut self, line: usize, message: impl Into<String>) {
        self.warnings
            .push(Diagnostic::at(self.origin, line, message));
    }

    fn lex(&mut self, text: &str) -> Result<Vec<Entry>, Diagnostic> {
        let mut out = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let s = raw.trim();
            if s.is_empty() {
                continue;
            }
            if let Some(after) = s.strip_prefix('#') {
                let word = after.trim_start().chars().next();
                if !word.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.warn(
                        line,
                        format!("`{s}` read as a comment (the original tool only skips `#` followed by a word and would fail here)"),
                    );
                }
                continue;
            }
            let Some((k, v)) = s.split_once('=') else {
                return Err(self.err(line, format!("expected `KEY = VALUE`, found `{s}`")));
            };
            let key = k.trim();
            let valid = !key.is_empty()
                && key.split('.').count() <= 2
                && key
                    .split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
            if !valid {
                return Err(self.err(line, format!("expected `KEY = VALUE`, found `{s}`")));
            }
            out.push(Entry {
                line,
                key: key.to_string(),
                value: v.trim().to_string(),
            });
        }
        Ok(out)
    }

    fn stage(&mut self, entries: &[Entry]) -> Result<StageDef, Diagnostic> {
        let head = &entries[0];
        let name = self.word(head)?;
        for (i, e) in entries.iter().enumerate() {
            if let Some(prev) = entries[..i].iter().find(|p| p.key == e.key) {
                return Err(self.err(
                    e.line,
                    format!(
                        "`{}` appears twice in stage `{name}` (first on line {})",
                        e.key, prev.line
                    ),
                ));
            }
        }
        let mut b = Block {
            stage: name.clone(),
            entries,
            used: vec![false; entries.len()],
            warned_order: false,
        };
        b.used[0] = true;
        let task_type = self.required(&mut b, "Task_Type", "serial|parallel")?;
        let task_type = self.nonempty(task_type)?;
        let task_mode = match self.optional(&mut b, "Task_Mode") {
            Some(e) => self.nonempty(e)?,
            None => "time".to_string(),
        };
        let num_tasks = self.req_int(&mut b, "Num_Tasks", "<number>")? as usize;
        let e = self.required(&mut b, "Task_Length", "<distribution> <parameters>")?;
        let length = (self.value(e, Allow::Length)?, e.line);
        let processes = self.req_int(&mut b, "Num_Processes", "<number>")?;
        let processes = u32::try_from(processes).unwrap_or(u32::MAX);
        let read_buffer = self.req_int(&mut b, "Read_Buffer", "<bytes>")?;
        let write_buffer = self.req_int(&mut b, "Write_Buffer", "<bytes>")?;
        let e = self.required(&mut b, "Input_Files_Each_Task", "<number>")?;
        let n_inputs = self.int(e, "Input_Files_Each_Task")? as usize;
        let mut inputs = Vec::new();
        for k in 1..=n_inputs {
            let source = match self.optional(&mut b, &format!("Input_{k}.Source")) {
                Some(e) => Some((self.source(e)?, e.line)),
                None => None,
            };
            let size = match self.optional(&mut b, &format!("Input_{k}.Size")) {
                Some(e) => Some((self.value(e, Allow::Distribution)?, e.line)),
                None => None,
            };
            inputs.push(InputDef { source, size });
        }
        let mapping = match self.optional(&mut b, "Input_Task_Mapping") {
            Some(e) => Some((self.mapping(e)?, e.line)),
            None => None,
        };
        let e = self.required(&mut b, "Output_Files_Each_Task", "<number>")?;
        let n_outputs = self.int(e, "Output_Files_Each_Task")? as usize;
        let mut outputs = Vec::new();
        for k in 1..=n_outputs {
            let e = self.required(
                &mut b,
                &format!("Output_{k}.Size"),
                "<distribution> <parameters>",
            )?;
            outputs.push((self.value(e, Allow::Output)?, e.line));
        }
        let interleave = self.req_int(&mut b, "Interleave_Option", "0|1|2|3")?;
        let interleave = u32::try_from(interleave).unwrap_or(u32::MAX);
        let iteration = match self.optional(&mut b, "Iteration_Num") {
            Some(e) => {
                let num = self.int(e, "Iteration_Num")? as usize;
                let line = e.line;
                let s = self.required(&mut b, "Iteration_Stages", "<Stage>, <Stage>...")?;
                let stages = self.iteration_stages(s);
                let s = self.required(
                    &mut b,
                    "Iteration_Substitute",
                    "<Stage>.Input_<n>, <Stage>.Output_<m>",
                )?;
                let (substitute_input, target) = self.substitute(s, &name)?;
                Some(IterationDef {
                    line,
                    num,
                    stages,
                    substitute_input,
                    target,
                })
            }
            None => None,
        };
        if let Some(i) = b.used.iter().position(|u| !u) {
            let e = &entries[i];
            let hint = if e.key == "Output_File_Size" {
                " (the report's `Output_File_Size` is not read by the tool; write `Output_1.Size = ...`)".to_string()
            } else if e.key.starts_with("Input_") && e.key.contains('.') {
                format!(" (the stage declares `Input_Files_Each_Task = {n_inputs}`)")
            } else if e.key.starts_with("Output_") && e.key.contains('.') {
                format!(" (the stage declares `Output_Files_Each_Task = {n_outputs}`)")
            } else if e.key.starts_with("Iteration_") {
                " (an iteration starts with `Iteration_Num = <n>`)".to_string()
            } else {
                String::new()
            };
            return Err(self.err(
                e.line,
                format!("unexpected `{}` in stage `{name}`{hint}", e.key),
            ));
        }
        Ok(StageDef {
            line: head.line,
            name,
            task_type,
            task_mode,
            num_tasks,
            length,
            processes,
            read_buffer,
            write_buffer,
            inputs,
            mapping,
            outputs,
            interleave,
            iteration,
        })
    }

    /// Takes `key` from the block: in order if it is next, else from later with a warning.
    fn take<'e>(&mut self, b: &mut Block<'e>, key: &str) -> Result<&'e Entry, Option<&'e Entry>> {
        let next = b.used.iter().position(|u| !u);
        let Some(next) = next else { return Err(None) };
        if b.entries[next].key == key {
            b.used[next] = true;
            return Ok(&b.entries[next]);
        }
        if let Some(i) = (next..b.entries.len()).find(|&i| !b.used[i] && b.entries[i].key == key) {
            b.used[i] = true;
            if !b.warned_order {
                b.warned_order = true;
                let (line, found) = (b.entries[i].line, b.entries[next].key.clone());
                self.warn(
                    line,
                    format!(
                        "`{key}` is out of order in stage `{}`: the original tool expects it before `{found}` (line {}) and would fail; accepted",
                        b.stage, b.entries[next].line
                    ),
                );
            }
            return Ok(&b.entries[i]);
        }
        Err(Some(&b.entries[next]))
    }

    fn required<'e>(
        &mut self,
        b: &mut Block<'e>,
        key: &str,
        what: &str,
    ) -> Result<&'e Entry, Diagnostic> {
        match self.take(b, key) {
            Ok(e) => Ok(e),
            Err(Some(found)) => Err(self.err(
                found.line,
                format!(
                    "expected `{key} = {what}` in stage `{}`, found `{}`",
                    b.stage,
                    show(found)
                ),
            )),
            Err(None) => Err(self.err(
                b.entries.last().map(|e| e.line).unwrap_or(0),
                format!(
                    "expected `{key} = {what}` in stage `{}`, found the end of the stage",
                    b.stage
                ),
            )),
        }
    }

    fn req_int(&mut self, b: &mut Block<'_>, key: &str, what: &str) -> Result<u64, Diagnostic> {
        let e = self.required(b, key, what)?;
        self.int(e, key)
    }

    fn optional<'e>(&mut self, b: &mut Block<'e>, key: &str) -> Option<&'e Entry> {
        self.take(b, key).ok()
    }

    fn nonempty(&self, e: &Entry) -> Result<String, Diagnostic> {
        if e.value.is_empty() {
            return Err(self.err(e.line, format!("`{}` needs a value", e.key)));
        }
        Ok(e.value.clone())
    }

    /// `\d+` at the start (the original's `re.match`), trailing text ignored with a warning.
    fn int(&mut self, e: &Entry, key: &str) -> Result<u64, Diagnostic> {
        let digits: String = e.value.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(n) = digits.parse::<u64>() else {
            return Err(self.err(
                e.line,
                format!("`{key}` needs a non-negative integer, found `{}`", e.value),
            ));
        };
        if digits.len() < e.value.len() {
            self.warn(
                e.line,
                format!(
                    "`{key} = {}`: read as {n}, the text after it is ignored",
                    e.value
                ),
            );
        }
        Ok(n)
    }

    fn word(&mut self, e: &Entry) -> Result<String, Diagnostic> {
        let w: String = e
            .value
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if w.is_empty() {
            return Err(self.err(
                e.line,
                format!(
                    "`{}` needs a name of letters, digits and `_`, found `{}`",
                    e.key, e.value
                ),
            ));
        }
        if w.len() < e.value.len() {
            self.warn(
                e.line,
                format!(
                    "`{} = {}`: read as `{w}`, the text after it is ignored",
                    e.key, e.value
                ),
            );
        }
        Ok(w)
    }

    fn file_ref(&self, text: &str) -> Option<FileRef> {
        let (stage, rest) = text.trim().split_once('.')?;
        let (kind, index) = rest.rsplit_once('_')?;
        let kind = match kind {
            "Input" => FileKind::Input,
            "Output" => FileKind::Output,
            _ => return None,
        };
        let index: usize = index.parse().ok().filter(|i| *i >= 1)?;
        let ok = !stage.is_empty() && stage.chars().all(|c| c.is_alphanumeric() || c == '_');
        ok.then(|| FileRef {
            stage: stage.to_string(),
            kind,
            index,
        })
    }

    fn source(&self, e: &Entry) -> Result<Source, Diagnostic> {
        if e.value == "filesystem" {
            return Ok(Source::Filesystem);
        }
        self.file_ref(&e.value).map(Source::File).ok_or_else(|| {
            self.err(
                e.line,
                format!(
                    "`{}` must be `filesystem`, `<Stage>.Output_<j>` or `<Stage>.Input_<j>`, found `{}`",
                    e.key, e.value
                ),
            )
        })
    }

    fn mapping(&self, e: &Entry) -> Result<Mapping, Diagnostic> {
        let (kind, rest) = e
            .value
            .split_once(char::is_whitespace)
            .unwrap_or((&e.value, ""));
        let rest = rest.trim();
        match kind {
            "combination" => {
                let tokens: Vec<&str> = rest.split_whitespace().collect();
                let parsed = match tokens.as_slice() {
                    [r, m] => self.file_ref(r).zip(m.parse::<usize>().ok()),
                    _ => None,
                };
                let (from, m) = parsed.ok_or_else(|| {
                    self.err(
                        e.line,
                        format!(
                            "expected `Input_Task_Mapping = combination <Stage>.Output_<j> <m>`, e.g. `combination Stage_1.Output_1 2`, found `{}`",
                            e.value
                        ),
                    )
                })?;
                Ok(Mapping::Combination { from, m })
            }
            "external" if !rest.is_empty() => Ok(Mapping::External {
                script: rest.to_string(),
            }),
            _ => Err(self.err(
                e.line,
                format!(
                    "expected `Input_Task_Mapping = combination <Stage>.Output_<j> <m>` or `external <script>`, found `{}`",
                    e.value
                ),
            )),
        }
    }

    fn iteration_stages(&mut self, e: &Entry) -> Vec<String> {
        let names: Vec<String> = e.value.split(',').map(|s| s.trim().to_string()).collect();
        if e.value.split(", ").count() != names.len() {
            self.warn(
                e.line,
                format!("`Iteration_Stages = {}`: read as {}; the original tool splits on `, ` (comma and one space) only", e.value, names.join(", ")),
            );
        }
        names
    }

    fn substitute(&self, e: &Entry, stage: &str) -> Result<(usize, FileRef), Diagnostic> {
        let parsed = e
            .value
            .split_once(',')
            .and_then(|(a, b)| self.file_ref(a).zip(self.file_ref(b)));
        match parsed {
            Some((src, target)) if src.kind == FileKind::Input => {
                if src.stage != stage {
                    return Err(self.err(
                        e.line,
                        format!("`Iteration_Substitute` must replace an input of the iterated stage `{stage}`, found `{}`", src.stage),
                    ));
                }
                Ok((src.index, target))
            }
            _ => Err(self.err(
                e.line,
                format!(
                    "expected `Iteration_Substitute = <Stage>.Input_<n>, <Stage>.Output_<m>`, found `{}`",
                    e.value
                ),
            )),
        }
    }

    fn value(&mut self, e: &Entry, allow: Allow) -> Result<ValueSpec, Diagnostic> {
        let v = e.value.as_str();
        let (dist, param) = match v.split_once(char::is_whitespace) {
            Some((d, p)) => (d, p.trim()),
            None => {
                if c_number(v).1 && !v.is_empty() {
                    self.warn(
                        e.line,
                        format!("`{} = {v}` has no distribution; read as `uniform {v}` (the original tool would fail)", e.key),
                    );
                    return Ok(ValueSpec::Uniform {
                        text: v.to_string(),
                        num: c_number(v).0,
                    });
                }
                return Err(self.err(
                    e.line,
                    format!("expected `{} = <distribution> <parameters>`, e.g. `uniform 10`, found `{v}`", e.key),
                ));
            }
        };
        match dist {
            "uniform" => {
                let (num, clean) = c_number(param);
                if !clean {
                    self.warn(
                        e.line,
                        format!("`uniform {param}` is not a plain number; the synthetic task reads it as {num} (as task.c's atof/atoi do)"),
                    );
                }
                Ok(ValueSpec::Uniform {
                    text: param.to_string(),
                    num,
                })
            }
            "normal" | "gauss" | "lognorm" | "triangular" => {
                let (a, b, rest) = self.bracket(e, param)?;
                let unit: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                Ok(match dist {
                    "lognorm" => ValueSpec::LogNorm {
                        mu: a,
                        sigma: b,
                        unit,
                    },
                    "triangular" => ValueSpec::Triangular {
                        low: a,
                        high: b,
                        unit,
                    },
                    _ => ValueSpec::Normal {
                        mean: a,
                        stdev: b,
                        unit,
                    },
                })
            }
            "polynomial" if allow != Allow::Distribution => {
                let (a, b, rest) = self.bracket(e, param)?;
                let (rest, doubled) = match rest.strip_prefix(']') {
                    Some(r) => (r.trim(), true),
                    None => (rest.trim(), false),
                };
                let src = match rest {
                    "Length" if allow == Allow::Output => Some(PolySrc::Length),
                    s => s
                        .strip_prefix("Input_")
                        .and_then(|k| k.parse::<usize>().ok())
                        .filter(|k| *k >= 1)
                        .map(PolySrc::Input),
                };
                let Some(src) = src else {
                    let want = if allow == Allow::Output {
                        "`Input_<k>` or `Length`"
                    } else {
                        "`Input_<k>`"
                    };
                    return Err(self.err(
                        e.line,
                        format!(
                            "`{}`: a polynomial depends on {want}, found `{rest}`",
                            e.key
                        ),
                    ));
                };
                if allow == Allow::Length && !doubled {
                    self.warn(
                        e.line,
                        "`polynomial [a, b] Input_<k>` is rejected by the original tool at HEAD (its Task_Length regex wants `]]`, FORMAT.md §5); read as a * x^b as earlier versions did",
                    );
                }
                Ok(ValueSpec::Polynomial { a, b, src })
            }
            "polynomial" => Err(self.err(
                e.line,
                format!(
                    "`{}` takes a statistical distribution, not a polynomial",
                    e.key
                ),
            )),
            other => {
                let poly = if allow == Allow::Distribution {
                    ""
                } else {
                    ", polynomial"
                };
                Err(self.err(
                    e.line,
                    format!("unknown distribution `{other}`; expected uniform, normal, gauss, lognorm, triangular{poly}"),
                ))
            }
        }
    }

    /// `[A, B]` followed by the rest of the text; warns where the original regex would not match.
    fn bracket<'v>(
        &mut self,
        e: &Entry,
        param: &'v str,
    ) -> Result<(f64, f64, &'v str), Diagnostic> {
        let bad = || {
            self.err(
                e.line,
                format!("`{}`: expected two non-negative numbers in brackets, e.g. `[10, 2]`, found `{param}`", e.key),
            )
        };
        let inner_end = param.find(']').ok_or_else(bad)?;
        let inner = param.strip_prefix('[').ok_or_else(bad)?;
        let inner = &inner[..inner_end - 1];
        let (a, b) = inner.split_once(',').ok_or_else(bad)?;
        let num = |s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
        };
        let (Some(x), Some(y)) = (num(a), num(b)) else {
            return Err(bad());
        };
        let strict = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.');
        if !(strict(a) && b.starts_with(' ') && strict(&b[1..])) {
            self.warn(
                e.line,
                format!("`[{inner}]` read as [{x}, {y}]; the original tool needs exactly `[A, B]` (comma and one space) and would fail"),
            );
        }
        Ok((x, y, &param[inner_end + 1..]))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Allow {
    Distribution,
    Length,
    Output,
}

/// C `atof` on a value: the number at the start of `s`, and whether `s` was only that number.
pub fn c_number(s: &str) -> (f64, bool) {
    let t = s.trim_start();
    let bytes = t.as_bytes();
    let mut end = 0;
    let mut best = 0;
    if end < bytes.len() && (bytes[end] == b'+' || bytes[end] == b'-') {
        end += 1;
    }
    let mut digits = false;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
        digits = true;
        best = end;
    }
    if end < bytes.len() && bytes[end] == b'.' {
        end += 1;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
            digits = true;
            best = end;
        }
        if digits {
            best = end;
        }
    }
    if digits && end < bytes.len() && (bytes[end] == b'e' || bytes[end] == b'E') {
        let mut e = end + 1;
        if e < bytes.len() && (bytes[e] == b'+' || bytes[e] == b'-') {
            e += 1;
        }
        let start = e;
        while e < bytes.len() && bytes[e].is_ascii_digit() {
            e += 1;
        }
        if e > start {
            best = e;
        }
    }
    if !digits {
        return (0.0, false);
    }
    let v = t[..best].parse::<f64>().unwrap_or(0.0);
    (v, best == s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_number_reads_a_numeric_prefix_like_atof() {
        assert_eq!(c_number("10"), (10.0, true));
        assert_eq!(c_number("1.5"), (1.5, true));
        assert_eq!(c_number("10s"), (10.0, false));
        assert_eq!(c_number("146.27B"), (146.27, false));
        assert_eq!(c_number("1e3"), (1000.0, true));
        assert_eq!(c_number("abc"), (0.0, false));
    }

    #[test]
    fn detection_looks_at_the_first_statement() {
        assert!(looks_like_skeleton_input("# x\n\nNum_Stage = 1\n"));
        assert!(!looks_like_skeleton_input("name = \"x\"\n"));
    }
}
