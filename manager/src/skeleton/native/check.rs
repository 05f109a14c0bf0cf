//! Validation of a skeleton document before anything is drawn: names, references to earlier
//! stages, mappings and iterations, each with a message that says what to fix.

use super::{MappingKind, SkeletonDoc, TaskKind};
use crate::skeleton::dist::{Dist, PolyVar};
use std::collections::HashMap;

/// `"stage.N"` -> (stage, N >= 1).
pub(super) fn split_ref(s: &str) -> Option<(&str, usize)> {
    let (stage, n) = s.rsplit_once('.')?;
    Some((stage, n.parse().ok().filter(|n| *n >= 1)?))
}

pub(super) fn check(doc: &SkeletonDoc) -> Result<(), String> {
    let mut seen = HashMap::new();
    for (i, s) in doc.stages.iter().enumerate() {
        let ok = !s.name.is_empty()
            && s.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(format!(
                "stage name `{}`: use letters, digits, `_` and `-` only",
                s.name
            ));
        }
        if seen.insert(s.name.as_str(), i).is_some() {
            return Err(format!("stage name `{}` is used twice", s.name));
        }
        if s.processes == 0 || s.cores_per_process == 0 {
            return Err(format!(
                "stage `{}`: processes and cores_per_process must be at least 1",
                s.name
            ));
        }
        if s.kind == TaskKind::Serial && s.processes > 1 {
            return Err(format!(
                "stage `{}`: a serial task has one process; use type = \"parallel\" for {} MPI ranks, or cores_per_process for threads",
                s.name, s.processes
            ));
        }
        if matches!(
            s.length,
            Dist::Polynomial {
                of: PolyVar::Length,
                ..
            }
        ) {
            return Err(format!(
                "stage `{}`: `length` cannot be a polynomial of the length",
                s.name
            ));
        }
        for (k, inp) in s.inputs.iter().enumerate() {
            let what = format!("stage `{}` input {}", s.name, k + 1);
            match inp.from.as_deref().unwrap_or("filesystem") {
                "filesystem" => {
                    if inp.size.is_none() {
                        return Err(format!("{what}: a filesystem input needs `size`"));
                    }
                    if matches!(inp.size, Some(Dist::Polynomial { .. })) {
                        return Err(format!(
                            "{what}: a filesystem input size cannot be a polynomial"
                        ));
                    }
                    if inp.mapping.is_some() || inp.output.is_some() || inp.group.is_some() {
                        return Err(format!(
                            "{what}: `mapping`, `output` and `group` need `from = \"<stage>\"`"
                        ));
                    }
                }
                from => {
                    let Some(&j) = seen.get(from).filter(|&&j| j < i) else {
                        return Err(format!(
                            "{what}: `from = \"{from}\"` must name an earlier stage"
                        ));
                    };
                    let outs = doc.stages[j].outputs.len();
                    let o = inp.output.unwrap_or(1);
                    if o == 0 || o > outs {
                        return Err(format!(
                            "{what}: stage `{from}` has {outs} output(s), there is no output {o}"
                        ));
                    }
                    if inp.size.is_some() {
                        return Err(format!(
                            "{what}: `size` is taken from stage `{from}`; remove it"
                        ));
                    }
                    match (inp.mapping, inp.group) {
                        (Some(MappingKind::Combinations), None) => {
                            return Err(format!(
                            "{what}: `mapping = \"combinations\"` needs `group = <files per task>`"
                        ))
                        }
                        (Some(MappingKind::Combinations), Some(_)) | (_, None) => {}
                        (_, Some(_)) => {
                            return Err(format!(
                                "{what}: `group` only goes with `mapping = \"combinations\"`"
                            ))
                        }
                    }
                }
            }
        }
    }
    for it in &doc.iterations {
        let Some(first) = it.stages.first() else {
            return Err("an iteration needs at least one stage".into());
        };
        let Some(&start) = seen.get(first.as_str()) else {
            return Err(format!("iteration: unknown stage `{first}`"));
        };
        for (off, name) in it.stages.iter().enumerate() {
            if doc.stages.get(start + off).map(|s| &s.name) != Some(name) {
                return Err(format!(
                    "iteration over [{}]: the stages must be consecutive in the file, in order",
                    it.stages.join(", ")
                ));
            }
        }
        if it.count == 0 {
            return Err(format!(
                "iteration over [{}]: count must be at least 1",
                it.stages.join(", ")
            ));
        }
        if let Some(fb) = &it.feedback {
            let bad =
                |s: &str| format!("iteration feedback `{s}`: use \"<stage of the group>.<n>\"");
            let (is, ii) = split_ref(&fb.input).ok_or_else(|| bad(&fb.input))?;
            let (os, oo) = split_ref(&fb.output).ok_or_else(|| bad(&fb.output))?;
            for s in [is, os] {
                if !it.stages.iter().any(|n| n == s) {
                    return Err(bad(s));
                }
            }
            let st = &doc.stages[seen[is]];
            if ii > st.inputs.len()
                || st.inputs[ii - 1].from.as_deref().unwrap_or("filesystem") == "filesystem"
            {
                return Err(format!(
                    "iteration feedback: input {ii} of `{is}` must be an input read from a stage"
                ));
            }
            if oo > doc.stages[seen[os]].outputs.len() {
                return Err(format!("iteration feedback: `{os}` has no output {oo}"));
            }
        }
    }
    for (a, ia) in doc.iterations.iter().enumerate() {
        for ib in &doc.iterations[a + 1..] {
            if ia.stages.iter().any(|s| ib.stages.contains(s)) {
                return Err("a stage belongs to two iterations".into());
            }
        }
    }
    Ok(())
}
