//! Job script templates: plain shell with `{{placeholder}}`s. Each batch adapter has a
//! built-in default (the same files are in `deploy/templates/`); a site overrides it with
//! `template = "path"` in `resources.toml`.
//!
//! Placeholders: `directives` (the adapter's `#SBATCH`/`#$`/`#PBS`/`#BSUB` lines),
//! `job_name`, `walltime_s`, `environment` (export lines), `pre_commands`, `workdir`
//! (shell-quoted), `command` (the agent argv, shell-quoted). An unknown placeholder is an
//! error, so a typo in a site template fails at submit, not inside the allocation.

use std::collections::BTreeMap;

/// The placeholders every template may use.
pub const PLACEHOLDERS: [&str; 7] = [
    "directives",
    "job_name",
    "walltime_s",
    "environment",
    "pre_commands",
    "workdir",
    "command",
];

pub const SLURM_DEFAULT: &str = include_str!("templates/slurm.sh");
pub const SGE_DEFAULT: &str = include_str!("templates/sge.sh");
pub const PBS_DEFAULT: &str = include_str!("templates/pbs.sh");
pub const LSF_DEFAULT: &str = include_str!("templates/lsf.sh");

/// Replaces every `{{name}}` in `template` by `values[name]`; `Err` names the first
/// unknown or unclosed placeholder.
pub fn render(template: &str, values: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "unclosed `{{` placeholder".to_string())?;
        let key = after[..end].trim();
        let value = values.get(key).ok_or_else(|| {
            format!(
                "unknown placeholder `{{{{{key}}}}}`; known: {}",
                PLACEHOLDERS.join(", ")
            )
        })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<&'static str, String> {
        PLACEHOLDERS
            .iter()
            .map(|k| (*k, format!("<{k}>")))
            .collect()
    }

    #[test]
    fn render_replaces_known_placeholders() {
        let out = render("a {{command}} b {{ job_name }}", &values()).unwrap();
        assert_eq!(out, "a <command> b <job_name>");
    }

    #[test]
    fn render_rejects_unknown_and_unclosed_placeholders() {
        let err = render("{{comand}}", &values()).unwrap_err();
        assert!(err.contains("unknown placeholder `{{comand}}`"), "{err}");
        assert!(render("{{command", &values()).is_err());
    }

    #[test]
    fn default_templates_use_only_known_placeholders_and_run_the_command() {
        for t in [SLURM_DEFAULT, SGE_DEFAULT, PBS_DEFAULT, LSF_DEFAULT] {
            let out = render(t, &values()).unwrap();
            assert!(out.starts_with("#!/bin/bash\n<directives>"), "{out}");
            assert!(out.contains("<command>"));
        }
    }

    #[test]
    fn deploy_templates_are_copies_of_the_built_in_ones() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/templates");
        for (name, built_in) in [
            ("slurm.sh", SLURM_DEFAULT),
            ("sge.sh", SGE_DEFAULT),
            ("pbs.sh", PBS_DEFAULT),
            ("lsf.sh", LSF_DEFAULT),
        ] {
            let copy = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
            assert_eq!(
                copy, built_in,
                "deploy/templates/{name} differs from the built-in"
            );
        }
    }
}
