//! EManager's own skeleton format: the bundled examples, mappings, iterations,
//! determinism, errors, and the workflow file writer.

mod skeleton_native {
    use emanager::skeleton::build::Built;
    use emanager::skeleton::writer::{render, OutFormat, StageMode};
    use emanager::skeleton::{generate, generate_str, Generated, InputFormat, SkeletonOptions};
    use std::path::{Path, PathBuf};

    fn example(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/skeletons")
            .join(name)
    }

    fn opts() -> SkeletonOptions {
        SkeletonOptions {
            synth: Some(PathBuf::from("/opt/emanager-synth")),
            data_dir: Some(PathBuf::from("/data")),
            ..SkeletonOptions::default()
        }
    }

    fn load(name: &str, seed: Option<u64>) -> Generated {
        generate(&example(name), seed, &opts()).unwrap_or_else(|e| panic!("{name}: {e:#}"))
    }

    fn from_toml(text: &str) -> Result<Generated, String> {
        generate_str(
            text,
            "s.toml",
            "s",
            Path::new("."),
            InputFormat::Toml,
            None,
            &opts(),
        )
        .map_err(|e| e.to_string())
    }

    fn stages(b: &Built) -> Vec<(String, usize)> {
        b.stages
            .iter()
            .map(|s| (s.name.clone(), s.tasks.len()))
            .collect()
    }

    fn deps(b: &Built, task: &str) -> Vec<String> {
        let wf = &b.workflow;
        let t = wf.tasks.iter().find(|t| t.spec.name == task).unwrap();
        t.depends_on
            .iter()
            .map(|&d| wf.tasks[d].spec.name.clone())
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn bag_of_tasks_example() {
        let g = load("bag-of-tasks.toml", None);
        assert_eq!(g.format, InputFormat::Toml);
        assert_eq!(stages(&g.built), [("bag".to_string(), 64)]);
        for t in &g.built.workflow.tasks {
            assert!((10.0..=20.0).contains(&t.spec.est_duration_s));
            assert_eq!(t.spec.input_files[0].size_bytes, Some(1048576));
            assert!(t.depends_on.is_empty());
        }
        assert_eq!(
            g.built.workflow.tasks[3].spec.input_files[0].path,
            "/data/bag/bag-3.in1"
        );
    }

    #[test]
    fn pipeline_example_maps_one_to_one_then_all_to_all() {
        let g = load("pipeline.toml", None);
        let b = &g.built;
        assert_eq!(
            stages(b),
            [
                ("simulate".into(), 16),
                ("analyse".into(), 16),
                ("aggregate".into(), 1)
            ]
        );
        let sim = &b.workflow.tasks[0].spec;
        assert!(sim.mpi);
        assert_eq!((sim.cores, sim.processes), (4, 4));
        assert_eq!(deps(b, "analyse-5"), s(&["simulate-5"]));
        let all: Vec<String> = (0..16).map(|i| format!("analyse-{i}")).collect();
        assert_eq!(deps(b, "aggregate-0"), all);
        // analyse length = 5 s + 1 s per MiB read
        let a = &b.workflow.tasks[16].spec;
        let read = a.input_files[0].size_bytes.unwrap() as f64;
        assert!((a.est_duration_s - (5.0 + read / 1048576.0)).abs() <= 0.0005);
        assert_eq!(
            a.output_files[0].size_bytes,
            Some((read * 0.01).round() as u64)
        );
    }

    #[test]
    fn iterative_example_unrolls_rounds_with_feedback() {
        let g = load("iterative-mapreduce.toml", None);
        let b = &g.built;
        assert_eq!(
            stages(b),
            [
                ("split".into(), 8),
                ("map.1".into(), 8),
                ("reduce.1".into(), 2),
                ("map.2".into(), 8),
                ("reduce.2".into(), 2),
                ("map.3".into(), 8),
                ("reduce.3".into(), 2),
                ("merge".into(), 1)
            ]
        );
        assert_eq!(deps(b, "map.1-3"), s(&["split-3"]));
        assert_eq!(
            deps(b, "reduce.1-1"),
            s(&["map.1-4", "map.1-5", "map.1-6", "map.1-7"])
        );
        assert_eq!(deps(b, "map.2-0"), s(&["reduce.1-0", "reduce.1-1"]));
        assert_eq!(
            deps(b, "reduce.3-0"),
            s(&["map.3-0", "map.3-1", "map.3-2", "map.3-3"])
        );
        assert_eq!(deps(b, "merge-0"), s(&["reduce.3-0", "reduce.3-1"]));
    }

    #[test]
    fn same_seed_same_workflow_other_seed_other_draws() {
        let a = load("pipeline.toml", Some(5)).built;
        let b = load("pipeline.toml", Some(5)).built;
        let c = load("pipeline.toml", Some(6)).built;
        assert_eq!(a, b);
        assert_ne!(
            a.workflow.tasks[0].spec.est_duration_s,
            c.workflow.tasks[0].spec.est_duration_s
        );
        // without --seed, the file's seed is used
        assert_eq!(
            load("pipeline.toml", None).built,
            load("pipeline.toml", Some(7)).built
        );
    }

    const ONE: &str =
        "[[stages]]\nname = \"a\"\ntasks = 4\nlength = 1\noutputs = [{ size = 10 }]\n";

    #[test]
    fn combinations_wrap_like_the_original() {
        let g = from_toml(&format!(
            "{ONE}[[stages]]\nname = \"b\"\ntasks = 7\nlength = 1\ninputs = [{{ from = \"a\", mapping = \"combinations\", group = 2 }}]\n"
        ))
        .unwrap();
        assert_eq!(deps(&g.built, "b-0"), s(&["a-0", "a-1"]));
        assert_eq!(deps(&g.built, "b-5"), s(&["a-2", "a-3"]));
        assert_eq!(deps(&g.built, "b-6"), s(&["a-0", "a-1"]));
    }

    #[test]
    fn errors_say_what_to_fix() {
        let cases = [
            (
                format!("{ONE}[[stages]]\nname = \"b\"\ntasks = 3\nlength = 1\ninputs = [{{ from = \"a\" }}]\n"),
                "s.toml:7: stage `b` input 1: one-to-one needs as many tasks (3) as `a` has files (4); set mapping to \"all-to-all\", \"chunks\" or \"combinations\"",
            ),
            (
                format!("{ONE}[[stages]]\nname = \"b\"\ntasks = 3\nlength = 1\ninputs = [{{ from = \"c\" }}]\n"),
                "s.toml:7: stage `b` input 1: `from = \"c\"` must name an earlier stage",
            ),
            (
                "[[stages]]\nname = \"a\"\ntasks = 2\nprocesses = 8\nlength = 1\n".to_string(),
                "s.toml:2: stage `a`: a serial task has one process; use type = \"parallel\" for 8 MPI ranks, or cores_per_process for threads",
            ),
            (
                format!("{ONE}[[stages]]\nname = \"b\"\ntasks = 3\nlength = 1\ninputs = [{{ from = \"a\", mapping = \"combinations\" }}]\n"),
                "s.toml:7: stage `b` input 1: `mapping = \"combinations\"` needs `group = <files per task>`",
            ),
            (
                "[[stages]]\nname = \"a\"\ntasks = 2\nlength = 1\ninputs = [{ size = 4 }, {}]\n".to_string(),
                "s.toml:2: stage `a` input 2: a filesystem input needs `size`",
            ),
            (
                format!("{ONE}[[stages]]\nname = \"a\"\ntasks = 1\nlength = 1\n"),
                "s.toml:7: stage name `a` is used twice",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(from_toml(&text).unwrap_err(), want);
        }
        let e = from_toml("[[stages]]\nname = \"a\"\ntasks = 2\nlenght = 1\n").unwrap_err();
        assert!(e.starts_with("s.toml: TOML parse error at line 4"), "{e}");
        assert!(e.contains("unknown field `lenght`"), "{e}");
        let e = from_toml("[[stages]]\nname = \"a\"\ntasks = 2\nlength = { normal = [10, -1] }\n")
            .unwrap_err();
        assert!(e.contains("normal needs stdev >= 0, got [10, -1]"), "{e}");
    }

    #[test]
    fn iteration_errors_point_at_the_iteration() {
        let e = from_toml(&format!(
            "{ONE}[[iterations]]\nstages = [\"a\"]\ncount = 0\n"
        ))
        .unwrap_err();
        assert_eq!(e, "s.toml:6: iteration over [a]: count must be at least 1");
    }

    #[test]
    fn json_skeletons_read_like_toml() {
        let text = r#"{"name": "j", "stages": [{"name": "a", "tasks": 3, "length": {"uniform": [1, 2]}}]}"#;
        let g = generate_str(
            text,
            "s.json",
            "s",
            Path::new("."),
            InputFormat::Json,
            Some(1),
            &opts(),
        )
        .unwrap();
        assert_eq!(g.built.workflow.name, "j");
        assert_eq!(g.built.workflow.tasks.len(), 3);
    }

    #[test]
    fn writer_emits_concrete_tasks_with_stage_and_dependency_names() {
        let g = load("pipeline.toml", None);
        let text = render(&g.built, OutFormat::Toml, StageMode::Stages).unwrap();
        let doc: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(doc["name"].as_str(), Some("pipeline"));
        let st: Vec<&str> = doc["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(st, ["simulate", "analyse", "aggregate"]);
        let tasks = doc["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 33);
        let t = &tasks[20];
        assert_eq!(t["name"].as_str(), Some("analyse-4"));
        assert_eq!(t["stage"].as_str(), Some("analyse"));
        assert_eq!(
            t["depends_on"].as_array().unwrap()[0].as_str(),
            Some("simulate-4")
        );
        assert_eq!(
            t["command"].as_array().unwrap()[0].as_str(),
            Some("/opt/emanager-synth")
        );
        assert_eq!(
            t["input_files"][0]["path"].as_str(),
            Some("/data/simulate/simulate-4.out1")
        );
        assert!(t["input_files"][0]["size_bytes"].as_integer().unwrap() > 0);
        assert_eq!(tasks[0]["mpi"].as_bool(), Some(true));
        assert_eq!(tasks[0]["processes"].as_integer(), Some(4));
        let json: serde_json::Value =
            serde_json::from_str(&render(&g.built, OutFormat::Json, StageMode::Stages).unwrap())
                .unwrap();
        assert_eq!(
            json["tasks"][32]["depends_on"].as_array().unwrap().len(),
            16
        );
        assert_eq!(json["stages"][2]["name"], "aggregate");
    }

    /// What `emanager skeleton --out` writes is read back by the workflow parser unchanged.
    #[test]
    fn written_workflow_reads_back_with_the_workflow_parser() {
        use emanager::workflow::{parse_str, Format};
        for name in ["pipeline.toml", "iterative-mapreduce.toml"] {
            let g = load(name, None);
            for mode in [StageMode::Stages, StageMode::Tags] {
                for (fmt, wf_fmt) in [
                    (OutFormat::Toml, Format::Toml),
                    (OutFormat::Json, Format::Json),
                ] {
                    let text = render(&g.built, fmt, mode).unwrap();
                    let wf = parse_str(&text, wf_fmt, name)
                        .unwrap_or_else(|e| panic!("{name} {mode:?}: {e}"));
                    assert_eq!(wf.tasks.len(), g.built.workflow.tasks.len());
                    for (a, b) in wf.tasks.iter().zip(&g.built.workflow.tasks) {
                        assert_eq!(a.spec, b.spec);
                        assert_eq!(a.depends_on, b.depends_on);
                    }
                }
            }
        }
    }

    #[test]
    fn writer_can_leave_ordering_to_the_file_dependencies() {
        let g = load("pipeline.toml", None);
        let text = render(&g.built, OutFormat::Toml, StageMode::Tags).unwrap();
        let doc: toml::Value = toml::from_str(&text).unwrap();
        assert!(doc.get("stages").is_none(), "{}", &text[..300]);
        let t = &doc["tasks"].as_array().unwrap()[20];
        assert!(t.get("stage").is_none());
        assert_eq!(
            t["tags"].as_array().unwrap()[1].as_str(),
            Some("stage:analyse")
        );
        assert_eq!(t["depends_on"].as_array().unwrap().len(), 1);
    }
}

mod skeleton_cli {
    use clap::Parser;
    use emanager::skeleton::{run, SkeletonArgs};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SkeletonArgs,
    }

    #[test]
    fn run_converts_an_original_input_to_a_workflow_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("wf.toml");
        let input = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/skeletons/multi-stage.input");
        let cli = Cli::try_parse_from([
            "emanager-skeleton".as_ref(),
            input.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--seed".as_ref(),
            "3".as_ref(),
            "--sleep".as_ref(),
            "--data-dir".as_ref(),
            dir.path().as_os_str(),
        ])
        .unwrap();
        run(&cli.args).unwrap();
        let doc: toml::Value = toml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let tasks = doc["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 11);
        assert_eq!(tasks[10]["depends_on"].as_array().unwrap().len(), 6);
        assert!(tasks[0]["command"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str() == Some("--sleep")));
    }

    #[test]
    fn format_override_is_checked_by_clap() {
        assert!(Cli::try_parse_from(["x", "f", "--format", "skeleton-input"]).is_ok());
        assert!(Cli::try_parse_from(["x", "f", "--format", "yaml"]).is_err());
    }
}

mod skeleton_properties {
    use emanager::skeleton::{generate_str, InputFormat, SkeletonOptions};
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    fn mapping() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("mapping = \"all-to-all\"".to_string()),
            Just("mapping = \"chunks\"".to_string()),
            (0usize..3).prop_map(|g| format!("mapping = \"combinations\", group = {g}")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the counts and mappings: every file a task reads is created by the task
        /// itself or written by a task it depends on, and parents come first.
        #[test]
        fn every_input_is_created_or_produced_by_a_dependency(
            a in 1usize..6, b in 1usize..6, c in 1usize..4, m1 in mapping(), m2 in mapping(),
            count in 1usize..4, seed in any::<u64>(),
        ) {
            let text = format!(
                "[[stages]]\nname = \"a\"\ntasks = {a}\nlength = {{ uniform = [1, 2] }}\ninputs = [{{ size = 10 }}]\noutputs = [{{ size = 5 }}]\n\
                 [[stages]]\nname = \"b\"\ntasks = {b}\nlength = 1\ninputs = [{{ from = \"a\", {m1} }}]\noutputs = [{{ size = 7 }}]\n\
                 [[stages]]\nname = \"c\"\ntasks = {c}\nlength = 1\ninputs = [{{ from = \"b\", {m2} }}]\noutputs = [{{ size = 1 }}]\n\
                 [[iterations]]\nstages = [\"b\", \"c\"]\ncount = {count}\nfeedback = {{ input = \"b.1\", output = \"c.1\", mapping = \"all-to-all\" }}\n"
            );
            let opts = SkeletonOptions { synth: Some(PathBuf::from("/s")), data_dir: Some(PathBuf::from("/d")), ..Default::default() };
            let g = match generate_str(&text, "p.toml", "p", Path::new("."), InputFormat::Toml, Some(seed), &opts) {
                Ok(g) => g,
                // more chunks than files, or groups larger than the files, are refused
                Err(e) => {
                    let m = &e.message;
                    prop_assert!(m.contains("cannot each get a chunk") || m.contains("cannot choose"), "{}", e);
                    return Ok(());
                }
            };
            let wf = &g.built.workflow;
            prop_assert_eq!(wf.tasks.len(), a + count * (b + c));
            let mut writer: HashMap<&str, usize> = HashMap::new();
            for (i, t) in wf.tasks.iter().enumerate() {
                for f in &t.spec.output_files {
                    prop_assert!(writer.insert(f.path.as_str(), i).is_none(), "two writers of {}", f.path);
                }
            }
            for (i, t) in wf.tasks.iter().enumerate() {
                prop_assert!(t.depends_on.iter().all(|&d| d < i));
                let created: Vec<&str> = t.spec.command.windows(2)
                    .filter(|w| w[0] == "--make-in")
                    .map(|w| w[1].rsplit_once(':').unwrap().0)
                    .collect();
                for f in &t.spec.input_files {
                    let ok = created.contains(&f.path.as_str())
                        || writer.get(f.path.as_str()).is_some_and(|w| t.depends_on.contains(w));
                    prop_assert!(ok, "{} reads {} from nowhere", t.spec.name, f.path);
                }
            }
        }
    }
}
