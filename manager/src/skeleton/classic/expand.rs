//! Iterations of the original format (docs/skeleton.md#classic-iterations): a group of stages is replaced by K
//! copies, the last one keeping the original names so later stages read the final result.

use super::super::diag::Diagnostic;
use super::defs::{FileRef, Mapping, Source, StageDef};

/// Unrolls every `Iteration_Num > 1` group, iteration-major.
pub fn expand_iterations(stages: Vec<StageDef>, origin: &str) -> Result<Vec<StageDef>, Diagnostic> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < stages.len() {
        let s = &stages[i];
        let Some(it) = s.iteration.clone().filter(|it| it.num > 1) else {
            let mut c = s.clone();
            c.iteration = None;
            out.push(c);
            i += 1;
            continue;
        };
        if !it.stages.contains(&s.name) {
            return Err(Diagnostic::at(
                origin,
                it.line,
                format!(
                    "`Iteration_Stages = {}` must include the iterated stage `{}`",
                    it.stages.join(", "),
                    s.name
                ),
            ));
        }
        let others: Vec<&String> = it.stages.iter().filter(|n| **n != s.name).collect();
        let group: Vec<&StageDef> = stages[i..].iter().take(1 + others.len()).collect();
        let following: Vec<&String> = group[1..].iter().map(|g| &g.name).collect();
        if following != others {
            return Err(Diagnostic::at(
                origin,
                it.line,
                format!(
                    "`Iteration_Stages = {}`: the stages iterated with `{}` must be the stage blocks right after it, in order; the file has [{}] there",
                    it.stages.join(", "),
                    s.name,
                    following.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let members: Vec<String> = group.iter().map(|g| g.name.clone()).collect();
        if !members.contains(&it.target.stage) {
            return Err(Diagnostic::at(
                origin,
                it.line,
                format!(
                    "`Iteration_Substitute` reads `{}`, which is not a stage of the iteration group [{}]",
                    it.target,
                    members.join(", ")
                ),
            ));
        }
        if it.substitute_input > s.inputs.len() {
            return Err(Diagnostic::at(
                origin,
                it.line,
                format!(
                    "`Iteration_Substitute` replaces input {} of `{}`, which declares only {} input(s)",
                    it.substitute_input,
                    s.name,
                    s.inputs.len()
                ),
            ));
        }
        let suffix = |iter: usize| {
            if iter == it.num {
                String::new()
            } else {
                format!("_Iter_{iter}")
            }
        };
        for iter in 1..=it.num {
            let sfx = suffix(iter);
            for (g, st) in group.iter().enumerate() {
                let mut c = (*st).clone();
                c.iteration = None;
                c.name = format!("{}{sfx}", st.name);
                let rename = |r: &mut FileRef| {
                    if members.contains(&r.stage) {
                        r.stage = format!("{}{sfx}", r.stage);
                    }
                };
                for input in &mut c.inputs {
                    if let Some((Source::File(r), _)) = &mut input.source {
                        rename(r);
                    }
                }
                if let Some((Mapping::Combination { from, .. }, _)) = &mut c.mapping {
                    rename(from);
                }
                if g == 0 && iter > 1 {
                    let mut target = it.target.clone();
                    target.stage = format!("{}{}", target.stage, suffix(iter - 1));
                    let input = &mut c.inputs[it.substitute_input - 1];
                    input.source = Some((Source::File(target), it.line));
                }
                out.push(c);
            }
        }
        i += group.len();
    }
    Ok(out)
}
