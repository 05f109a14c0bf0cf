//! The workflow language: one test per error class (exact message and location), arrays,
//! defaults, dependencies, stages, formats, the schema and the shipped examples.

use super::*;

fn errors(text: &str, format: Format) -> Vec<String> {
    let origin = match format {
        Format::Toml => "wf.toml",
        Format::Json => "wf.json",
    };
    match parse_str(text, format, origin) {
        Ok(_) => Vec::new(),
        Err(e) => {
            e.0.iter()
                .map(|e| format!("{}: {}", e.location, e.message))
                .collect()
        }
    }
}

fn toml_errors(text: &str) -> Vec<String> {
    errors(text, Format::Toml)
}

fn parse(text: &str) -> Workflow {
    parse_str(text, Format::Toml, "wf.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn index_of(wf: &Workflow, name: &str) -> usize {
    wf.tasks
        .iter()
        .position(|t| t.spec.name == name)
        .expect(name)
}

#[test]
fn unknown_field_names_the_closest_and_the_valid_fields() {
    let e = toml_errors("[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\ncorez = 2\n");
    assert_eq!(e, ["wf.toml:4:1: unknown field `corez`; did you mean `cores`? valid fields here: name, count, command, shell, env, cwd, cores, gpus, mem_mb, processes, mpi, est_duration_s, walltime_s, retries, priority, tags, input_files, output_files, stage, depends_on"]);
}

#[test]
fn bad_type_names_the_field_and_the_fix() {
    let e = toml_errors("[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\ncores = \"8\"\n");
    assert_eq!(e, ["wf.toml:4:9: field `cores`: invalid type: string \"8\", expected i64; write a whole number without quotes"]);
    let e = toml_errors("[[tasks]]\nname = \"a\"\ncommand = [\"x\", 3]\n");
    assert_eq!(e, ["wf.toml:3:17: field `command`: invalid type: integer `3`, expected a string; write it in quotes"]);
}

#[test]
fn negative_and_zero_cores_are_refused() {
    let e = toml_errors("[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\ncores = -4\n[[tasks]]\nname = \"b\"\ncommand = [\"x\"]\ncores = 0\n");
    assert_eq!(e, [
        "wf.toml:4:9: task `a` asks for -4 cores; cores is the task's total core count and must be 1 or more (e.g. cores = 1)",
        "wf.toml:8:9: task `b` asks for 0 cores; cores is the task's total core count and must be 1 or more (e.g. cores = 1)",
    ]);
}

#[test]
fn processes_must_divide_cores() {
    let e = toml_errors("[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\ncores = 6\nprocesses = 4\n");
    assert_eq!(e, ["wf.toml:5:13: task `a` has cores = 6, which processes = 4 does not divide; cores is the task's total, use a multiple of 4 (e.g. cores = 8)"]);
}

#[test]
fn missing_dependency_suggests_the_closest_name() {
    let e = toml_errors("[[tasks]]\nname = \"prep\"\ncommand = [\"x\"]\n[[tasks]]\nname = \"b\"\ncommand = [\"x\"]\ndepends_on = [\"prepp\"]\n");
    assert_eq!(e, ["wf.toml:7:14: task `b` depends on `prepp`, which is not a task, array or stage; did you mean `prep`?"]);
    let e = toml_errors("[[tasks]]\nname = \"sim\"\ncount = 2\ncommand = [\"x\"]\n[[tasks]]\nname = \"b\"\ncommand = [\"x\"]\ndepends_on = [\"sim-{idx}\"]\n");
    assert_eq!(e, ["wf.toml:8:14: task `b` depends on `sim-{idx}`, which is not a task, array or stage; did you mean `sim-{index}`?"]);
}

#[test]
fn cycle_is_shown_from_its_first_task() {
    let e = toml_errors("[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\ndepends_on = [\"c\"]\n[[tasks]]\nname = \"b\"\ncommand = [\"x\"]\ndepends_on = [\"a\"]\n[[tasks]]\nname = \"c\"\ncommand = [\"x\"]\ndepends_on = [\"b\"]\n");
    assert_eq!(
        e,
        ["wf.toml:4:14: dependency cycle: a -> c -> b -> a; remove one of these dependencies"]
    );
}

#[test]
fn cycle_through_a_stage_barrier_names_the_stage() {
    let e = toml_errors("[[stages]]\nname = \"one\"\n[[stages]]\nname = \"two\"\n[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\nstage = \"one\"\ndepends_on = [\"b\"]\n[[tasks]]\nname = \"b\"\ncommand = [\"x\"]\nstage = \"two\"\n");
    assert_eq!(e, ["wf.toml:9:14: dependency cycle: a -> b -> stage:one -> a; remove one of these dependencies"]);
}

#[test]
fn an_array_depending_on_itself_is_a_cycle() {
    let e = toml_errors(
        "[[tasks]]\nname = \"sim\"\ncount = 3\ncommand = [\"x\"]\ndepends_on = [\"sim\"]\n",
    );
    assert_eq!(e, ["wf.toml:5:14: dependency cycle: sim-0 -> sim-{index} -> sim-0; remove one of these dependencies"]);
    let e = toml_errors("[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\ndepends_on = [\"a\"]\n");
    assert_eq!(
        e,
        ["wf.toml:4:14: dependency cycle: a -> a; remove one of these dependencies"]
    );
}

#[test]
fn duplicate_name_points_at_both() {
    let e = toml_errors(
        "[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\n[[tasks]]\nname = \"a\"\ncommand = [\"y\"]\n",
    );
    assert_eq!(e, ["wf.toml:5:8: task name `a` is used twice (first at wf.toml:2:8); task names must be unique"]);
}

#[test]
fn duplicate_between_arrays_is_reported_once() {
    let e = toml_errors("[[tasks]]\nname = \"s\"\ncount = 5\ncommand = [\"x\"]\n[[tasks]]\nname = \"s\"\ncount = 5\ncommand = [\"y\"]\n");
    assert_eq!(e, ["wf.toml:6:8: task name `s-0` is used twice (first at wf.toml:2:8); task names must be unique"]);
}

#[test]
fn empty_command_is_refused() {
    let e = toml_errors("[[tasks]]\nname = \"b\"\ncommand = []\n");
    assert_eq!(e, ["wf.toml:3:11: task `b` has an empty `command`; give the program and its arguments, e.g. command = [\"/bin/echo\", \"hi\"]"]);
    let e = toml_errors("[[tasks]]\nname = \"b\"\n");
    assert_eq!(
        e,
        ["wf.toml:1:1: task `b` has no `command`; add command = [\"program\", \"arg\"]"]
    );
}

#[test]
fn shell_line_needs_shell_true() {
    let e = toml_errors("[[tasks]]\nname = \"a\"\ncommand = \"echo hi\"\n");
    assert_eq!(e, ["wf.toml:3:11: task `a` has a single-string `command` but no shell; split it into argv (command = [\"prog\", \"arg\"]) or set shell = true"]);
    let wf = parse("[[tasks]]\nname = \"a\"\ncommand = \"echo hi | wc\"\nshell = true\n");
    assert_eq!(wf.tasks[0].spec.command, ["echo hi | wc"]);
    assert!(wf.tasks[0].spec.shell);
}

#[test]
fn duplicate_stage_points_at_the_first() {
    let e = toml_errors(
        "[[stages]]\nname = \"\"\n[[stages]]\nname = \"a\"\n[[stages]]\nname = \"a\"\n",
    );
    assert_eq!(e, [
        "wf.toml:2:8: stage name `` is not usable; give a non-empty name without `:`",
        "wf.toml:6:8: stage `a` is declared twice (first at wf.toml:4:8); stage names must be unique",
    ]);
}

#[test]
fn task_names_may_not_look_like_stage_references() {
    let e = toml_errors("[[tasks]]\nname = \"stage:x\"\ncommand = [\"x\"]\n");
    assert_eq!(e, ["wf.toml:2:8: task name `stage:x` starts with `stage:`, which depends_on reserves for stages; rename the task"]);
}

#[test]
fn unknown_stage_lists_the_declared_ones() {
    let e = toml_errors("[[stages]]\nname = \"prep\"\n[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\nstage = \"prepare\"\n");
    assert_eq!(e, ["wf.toml:6:9: task `a` names stage `prepare`, which is not declared; did you mean `prep`? declared stages: prep"]);
}

#[test]
fn missing_name_is_a_parse_error() {
    let e = toml_errors("[[tasks]]\ncommand = [\"x\"]\n");
    assert_eq!(e, ["wf.toml:1:1: missing field `name`; every [[tasks]] and [[stages]] entry needs name = \"...\""]);
}

#[test]
fn every_semantic_error_is_reported() {
    let e = toml_errors("[[tasks]]\nname = \"a\"\ncommand = []\ncores = 0\n[[tasks]]\nname = \"b\"\ncommand = [\"x\"]\ndepends_on = [\"zzz\"]\n");
    assert_eq!(e.len(), 3, "{e:#?}");
}

#[test]
fn a_refused_task_does_not_make_its_dependents_fail_too() {
    let e = toml_errors("[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\ncores = 0\n[[tasks]]\nname = \"b\"\ncommand = [\"x\"]\ndepends_on = [\"a\"]\n");
    assert_eq!(e.len(), 1, "{e:#?}");
}

#[test]
fn defaults_field_errors_point_at_the_defaults() {
    let e = toml_errors("[defaults]\ncores = 0\n[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\n");
    assert_eq!(e, ["wf.toml:2:9: task `a` asks for 0 cores; cores is the task's total core count and must be 1 or more (e.g. cores = 1)"]);
}

#[test]
fn inline_task_tables_are_located_too() {
    let e = toml_errors("tasks = [{name = \"a\", command = [\"x\"], cores = 0}]\n");
    assert_eq!(e, ["wf.toml:1:48: task `a` asks for 0 cores; cores is the task's total core count and must be 1 or more (e.g. cores = 1)"]);
}

#[test]
fn json_errors_give_line_and_column() {
    let e = errors(
        r#"{"tasks": [{"name": "a", "command": ["x"], "corez": 2}]}"#,
        Format::Json,
    );
    assert!(
        e[0].starts_with("wf.json:1:50: unknown field `corez`; did you mean `cores`?"),
        "{e:?}"
    );
    let e = errors(
        "{\"tasks\": [\n {\"name\": \"a\",\n  \"command\": [\"x\"],\n  \"cores\": \"8\"}]}",
        Format::Json,
    );
    assert_eq!(e, ["wf.json:4:14: field `cores`: invalid type: string \"8\", expected i64; write a whole number without quotes"]);
    let e = errors(
        r#"{"tasks": [{"name": "a", "command": ["x"]}, {"name": "b", "command": ["x"], "cores": 0}]}"#,
        Format::Json,
    );
    assert_eq!(e, ["wf.json:1:86: task `b` asks for 0 cores; cores is the task's total core count and must be 1 or more (e.g. cores = 1)"]);
    let e = errors(
        "{\"stages\": [{\"name\": \"s\"}],\n \"tasks\": [\n  {\"name\": \"a\", \"command\": [\"x\"], \"stage\": \"t\"}]}",
        Format::Json,
    );
    assert_eq!(e, ["wf.json:3:44: task `a` names stage `t`, which is not declared; did you mean `s`? declared stages: s"]);
}

/// One file with an unknown field, a bad type, negative cores, a missing dependency and a
/// cycle among the sound entries: every problem is reported at its own place.
const MANY_ERRORS: &str = r#"[[tasks]]
name = "a"
command = ["x"]
corez = 2

[[tasks]]
name = "b"
command = ["x"]
cores = "8"

[[tasks]]
name = "c"
command = ["x"]
cores = -4

[[tasks]]
name = "d"
command = ["x"]
depends_on = ["nope", "e"]

[[tasks]]
name = "e"
command = ["x"]
depends_on = ["d"]
"#;

#[test]
fn every_entry_is_read_on_its_own_and_every_error_reported() {
    assert_eq!(toml_errors(MANY_ERRORS), [
        "wf.toml:4:1: unknown field `corez`; did you mean `cores`? valid fields here: name, count, command, shell, env, cwd, cores, gpus, mem_mb, processes, mpi, est_duration_s, walltime_s, retries, priority, tags, input_files, output_files, stage, depends_on",
        "wf.toml:9:9: field `cores`: invalid type: string \"8\", expected i64; write a whole number without quotes",
        "wf.toml:14:9: task `c` asks for -4 cores; cores is the task's total core count and must be 1 or more (e.g. cores = 1)",
        "wf.toml:19:14: task `d` depends on `nope`, which is not a task, array or stage; name a task, an array (`sim-{index}` or `sim`) or a stage (`stage:NAME`)",
        "wf.toml:19:14: dependency cycle: d -> e -> d; remove one of these dependencies",
    ]);
}

#[test]
fn json_entries_are_read_on_their_own_too() {
    let json =
        serde_json::to_string_pretty(&toml::from_str::<toml::Value>(MANY_ERRORS).unwrap()).unwrap();
    let e = errors(&json, Format::Json);
    let messages: Vec<&str> = e.iter().map(|e| e.split_once(": ").unwrap().1).collect();
    let toml_messages: Vec<String> = toml_errors(MANY_ERRORS)
        .into_iter()
        .map(|e| e.split_once(": ").unwrap().1.to_string())
        .collect();
    assert_eq!(messages, toml_messages);
    // Each location is the line of the offending key or value.
    for (error, needle) in e.iter().zip([
        "\"corez\"",
        "\"8\"",
        "-4",
        "\"depends_on\"",
        "\"depends_on\"",
    ]) {
        let (line, col) = {
            let mut parts = error.split(':').skip(1);
            let line: usize = parts.next().unwrap().parse().unwrap();
            let col: usize = parts.next().unwrap().parse().unwrap();
            (line, col)
        };
        let text = json.lines().nth(line - 1).unwrap();
        assert!(
            text.contains(needle) && col <= text.len(),
            "{error} points at `{text}`"
        );
    }
}

/// One entry with three problems: a misspelt field and two values of the wrong type.
const ONE_ENTRY_THREE_PROBLEMS: &str =
    "[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\ncorez = 2\ncores = \"x\"\ngpus = \"y\"\n";

#[test]
fn every_problem_of_one_entry_is_reported_not_only_the_first() {
    let e = toml_errors(ONE_ENTRY_THREE_PROBLEMS);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e[0].starts_with("wf.toml:4:1: unknown field `corez`"),
        "{e:#?}"
    );
    assert!(
        e[1].starts_with("wf.toml:5:9: field `cores`: invalid type"),
        "{e:#?}"
    );
    assert!(
        e[2].starts_with("wf.toml:6:8: field `gpus`: invalid type"),
        "{e:#?}"
    );

    let json = serde_json::to_string_pretty(
        &toml::from_str::<toml::Value>(ONE_ENTRY_THREE_PROBLEMS).unwrap(),
    )
    .unwrap();
    let e = errors(&json, Format::Json);
    let messages: Vec<&str> = e.iter().map(|e| e.split_once(": ").unwrap().1).collect();
    assert_eq!(messages.len(), 3, "{e:#?}");
    // Each at the line of its own member (JSON members come in another order).
    for (start, needle) in [
        ("unknown field `corez`", "\"corez\""),
        ("field `cores`: invalid type", "\"cores\""),
        ("field `gpus`: invalid type", "\"gpus\""),
    ] {
        let error = e
            .iter()
            .find(|e| e.split_once(": ").unwrap().1.starts_with(start))
            .unwrap_or_else(|| panic!("no `{start}` in {e:#?}"));
        let line: usize = error.split(':').nth(1).unwrap().parse().unwrap();
        let text = json.lines().nth(line - 1).unwrap();
        assert!(text.contains(needle), "{error} points at `{text}`");
    }
}

#[test]
fn a_dependency_on_an_unreadable_entry_is_not_reported_twice() {
    let e = toml_errors("[[tasks]]\nname = \"sim\"\ncount = 3\ncommand = [\"x\"]\ncores = \"two\"\n[[tasks]]\nname = \"one\"\ncommand = 5\n[[tasks]]\nname = \"after\"\ncommand = [\"x\"]\ndepends_on = [\"sim\", \"one\"]\n");
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e[0].starts_with("wf.toml:5:9: field `cores`"), "{e:#?}");
    assert!(e[1].starts_with("wf.toml:8:11: field `command`"), "{e:#?}");
}

#[test]
fn an_unreadable_stage_still_declares_its_name() {
    let e = toml_errors("[[stages]]\nname = \"s\"\ndescripton = \"typo\"\n[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\nstage = \"s\"\n");
    assert_eq!(e, ["wf.toml:3:1: unknown field `descripton`; did you mean `description`? valid fields here: name, description"]);
}

#[test]
fn top_level_keys_are_checked_one_by_one() {
    let e =
        toml_errors("name = 3\ntask = []\n[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\ncores = 0\n");
    assert_eq!(e, [
        "wf.toml:1:8: field `name`: invalid type: integer `3`, expected a string; write it in quotes",
        "wf.toml:2:1: unknown field `task`; did you mean `tasks`? valid fields here: name, defaults, stages, tasks",
        "wf.toml:6:9: task `a` asks for 0 cores; cores is the task's total core count and must be 1 or more (e.g. cores = 1)",
    ]);
    let e = toml_errors("tasks = 5\n");
    assert_eq!(e, ["wf.toml:1:9: field `tasks`: invalid type: integer `5`, expected a sequence; write a list: [\"a\", \"b\"]"]);
}

const NODES: &[(&str, u32, u32, u64, u32)] = &[
    ("frontier", 128, 8, 512_000, 64),
    ("laptop", 8, 0, 16_000, 1),
];

fn shapes() -> Vec<NodeShape> {
    NODES
        .iter()
        .map(|&(r, cores, gpus, mem_mb, nodes)| NodeShape {
            resource: r.into(),
            cores,
            gpus,
            mem_mb,
            nodes,
        })
        .collect()
}

#[test]
fn task_larger_than_every_node_is_refused() {
    let wf = parse("[[tasks]]\nname = \"ok\"\ncommand = [\"x\"]\ncores = 128\n[[tasks]]\nname = \"sim-{index}\"\ncount = 4\ncommand = [\"x\"]\ncores = 256\n");
    let e: Vec<String> = check_fits(&wf, &shapes())
        .iter()
        .map(|e| format!("{}: {}", e.location, e.message))
        .collect();
    assert_eq!(e, ["wf.toml:9:9: task `sim-{index}` asks for 256 cores; the largest node has 128 (resource `frontier`); set mpi = true to span nodes"]);
}

#[test]
fn mpi_task_may_span_whole_nodes_but_not_more() {
    let wf = parse("[[tasks]]\nname = \"wide\"\ncommand = [\"x\"]\ncores = 8192\nprocesses = 8192\nmpi = true\n[[tasks]]\nname = \"huge\"\ncommand = [\"x\"]\ncores = 8320\nmpi = true\n");
    let e: Vec<String> = check_fits(&wf, &shapes())
        .iter()
        .map(|e| format!("{}: {}", e.location, e.message))
        .collect();
    assert_eq!(e, ["wf.toml:10:9: MPI task `huge` asks for 8320 cores; the largest resource has 8192 (resource `frontier`: 64 nodes x 128)"]);
}

#[test]
fn gpus_are_checked_against_gpu_nodes() {
    let wf = parse("[[tasks]]\nname = \"g\"\ncommand = [\"x\"]\ngpus = 9\n");
    let e: Vec<String> = check_fits(&wf, &shapes())
        .iter()
        .map(|e| format!("{}: {}", e.location, e.message))
        .collect();
    assert_eq!(e, ["wf.toml:4:8: task `g` asks for 9 GPUs; the largest node has 8 (resource `frontier`); set mpi = true to span nodes"]);
    assert!(check_fits(&wf, &[]).is_empty());
}

#[test]
fn hand_built_workflows_are_checked_task_by_task() {
    let mut big = TaskSpec::new(TaskId(uuid::Uuid::nil()), "big", vec!["x".into()]);
    big.cores = 1000;
    let small = TaskSpec::new(TaskId(uuid::Uuid::nil()), "small", vec!["x".into()]);
    let wf = Workflow::new(
        "w",
        vec![TaskDef::new(small, vec![]), TaskDef::new(big, vec![0])],
    );
    let e = check_fits(&wf, &shapes());
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].message, "task `big` asks for 1000 cores; the largest node has 128 (resource `frontier`); set mpi = true to span nodes");
}

#[test]
fn arrays_substitute_index_in_names_args_env_and_files() {
    let wf = parse(
        r#"[[tasks]]
name = "sim"
count = 3
command = ["run", "--seed={index}"]
env = { SEED = "{index}", FIXED = "x" }
cwd = "run/{index}"
input_files = ["in/{index}.dat", { path = "shared.db", size_bytes = 42 }]
output_files = [{ path = "out/{index}.h5" }]
"#,
    );
    let t = &wf.tasks[2].spec;
    assert_eq!(t.name, "sim-2");
    assert_eq!(t.command, ["run", "--seed=2"]);
    let env = wf.tasks[2].env();
    assert_eq!(env["SEED"], "2");
    assert_eq!(env["FIXED"], "x");
    assert_eq!(wf.tasks[2].index, Some(2));
    assert!(
        std::sync::Arc::ptr_eq(&wf.tasks[0].env, &wf.tasks[2].env),
        "one map per entry"
    );
    assert_eq!(wf.tasks[2].to_spec(&CampaignId::random()).env, env);
    assert_eq!(t.cwd.as_deref(), Some("run/2"));
    assert_eq!(t.input_files[0].path, "in/2.dat");
    assert_eq!(t.input_files[1].size_bytes, Some(42));
    assert_eq!(t.output_files[0].path, "out/2.h5");
    let wf = parse("[[tasks]]\nname = \"p{index}x\"\ncount = 2\ncommand = [\"x\"]\n");
    assert_eq!(wf.tasks[1].spec.name, "p1x");
}

#[test]
fn defaults_apply_and_tasks_override_them() {
    let wf = parse(
        r#"[defaults]
cores = 4
retries = 5
env = { A = "1", B = "2" }
tags = ["d"]
[[tasks]]
name = "a"
command = ["x"]
[[tasks]]
name = "b"
command = ["x"]
cores = 2
env = { B = "3" }
tags = ["t"]
"#,
    );
    let (a, b) = (&wf.tasks[0].spec, &wf.tasks[1].spec);
    assert_eq!(
        (a.cores, a.retries, a.tags.clone()),
        (4, 5, vec!["d".to_string()])
    );
    assert_eq!(
        (b.cores, b.retries, b.tags.clone()),
        (2, 5, vec!["t".to_string()])
    );
    let env = wf.tasks[1].env();
    assert_eq!(env["A"], "1");
    assert_eq!(env["B"], "3");
}

#[test]
fn all_task_fields_reach_the_spec() {
    let wf = parse(
        r#"[[tasks]]
name = "m"
command = ["lmp"]
cwd = "/scratch"
cores = 64
gpus = 2
mem_mb = 1000
processes = 16
mpi = true
est_duration_s = 30.5
walltime_s = 60
retries = 0
priority = 7
"#,
    );
    let s = &wf.tasks[0].spec;
    assert_eq!(s.cwd.as_deref(), Some("/scratch"));
    assert_eq!(
        (s.cores, s.gpus, s.mem_mb, s.processes, s.mpi),
        (64, 2, 1000, 16, true)
    );
    assert_eq!(
        (s.est_duration_s, s.walltime_s, s.retries, s.priority),
        (30.5, Some(60.0), 0, 7)
    );
}

const DEPS: &str = r#"
name = "deps"
[[stages]]
name = "prep"
[[stages]]
name = "run"
[[tasks]]
name = "fetch"
command = ["x"]
stage = "prep"
[[tasks]]
name = "sim-{index}"
count = 3
command = ["x"]
stage = "run"
[[tasks]]
name = "by-name"
command = ["x"]
depends_on = ["fetch"]
[[tasks]]
name = "by-template"
command = ["x"]
depends_on = ["sim-{index}"]
[[tasks]]
name = "by-base"
command = ["x"]
depends_on = ["sim", "fetch"]
[[tasks]]
name = "by-stage"
command = ["x"]
depends_on = ["stage:prep"]
"#;

#[test]
fn depends_on_resolves_names_arrays_and_stages() {
    let wf = parse(DEPS);
    let by = |n: &str| &wf.tasks[index_of(&wf, n)];
    assert_eq!(by("by-name").depends_on, [index_of(&wf, "fetch")]);
    let sim = by("by-template").depends_on_groups.clone();
    assert_eq!(sim.len(), 1);
    assert_eq!(wf.groups[sim[0]].name, "sim-{index}");
    assert_eq!(wf.groups[sim[0]].members, [1, 2, 3]);
    assert_eq!(by("by-base").depends_on_groups, sim);
    assert_eq!(by("by-base").depends_on, [0]);
    assert_eq!(by("by-stage").depends_on_groups, [wf.stages[0].group]);
}

#[test]
fn dependents_wait_for_every_member_of_an_array() {
    let wf = parse(DEPS);
    let mut dag = dag::Dag::new(&wf);
    let at = |n: &str| index_of(&wf, n);
    let mut roots = dag.roots();
    roots.sort();
    assert_eq!(roots, [at("fetch")]);
    let mut ready = dag.complete(at("fetch"));
    ready.sort();
    assert_eq!(
        ready,
        [
            at("sim-0"),
            at("sim-1"),
            at("sim-2"),
            at("by-name"),
            at("by-stage")
        ]
    );
    assert!(dag.complete(at("sim-0")).is_empty());
    assert!(dag.complete(at("sim-2")).is_empty());
    let mut ready = dag.complete(at("sim-1"));
    ready.sort();
    assert_eq!(ready, [at("by-template"), at("by-base")]);
}

#[test]
fn stage_barrier_holds_the_next_stage_until_the_whole_stage_is_done() {
    let wf = parse(
        r#"[[stages]]
name = "a"
[[stages]]
name = "empty"
[[stages]]
name = "c"
[[tasks]]
name = "a"
count = 2
command = ["x"]
stage = "a"
[[tasks]]
name = "c"
count = 2
command = ["x"]
stage = "c"
[[tasks]]
name = "free"
command = ["x"]
"#,
    );
    assert!(
        wf.tasks.iter().all(|t| t.depends_on.is_empty()),
        "barriers are not explicit edges"
    );
    let mut dag = dag::Dag::new(&wf);
    assert_eq!(dag.roots(), [0, 1, 4]);
    assert!(dag.is_waiting(2));
    assert!(dag.complete(0).is_empty());
    assert_eq!(dag.complete(1), [2, 3]);
    assert!(!dag.is_waiting(3));
    let mut doomed = dag::Dag::new(&wf).dependents(0);
    doomed.sort();
    assert_eq!(doomed, [2, 3]);
    let mut dag = dag::Dag::new(&wf);
    assert_eq!(dag.fail(1), [2, 3]);
    assert!(dag.fail(0).is_empty(), "the next stage is canceled once");
    assert_eq!(
        dag.cancellations(&wf, 1),
        [
            (2, "parent `a-1` failed".to_string()),
            (3, "parent `a-1` failed".to_string())
        ]
    );
}

#[test]
fn toml_and_json_give_the_same_workflow() {
    let toml = parse(DEPS);
    let json_text = serde_json::to_string(&toml::from_str::<toml::Value>(DEPS).unwrap()).unwrap();
    let json = parse_str(&json_text, Format::Json, "wf.json").unwrap();
    assert_eq!(toml.name, json.name);
    assert_eq!(toml.tasks, json.tasks);
    assert_eq!(toml.stages, json.stages);
    assert_eq!(toml.groups, json.groups);
}

#[test]
fn to_spec_gives_the_campaign_id() {
    let wf = parse("[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\n");
    let c = CampaignId::random();
    assert_eq!(wf.tasks[0].to_spec(&c).id, TaskId::for_name(&c, "a"));
}

fn repo_file(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Regenerate with `UPDATE_SCHEMA=1 cargo test -p emanager workflow`.
#[test]
fn checked_in_schema_matches_the_types() {
    let path = repo_file("docs/workflow.schema.json");
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, json_schema()).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == json_schema(),
        "docs/workflow.schema.json is out of date; run UPDATE_SCHEMA=1 cargo test -p emanager workflow"
    );
}

#[test]
fn shipped_examples_validate() {
    let dir = repo_file("examples/workflows");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if Format::from_path(&path) == Format::Json || path.extension().is_some_and(|e| e == "toml")
        {
            let wf = load(&path).unwrap_or_else(|e| panic!("{e}"));
            dag::Dag::new(&wf);
            seen += 1;
        }
    }
    assert!(
        seen >= 2,
        "examples/workflows has the DAG and the MPI example"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// One `[[tasks]]` entry: (count, cores, processes, stage, dependencies on earlier entries).
    type EntrySketch = (
        Option<u32>,
        i64,
        i64,
        Option<usize>,
        Vec<(prop::sample::Index, u8)>,
    );

    fn entry() -> impl Strategy<Value = EntrySketch> {
        (
            proptest::option::of(1u32..4),
            -1i64..9,
            1i64..4,
            proptest::option::of(0usize..2),
            proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3), 0..3),
        )
    }

    /// TOML text of a random workflow; dependencies point to earlier entries, by concrete
    /// name, array template or base name.
    fn toml_text(entries: &[EntrySketch]) -> String {
        let mut t =
            String::from("name = \"p\"\n[[stages]]\nname = \"s0\"\n[[stages]]\nname = \"s1\"\n");
        for (i, (count, cores, processes, stage, deps)) in entries.iter().enumerate() {
            t += &format!("[[tasks]]\nname = \"e{i}\"\ncommand = [\"run\", \"{{index}}\"]\ncores = {cores}\nprocesses = {processes}\n");
            if let Some(c) = count {
                t += &format!("count = {c}\n");
            }
            if let Some(s) = stage {
                t += &format!("stage = \"s{s}\"\n");
            }
            let names: Vec<String> = deps
                .iter()
                .filter(|_| i > 0)
                .map(|(d, how)| {
                    let j = d.index(i);
                    match (entries[j].0.is_some(), how) {
                        (true, 0) => format!("\"e{j}-{{index}}\""),
                        (true, _) => format!("\"e{j}\""),
                        (false, _) => format!("\"e{j}\""),
                    }
                })
                .collect();
            if !names.is_empty() {
                t += &format!("depends_on = [{}]\n", names.join(", "));
            }
        }
        t
    }

    proptest! {
        #[test]
        fn toml_and_json_agree(entries in proptest::collection::vec(entry(), 1..6)) {
            let text = toml_text(&entries);
            let json_text = serde_json::to_string(&toml::from_str::<toml::Value>(&text).unwrap()).unwrap();
            let from_toml = parse_str(&text, Format::Toml, "p.toml");
            let from_json = parse_str(&json_text, Format::Json, "p.json");
            match (from_toml, from_json) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(&a.tasks, &b.tasks);
                    prop_assert_eq!(&a.groups, &b.groups);
                    prop_assert!(dag::Dag::new(&a).find_cycle().is_none());
                }
                (Err(a), Err(b)) => {
                    let messages = |e: &WorkflowErrors| e.0.iter().map(|e| e.message.clone()).collect::<Vec<_>>();
                    prop_assert_eq!(messages(&a), messages(&b));
                }
                (a, b) => prop_assert!(false, "toml {:?} json {:?}", a.err(), b.err()),
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse_str(&text, Format::Toml, "x.toml");
            let _ = parse_str(&text, Format::Json, "x.json");
        }

        #[test]
        fn mangled_examples_never_panic(cut in 0usize..2000, insert in "[\\[\\]{}=\",:a-z0-9 \n]{0,5}") {
            let text = include_str!("../../../examples/workflows/dag.toml");
            let mut at = cut.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mangled = format!("{}{insert}{}", &text[..at], &text[at..]);
            let _ = parse_str(&mangled, Format::Toml, "x.toml");
        }
    }
}
