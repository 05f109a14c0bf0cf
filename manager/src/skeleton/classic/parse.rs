//! Reads the original Application Skeleton input format into stage definitions
//! (docs/skeleton.md#classic-lexical, docs/skeleton.md#classic-grammar).
//!
//! The original parser consumes lines strictly in a fixed order and crashes on anything
//! else. This one reads each stage block by key, so it can say which line is wrong and what
//! was expected; where the intent is unambiguous (a bare `#` line, `Num_Stages`, a key out
//! of order, the polynomial form the HEAD regex rejects) it accepts with a warning.

use super::super::diag::Diagnostic;
use super::defs::{InputDef, IterationDef, StageDef};
use super::values::Allow;

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

pub(super) struct Entry {
    pub(super) line: usize,
    pub(super) key: String,
    pub(super) value: String,
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

pub(super) fn show(e: &Entry) -> String {
    format!("{} = {}", e.key, e.value)
}

pub(super) struct Parser<'a> {
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
    pub(super) fn err(&self, line: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(self.origin, line, message)
    }

    pub(super) fn warn(&mut self, line: usize, message: impl Into<String>) {
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
                if num == 0 {
                    self.warn(line, "`Iteration_Num = 0` read as 1: the stages run once");
                }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_looks_at_the_first_statement() {
        assert!(looks_like_skeleton_input("# x\n\nNum_Stage = 1\n"));
        assert!(!looks_like_skeleton_input("name = \"x\"\n"));
    }
}
