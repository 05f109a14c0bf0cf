//! The original Application Skeleton input format: every reference input against the
//! original tool's own output (tests/data/skeletons/expected), and each error class.

mod skeleton_input {
    use emanager::skeleton::{generate, generate_str, Generated, InputFormat, SkeletonOptions};
    use std::path::{Path, PathBuf};

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/skeletons")
            .join(name)
    }

    fn opts() -> SkeletonOptions {
        SkeletonOptions {
            synth: Some(PathBuf::from("/opt/emanager-synth")),
            data_dir: Some(PathBuf::from("/data/wf")),
            ..SkeletonOptions::default()
        }
    }

    fn load(name: &str) -> Generated {
        generate(&data(name), Some(1), &opts()).unwrap_or_else(|e| panic!("{name}: {e:#}"))
    }

    fn expected_lines(name: &str) -> Vec<String> {
        std::fs::read_to_string(data(&format!("expected/{name}")))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }

    fn from_text(text: &str) -> Result<Generated, String> {
        generate_str(
            text,
            "t.input",
            "t",
            Path::new("."),
            InputFormat::SkeletonInput,
            Some(7),
            &opts(),
        )
        .map_err(|e| e.to_string())
    }

    fn warnings(g: &Generated) -> Vec<String> {
        g.warnings.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn reference_inputs_expand_exactly_as_the_original_tool() {
        for name in [
            "bag",
            "two-stage",
            "multi-stage",
            "map-reduce",
            "multiple-stage-iterative",
        ] {
            let g = load(&format!("{name}.input"));
            assert_eq!(g.format, InputFormat::SkeletonInput, "{name}");
            assert_eq!(
                g.shell.clone().unwrap(),
                expected_lines(&format!("{name}.shell.txt")),
                "{name} shell"
            );
            assert_eq!(
                g.setup.clone().unwrap(),
                expected_lines(&format!("{name}.setup.txt")),
                "{name} setup"
            );
            assert!(
                g.warnings
                    .iter()
                    .all(|w| !w.message.contains("original tool would fail")),
                "{name}: {:?}",
                g.warnings
            );
        }
    }

    /// One task as the original tool prints it (`task type mode nprocs length rbuf wbuf n_in
    /// n_out interleave inputs... (output size)...`).
    struct OriginalTask {
        parallel: bool,
        flops: bool,
        processes: u32,
        length: f64,
        buffers: (u64, u64),
        interleave: u32,
        inputs: Vec<String>,
        outputs: Vec<(String, u64)>,
    }

    fn original_tasks(name: &str) -> Vec<OriginalTask> {
        expected_lines(&format!("{name}.shell.txt"))
            .iter()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(w[0], "task", "{l}");
                let n_in: usize = w[7].parse().unwrap();
                let n_out: usize = w[8].parse().unwrap();
                let outs = &w[10 + n_in..];
                assert_eq!(outs.len(), 2 * n_out, "{l}");
                OriginalTask {
                    parallel: w[1] == "parallel",
                    flops: w[2] == "flops",
                    processes: w[3].parse().unwrap(),
                    length: w[4].parse().unwrap(),
                    buffers: (w[5].parse().unwrap(), w[6].parse().unwrap()),
                    interleave: w[9].parse().unwrap(),
                    inputs: w[10..10 + n_in].iter().map(|s| s.to_string()).collect(),
                    outputs: outs
                        .chunks(2)
                        .map(|p| (p[0].to_string(), p[1].parse().unwrap()))
                        .collect(),
                }
            })
            .collect()
    }

    /// Sizes of the pre-existing inputs the original setup script creates (`dd ... bs=`).
    fn original_setup_sizes(name: &str) -> std::collections::HashMap<String, u64> {
        expected_lines(&format!("{name}.setup.txt"))
            .iter()
            .filter_map(|l| {
                let file = l.split("of='").nth(1)?.split('\'').next()?;
                let size = l.split("bs='").nth(1)?.split('\'').next()?;
                Some((file.to_string(), size.parse().unwrap()))
            })
            .collect()
    }

    /// The generated workflow itself (not its rendering) against the original tool's
    /// output: per task its processes, MPI flag, length, buffers, interleave, every input
    /// and output file with its size, and a dependency on the task that writes each input.
    #[test]
    fn generated_workflows_have_the_original_files_sizes_processes_and_mapping() {
        for name in [
            "two-stage",
            "map-reduce",
            "bag",
            "multi-stage",
            "multiple-stage-iterative",
        ] {
            let g = load(&format!("{name}.input"));
            let wf = &g.built.workflow;
            let want = original_tasks(name);
            let made = original_setup_sizes(name);
            assert_eq!(wf.tasks.len(), want.len(), "{name}");
            let abs = |f: &str| format!("/data/wf/{f}");
            let mut writer: std::collections::HashMap<String, (String, u64)> = Default::default();
            for (t, o) in wf.tasks.iter().zip(&want) {
                let s = &t.spec;
                let at = format!("{name}: {}", s.name);
                assert_eq!(s.cores, o.processes, "{at}");
                assert_eq!(s.mpi, o.parallel, "{at}");
                assert_eq!(
                    s.processes,
                    if o.parallel { o.processes } else { 1 },
                    "{at}"
                );
                let work = if o.flops { "--flops" } else { "--length" };
                let k = s.command.iter().position(|a| a == work).expect(work);
                assert_eq!(s.command[k + 1].parse::<f64>().unwrap(), o.length, "{at}");
                let flag = |f: &str| {
                    s.command
                        .iter()
                        .position(|a| a == f)
                        .map(|k| s.command[k + 1].parse::<u64>().unwrap())
                };
                assert_eq!(
                    (
                        flag("--read-buffer").unwrap_or(65536),
                        flag("--write-buffer").unwrap_or(65536),
                        flag("--interleave").unwrap_or(0) as u32
                    ),
                    (o.buffers.0, o.buffers.1, o.interleave),
                    "{at}"
                );
                // Inputs: the same files in the same order, each of its size: made by this
                // task (setup's size) or written by an earlier task, which it depends on.
                let inputs: Vec<(String, Option<u64>)> = s
                    .input_files
                    .iter()
                    .map(|f| (f.path.clone(), f.size_bytes))
                    .collect();
                let mut deps = Vec::new();
                let expected_inputs: Vec<(String, Option<u64>)> = o
                    .inputs
                    .iter()
                    .map(|f| {
                        let size = match (made.get(f), writer.get(f)) {
                            (Some(size), None) => *size,
                            (None, Some((task, size))) => {
                                deps.push(task.clone());
                                *size
                            }
                            other => panic!("{at}: input {f} is made or written: {other:?}"),
                        };
                        (abs(f), Some(size))
                    })
                    .collect();
                assert_eq!(inputs, expected_inputs, "{at}");
                let mut got_deps: Vec<String> = t
                    .depends_on
                    .iter()
                    .map(|&d| wf.tasks[d].spec.name.clone())
                    .collect();
                deps.sort();
                deps.dedup();
                got_deps.sort();
                assert_eq!(got_deps, deps, "{at}");
                let outputs: Vec<(String, Option<u64>)> = s
                    .output_files
                    .iter()
                    .map(|f| (f.path.clone(), f.size_bytes))
                    .collect();
                let expected_outputs: Vec<(String, Option<u64>)> = o
                    .outputs
                    .iter()
                    .map(|(f, size)| (abs(f), Some(*size)))
                    .collect();
                assert_eq!(outputs, expected_outputs, "{at}");
                for (f, size) in &o.outputs {
                    writer.insert(f.clone(), (s.name.clone(), *size));
                }
            }
        }
    }

    #[test]
    fn stage_and_task_counts_follow_the_reference_table() {
        let cases: [(&str, &[(&str, usize)]); 5] = [
            ("bag", &[("Stage_1", 4)]),
            ("two-stage", &[("Stage_1", 4), ("Stage_2", 4)]),
            (
                "multi-stage",
                &[("Stage_1", 4), ("Stage_2", 6), ("Stage_3", 1)],
            ),
            (
                "map-reduce",
                &[
                    ("Stage_1", 4),
                    ("Stage_2", 4),
                    ("Stage_3", 2),
                    ("Stage_4", 1),
                ],
            ),
            (
                "multiple-stage-iterative",
                &[
                    ("Stage_1", 4),
                    ("Stage_2", 6),
                    ("Stage_3_Iter_1", 6),
                    ("Stage_4_Iter_1", 6),
                    ("Stage_3_Iter_2", 6),
                    ("Stage_4_Iter_2", 6),
                    ("Stage_3", 6),
                    ("Stage_4", 6),
                    ("Stage_5", 1),
                ],
            ),
        ];
        for (name, want) in cases {
            let g = load(&format!("{name}.input"));
            let got: Vec<(String, usize)> = g
                .built
                .stages
                .iter()
                .map(|s| (s.name.clone(), s.tasks.len()))
                .collect();
            let want: Vec<(String, usize)> =
                want.iter().map(|(n, c)| (n.to_string(), *c)).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn bag_matches_the_original_json() {
        let g = load("bag.input");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(data("expected/bag.json")).unwrap())
                .unwrap();
        let tasks = json["stagelist"][0]["task_list"].as_array().unwrap();
        let wf = &g.built.workflow;
        assert_eq!(wf.name, "bag");
        assert_eq!(wf.tasks.len(), tasks.len());
        for (t, j) in wf.tasks.iter().zip(tasks) {
            assert_eq!(t.spec.name, j["taskid"].as_str().unwrap());
            assert_eq!(
                t.spec.est_duration_s.to_string(),
                j["length"].as_str().unwrap()
            );
            assert_eq!(t.spec.cores.to_string(), j["processes"].as_str().unwrap());
            let files = |list: &serde_json::Value, dir: &str| -> Vec<(String, Option<u64>)> {
                list.as_array()
                    .unwrap()
                    .iter()
                    .map(|f| {
                        let name = f["name"].as_str().unwrap();
                        (
                            format!("/data/wf/{dir}/{name}"),
                            f["size"].as_str().unwrap().parse().ok(),
                        )
                    })
                    .collect()
            };
            let ins: Vec<_> = t
                .spec
                .input_files
                .iter()
                .map(|f| (f.path.clone(), f.size_bytes))
                .collect();
            let outs: Vec<_> = t
                .spec
                .output_files
                .iter()
                .map(|f| (f.path.clone(), f.size_bytes))
                .collect();
            assert_eq!(ins, files(&j["inputlist"], "Stage_1_Input"));
            assert_eq!(outs, files(&j["outputlist"], "Stage_1_Output"));
            assert!(!t.spec.mpi);
            assert!(t.depends_on.is_empty());
        }
    }

    #[test]
    fn tasks_run_the_synth_program_with_their_files() {
        let g = load("bag.input");
        let t = &g.built.workflow.tasks[1];
        assert_eq!(
            t.spec.command,
            [
                "/opt/emanager-synth",
                "--length",
                "5",
                "--make-in",
                "/data/wf/Stage_1_Input/Stage_1_Input_0_2:2100000",
                "--out",
                "/data/wf/Stage_1_Output/Stage_1_Output_0_2:4200000"
            ]
        );
        let g = load("two-stage.input");
        let t = &g.built.workflow.tasks[0];
        assert_eq!(&t.spec.command[1..3], ["--flops", "100000000000"]);
        assert_eq!(t.spec.est_duration_s, 100.0);
    }

    #[test]
    fn dependencies_follow_the_files() {
        let g = load("multi-stage.input");
        let wf = &g.built.workflow;
        let names = |i: usize| -> Vec<&str> {
            wf.tasks[i]
                .depends_on
                .iter()
                .map(|&d| wf.tasks[d].spec.name.as_str())
                .collect()
        };
        assert!(names(0).is_empty());
        assert_eq!(names(4), ["Stage_1_0", "Stage_1_1"]);
        assert_eq!(names(9), ["Stage_1_2", "Stage_1_3"]);
        assert_eq!(
            names(10),
            [
                "Stage_2_0",
                "Stage_2_1",
                "Stage_2_2",
                "Stage_2_3",
                "Stage_2_4",
                "Stage_2_5"
            ]
        );
        let g = load("multiple-stage-iterative.input");
        let wf = &g.built.workflow;
        let i = wf
            .tasks
            .iter()
            .position(|t| t.spec.name == "Stage_3_Iter_2_0")
            .unwrap();
        assert_eq!(
            wf.tasks[wf.tasks[i].depends_on[0]].spec.name,
            "Stage_4_Iter_1_0"
        );
    }

    #[test]
    fn polynomial_sample_gives_the_pre_regression_result_with_a_warning() {
        let g = load("polynomial.input");
        // at 8bcca3c the tool did not print the Task_Mode column yet
        let shell: Vec<String> = g
            .shell
            .clone()
            .unwrap()
            .iter()
            .map(|l| l.replacen(" time ", " ", 1))
            .collect();
        assert_eq!(shell, expected_lines("polynomial.shell.at-8bcca3c.txt"));
        assert_eq!(
        warnings(&g),
        [format!(
            "{}:6: `polynomial [a, b] Input_<k>` is rejected by the original tool at HEAD (its Task_Length regex wants `]]`, docs/skeleton.md#classic-polynomial); read as a * x^b as earlier versions did",
            data("polynomial.input").display()
        )]
    );
        // the form HEAD accepts gives the same values without a warning
        let text = std::fs::read_to_string(data("polynomial.input"))
            .unwrap()
            .replace("[10, 2] Input_1", "[10, 2]] Input_1");
        let g = from_text(&text).unwrap();
        assert!(g.warnings.is_empty(), "{:?}", g.warnings);
        assert_eq!(g.built.workflow.tasks[0].spec.est_duration_s, 250.0);
        assert_eq!(
            g.built.workflow.tasks[0].spec.output_files[0].size_bytes,
            Some(625000)
        );
    }

    #[test]
    fn aimes_swift_input_generates_2048_tasks() {
        let g = load("aimes-swift/skeleton.conf");
        assert_eq!(g.built.workflow.tasks.len(), 2048);
        let shell = g.shell.unwrap();
        assert_eq!(shell.len(), 2048);
        assert!(shell
            .iter()
            .all(|l| l == "task serial time 1 900 65536 65536 0 0 0"));
        assert!(g.setup.unwrap().is_empty());
        assert!(g
            .built
            .workflow
            .tasks
            .iter()
            .all(|t| t.spec.est_duration_s == 900.0 && t.depends_on.is_empty()));
    }

    const MINIMAL: &str = "Num_Stage = 1

Stage_Name = Stage_1
    Task_Type = serial
    Num_Tasks = 2
    Task_Length = uniform 5
    Num_Processes = 1
    Read_Buffer = 65536
    Write_Buffer = 65536
    Input_Files_Each_Task = 0
    Output_Files_Each_Task = 0
    Interleave_Option = 0
";

    #[test]
    fn minimal_file_from_the_format_description() {
        let g = from_text(MINIMAL).unwrap();
        assert_eq!(
            g.shell.unwrap(),
            ["task serial time 1 5 65536 65536 0 0 0"; 2]
        );
        assert!(g.setup.unwrap().is_empty());
    }

    #[test]
    fn interleave_option_reaches_the_synthetic_task() {
        let g =
            from_text(&MINIMAL.replace("Interleave_Option = 0", "Interleave_Option = 3")).unwrap();
        let argv = &g.built.workflow.tasks[0].spec.command;
        let at = argv
            .iter()
            .position(|a| a == "--interleave")
            .expect("--interleave");
        assert_eq!(argv[at + 1], "3");
        assert_eq!(
            g.shell.unwrap()[0],
            "task serial time 1 5 65536 65536 0 0 3"
        );
        // 0 is the synthetic program's default: not spelled out.
        let g = from_text(MINIMAL).unwrap();
        assert!(!g.built.workflow.tasks[0]
            .spec
            .command
            .contains(&"--interleave".to_string()));
        // task.c knows 0..=3 and does nothing at all for the others.
        let g =
            from_text(&MINIMAL.replace("Interleave_Option = 0", "Interleave_Option = 7")).unwrap();
        assert!(!g.built.workflow.tasks[0]
            .spec
            .command
            .contains(&"--interleave".to_string()));
        assert_eq!(
            warnings(&g),
            ["t.input:3: stage `Stage_1`: `Interleave_Option = 7` makes the original task.c neither read, compute nor write; run as 0 (read, compute, write)"]
        );
    }

    fn with_length(length: &str, tasks: usize) -> String {
        MINIMAL
            .replace("uniform 5", length)
            .replace("Num_Tasks = 2", &format!("Num_Tasks = {tasks}"))
    }

    fn lengths(g: &Generated) -> Vec<f64> {
        g.built
            .workflow
            .tasks
            .iter()
            .map(|t| t.spec.est_duration_s)
            .collect()
    }

    #[test]
    fn distributions_are_deterministic_per_seed() {
        let text = with_length("normal [100, 10]", 50);
        let run = |seed| {
            generate_str(
                &text,
                "t",
                "t",
                Path::new("."),
                InputFormat::SkeletonInput,
                Some(seed),
                &opts(),
            )
            .unwrap()
        };
        assert_eq!(lengths(&run(3)), lengths(&run(3)));
        assert_eq!(run(3).shell, run(3).shell);
        assert_ne!(lengths(&run(3)), lengths(&run(4)));
    }

    #[test]
    fn distribution_means_match_the_original_semantics() {
        let n = 20_000;
        for (spec, mean, tol) in [
            ("normal [100, 10]", 100.0, 0.01),
            ("gauss [50, 5]s", 50.0, 0.01),
            ("triangular [10, 20]", 15.0, 0.01),
            ("lognorm [5, 1]", (5.5f64).exp(), 0.05),
        ] {
            let g = from_text(&with_length(spec, n)).unwrap();
            let l = lengths(&g);
            let got = l.iter().sum::<f64>() / n as f64;
            assert!(
                (got - mean).abs() / mean < tol,
                "{spec}: mean {got}, want {mean}"
            );
            // values are printed as the original does: two decimals plus the unit
            let first = g.shell.as_ref().unwrap()[0]
                .split(' ')
                .nth(4)
                .unwrap()
                .to_string();
            let decimals = first.trim_end_matches('s').split('.').nth(1).map(str::len);
            assert_eq!(decimals, Some(2), "{spec}: {first}");
        }
        let g = from_text(&with_length("triangular [10, 20]", 1000)).unwrap();
        assert!(lengths(&g).iter().all(|l| (10.0..=20.0).contains(l)));
    }

    fn err(text: &str) -> String {
        match from_text(text) {
            Ok(g) => panic!("accepted: {:?}", g.warnings),
            Err(e) => e,
        }
    }

    #[test]
    fn key_out_of_order_is_accepted_with_a_warning() {
        let text = MINIMAL.replace(
            "    Task_Length = uniform 5\n    Num_Processes = 1\n",
            "    Num_Processes = 1\n    Task_Length = uniform 5\n",
        );
        let g = from_text(&text).unwrap();
        assert_eq!(
            g.shell.clone().unwrap(),
            ["task serial time 1 5 65536 65536 0 0 0"; 2]
        );
        assert_eq!(
        warnings(&g),
        ["t.input:7: `Task_Length` is out of order in stage `Stage_1`: the original tool expects it before `Num_Processes` (line 6) and would fail; accepted"]
    );
    }

    #[test]
    fn bare_hash_line_is_a_comment_with_a_warning() {
        let g = from_text(&format!("#\n# --\n# a real comment\n{MINIMAL}")).unwrap();
        assert_eq!(
        warnings(&g),
        [
            "t.input:1: `#` read as a comment (the original tool only skips `#` followed by a word and would fail here)",
            "t.input:2: `# --` read as a comment (the original tool only skips `#` followed by a word and would fail here)"
        ]
    );
    }

    #[test]
    fn num_stages_is_accepted_with_a_warning() {
        let g = from_text(&MINIMAL.replace("Num_Stage =", "Num_Stages =")).unwrap();
        assert_eq!(g.built.workflow.tasks.len(), 2);
        assert_eq!(
        warnings(&g),
        ["t.input:1: `Num_Stages` read as `Num_Stage` (the original tool only accepts `Num_Stage` and would fail)"]
    );
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        let cases: Vec<(String, &str)> = vec![
        (
            MINIMAL.replace("Num_Stage = 1", "Stages = 1"),
            "t.input:1: expected `Num_Stage = <number of stages>`, found `Stages = 1`",
        ),
        (
            MINIMAL.replace("    Task_Length = uniform 5\n", ""),
            "t.input:6: expected `Task_Length = <distribution> <parameters>` in stage `Stage_1`, found `Num_Processes = 1`",
        ),
        (
            MINIMAL.replace("Interleave_Option = 0\n", ""),
            "t.input:11: expected `Interleave_Option = 0|1|2|3` in stage `Stage_1`, found the end of the stage",
        ),
        (
            MINIMAL.replace("Num_Tasks = 2", "Num_Tasks = two"),
            "t.input:5: `Num_Tasks` needs a non-negative integer, found `two`",
        ),
        (
            MINIMAL.replace("uniform 5", "poisson [5, 1]"),
            "t.input:6: unknown distribution `poisson`; expected uniform, normal, gauss, lognorm, triangular, polynomial",
        ),
        (
            MINIMAL.replace("uniform 5", "normal [5 1]"),
            "t.input:6: `Task_Length`: expected two non-negative numbers in brackets, e.g. `[10, 2]`, found `[5 1]`",
        ),
        (
            MINIMAL.replace("Num_Stage = 1", "Num_Stage = 2"),
            "t.input:12: `Num_Stage = 2` (line 1) but the file has only 1 stage block(s); expected another `Stage_Name = <name>`",
        ),
        (
            MINIMAL.replace("    Output_Files_Each_Task = 0\n", "    Output_Files_Each_Task = 1\n    Output_File_Size = uniform 5\n"),
            "t.input:12: expected `Output_1.Size = <distribution> <parameters>` in stage `Stage_1`, found `Output_File_Size = uniform 5`",
        ),
        (
            MINIMAL.replace("    Interleave_Option = 0\n", "    Interleave_Option = 0\n    Colour = blue\n"),
            "t.input:13: unexpected `Colour` in stage `Stage_1`",
        ),
        (
            MINIMAL.replace("    Num_Tasks = 2\n", "    Num_Tasks = 2\n    Num_Tasks = 3\n"),
            "t.input:6: `Num_Tasks` appears twice in stage `Stage_1` (first on line 5)",
        ),
        (
            MINIMAL.replace("Task_Type = serial", "Task_Type serial"),
            "t.input:4: expected `KEY = VALUE`, found `Task_Type serial`",
        ),
        (
            MINIMAL.replace("Input_Files_Each_Task = 0", "Input_Files_Each_Task = 1\n    Input_1.Source = filesystem"),
            "t.input:11: `Input_1.Source = filesystem` needs an `Input_1.Size` line with the file size",
        ),
        (
            MINIMAL.replace("Input_Files_Each_Task = 0", "Input_Files_Each_Task = 1\n    Input_1.Source = Stage_1.Output_1"),
            "t.input:11: `Input_1.Source` refers to `Stage_1.Output_1`, but stage `Stage_1` is this stage; a stage can only read from earlier stages",
        ),
        (
            MINIMAL.replace("Input_Files_Each_Task = 0", "Input_Files_Each_Task = 1\n    Input_1.Source = disk"),
            "t.input:11: `Input_1.Source` must be `filesystem`, `<Stage>.Output_<j>` or `<Stage>.Input_<j>`, found `disk`",
        ),
        (
            MINIMAL.replace("Output_Files_Each_Task = 0", "Output_Files_Each_Task = 1\n    Output_1.Size = polynomial [2, 1] Width"),
            "t.input:12: `Output_1.Size`: a polynomial depends on `Input_<k>` or `Length`, found `Width`",
        ),
    ];
        for (text, want) in cases {
            assert_eq!(err(&text), want);
        }
    }

    const TWO: &str = "Num_Stage = 2
Stage_Name = Stage_1
    Task_Type = serial
    Num_Tasks = 4
    Task_Length = uniform 1
    Num_Processes = 1
    Read_Buffer = 65536
    Write_Buffer = 65536
    Input_Files_Each_Task = 0
    Output_Files_Each_Task = 1
        Output_1.Size = uniform 10
    Interleave_Option = 0
Stage_Name = Stage_2
    Task_Type = parallel
    Num_Tasks = 6
    Task_Length = uniform 2
    Num_Processes = 4
    Read_Buffer = 65536
    Write_Buffer = 65536
    Input_Files_Each_Task = 1
    MAPPING
    Output_Files_Each_Task = 0
    Interleave_Option = 0
";

    #[test]
    fn mapping_errors_explain_the_original_crashes() {
        assert_eq!(
        err(&TWO.replace("MAPPING", "Input_Task_Mapping = combination Stage_1.Output_1 5")),
        "t.input:21: `combination Stage_1.Output_1 5`: cannot choose 5 of the 4 files of `Stage_1.Output_1`"
    );
        assert_eq!(
        err(&TWO.replace("MAPPING", "Input_Task_Mapping = combination Stage_1.Output 2")),
        "t.input:21: expected `Input_Task_Mapping = combination <Stage>.Output_<j> <m>`, e.g. `combination Stage_1.Output_1 2`, found `combination Stage_1.Output 2`"
    );
        assert_eq!(
        err(&TWO.replace("MAPPING", "Input_1.Source = Stage_1.Output_1")),
        "t.input:21: task 4 of `Stage_2` reads file 5 of `Stage_1.Output_1`, which has only 4 (the original tool gives task t file t x Input_Files_Each_Task, docs/skeleton.md#classic-direct-references); use `Input_Task_Mapping = combination Stage_1.Output_1 1` to wrap around"
    );
    }

    #[test]
    fn combination_of_one_wraps_and_parallel_tasks_are_mpi() {
        let g = from_text(&TWO.replace(
            "MAPPING",
            "Input_Task_Mapping = combination Stage_1.Output_1 1",
        ))
        .unwrap();
        let wf = &g.built.workflow;
        let reads: Vec<&str> = wf.tasks[4..]
            .iter()
            .map(|t| t.spec.input_files[0].path.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(
            reads,
            [
                "Stage_1_Output_0_1",
                "Stage_1_Output_0_2",
                "Stage_1_Output_0_3",
                "Stage_1_Output_0_4",
                "Stage_1_Output_0_1",
                "Stage_1_Output_0_2"
            ]
        );
        let t = &wf.tasks[4];
        assert!(t.spec.mpi);
        assert_eq!((t.spec.cores, t.spec.processes), (4, 4));
    }

    #[test]
    fn external_mapping_runs_the_script() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("mapping.sh");
        std::fs::write(
        &script,
        "#!/bin/sh\nfor p in '1 2' '1 3' '1 4' '2 3' '2 4' '3 4'; do set -- $p; echo Stage_1_Output_0_$1 Stage_1_Output_0_$2; done\n",
    )
    .unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .unwrap();
        let text = TWO.replace("MAPPING", "Input_Task_Mapping = external mapping.sh");
        let g = generate_str(
            &text,
            "t.input",
            "t",
            dir.path(),
            InputFormat::SkeletonInput,
            None,
            &opts(),
        )
        .unwrap();
        let shell = g.shell.unwrap();
        assert_eq!(
        shell[5],
        "task parallel time 4 2 65536 65536 2 0 0 Stage_1_Output/Stage_1_Output_0_1 Stage_1_Output/Stage_1_Output_0_3"
    );
        std::fs::write(&script, "#!/bin/sh\necho Stage_1_Output_0_9\n").unwrap();
        let e = generate_str(
            &text,
            "t.input",
            "t",
            dir.path(),
            InputFormat::SkeletonInput,
            None,
            &opts(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.input:21: File Stage_1_Output_0_9 declared in script mapping.sh does not exist"
        );
    }

    #[test]
    fn bundled_original_format_example_converts() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/skeletons/original-format.input");
        let g = generate(&p, Some(2), &opts()).unwrap();
        assert!(g.warnings.is_empty(), "{:?}", g.warnings);
        let wf = &g.built.workflow;
        assert_eq!(wf.tasks.len(), 12);
        let t = &wf.tasks[11].spec;
        assert!(t.mpi && t.cores == 4 && t.processes == 4);
        assert_eq!(t.input_files.len(), 2);
        // Output_1.Size = polynomial [2, 1] Length: twice the drawn length, truncated
        assert_eq!(
            t.output_files[0].size_bytes,
            Some((2.0 * t.est_duration_s).trunc() as u64)
        );
        assert_eq!(wf.tasks[11].depends_on, [0, 4]); // the 4th pair of C(8, 2)
    }

    #[test]
    fn format_is_detected_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("looks.toml");
        std::fs::write(&p, format!("# generated\n{MINIMAL}")).unwrap();
        assert_eq!(
            generate(&p, None, &opts()).unwrap().format,
            InputFormat::SkeletonInput
        );
        assert!(emanager::skeleton::is_skeleton_file(&p));
    }
}

mod skeleton_input_more {
    use emanager::skeleton::{generate_str, Generated, InputFormat, SkeletonOptions};
    use std::path::{Path, PathBuf};

    fn gen(text: &str) -> Result<Generated, String> {
        let opts = SkeletonOptions {
            synth: Some(PathBuf::from("/s")),
            data_dir: Some(PathBuf::from("/d")),
            ..SkeletonOptions::default()
        };
        generate_str(
            text,
            "t.input",
            "t",
            Path::new("."),
            InputFormat::SkeletonInput,
            None,
            &opts,
        )
        .map_err(|e| e.to_string())
    }

    fn warnings(g: &Generated) -> Vec<String> {
        g.warnings.iter().map(|w| w.to_string()).collect()
    }

    fn stage(name: &str, tasks: usize, inputs: &str, outputs: usize, extra: &str) -> String {
        let outs: String = (1..=outputs)
            .map(|k| format!("    Output_{k}.Size = uniform 100\n"))
            .collect();
        format!(
            "Stage_Name = {name}\n    Task_Type = serial\n    Num_Tasks = {tasks}\n    Task_Length = uniform 10\n    Num_Processes = 1\n    Read_Buffer = 65536\n    Write_Buffer = 65536\n{inputs}    Output_Files_Each_Task = {outputs}\n{outs}    Interleave_Option = 0\n{extra}"
        )
    }

    const FS: &str = "    Input_Files_Each_Task = 1\n    Input_1.Source = filesystem\n    Input_1.Size = uniform 1048576\n";

    #[test]
    fn single_stage_iteration_renames_copies_and_feeds_outputs_back() {
        let text = format!(
            "Num_Stage = 1\n{}",
            stage(
                "Stage_1",
                2,
                FS,
                1,
                "    Iteration_Num = 3\n    Iteration_Stages = Stage_1\n    Iteration_Substitute = Stage_1.Input_1, Stage_1.Output_1\n"
            )
        );
        let g = gen(&text).unwrap();
        assert_eq!(
            g.shell.unwrap(),
            [
                "task serial time 1 10 65536 65536 1 1 0 Stage_1_Iter_1_Input/Stage_1_Iter_1_Input_0_1 Stage_1_Iter_1_Output/Stage_1_Iter_1_Output_0_1 100",
                "task serial time 1 10 65536 65536 1 1 0 Stage_1_Iter_1_Input/Stage_1_Iter_1_Input_0_2 Stage_1_Iter_1_Output/Stage_1_Iter_1_Output_0_2 100",
                "task serial time 1 10 65536 65536 1 1 0 Stage_1_Iter_1_Output/Stage_1_Iter_1_Output_0_1 Stage_1_Iter_2_Output/Stage_1_Iter_2_Output_0_1 100",
                "task serial time 1 10 65536 65536 1 1 0 Stage_1_Iter_1_Output/Stage_1_Iter_1_Output_0_2 Stage_1_Iter_2_Output/Stage_1_Iter_2_Output_0_2 100",
                "task serial time 1 10 65536 65536 1 1 0 Stage_1_Iter_2_Output/Stage_1_Iter_2_Output_0_1 Stage_1_Output/Stage_1_Output_0_1 100",
                "task serial time 1 10 65536 65536 1 1 0 Stage_1_Iter_2_Output/Stage_1_Iter_2_Output_0_2 Stage_1_Output/Stage_1_Output_0_2 100",
            ]
        );
        assert_eq!(
            g.setup.unwrap(),
            [
                "mkdir -p Stage_1_Iter_1_Input",
                "mkdir -p Stage_1_Iter_1_Output",
                "mkdir -p Stage_1_Iter_2_Output",
                "mkdir -p Stage_1_Output",
                "dd if=/dev/zero of='Stage_1_Iter_1_Input/Stage_1_Iter_1_Input_0_1'  bs='1048576' count=1",
                "dd if=/dev/zero of='Stage_1_Iter_1_Input/Stage_1_Iter_1_Input_0_2'  bs='1048576' count=1",
            ]
        );
    }

    #[test]
    fn reading_an_earlier_stage_input_waits_for_the_task_that_creates_it() {
        let text = format!(
            "Num_Stage = 2\n{}{}",
            stage("Stage_1", 2, FS, 0, ""),
            stage(
                "Stage_2",
                2,
                "    Input_Files_Each_Task = 1\n    Input_1.Source = Stage_1.Input_1\n",
                0,
                ""
            )
        );
        let g = gen(&text).unwrap();
        let wf = &g.built.workflow;
        assert_eq!(
            wf.tasks[3].spec.command[3..5],
            ["--in", "/d/Stage_1_Input/Stage_1_Input_0_2"]
        );
        assert_eq!(wf.tasks[3].depends_on, [1]);
        assert_eq!(wf.tasks[1].spec.command[3], "--make-in");
    }

    #[test]
    fn extra_stage_blocks_are_ignored_with_a_warning() {
        let text = format!(
            "Num_Stage = 1\n{}{}",
            stage("Stage_1", 1, "    Input_Files_Each_Task = 0\n", 0, ""),
            stage("Stage_2", 1, "    Input_Files_Each_Task = 0\n", 0, "")
        );
        let g = gen(&text).unwrap();
        assert_eq!(g.built.workflow.tasks.len(), 1);
        assert_eq!(
            warnings(&g),
            ["t.input:12: `Num_Stage = 1`: stage `Stage_2` and everything after it is ignored (as the original tool does)"]
        );
    }

    #[test]
    fn lenient_values_are_read_like_task_c_with_warnings() {
        let text = format!(
            "Num_Stage = 1\n{}",
            stage("Stage_1", 1, "    Input_Files_Each_Task = 0\n", 1, "")
        )
        .replace(
            "Task_Type = serial",
            "Task_Type = serial\n    Task_Mode = foo",
        )
        .replace("uniform 10\n", "10\n")
        .replace(
            "Output_1.Size = uniform 100",
            "Output_1.Size = uniform 100B",
        )
        .replace("Num_Processes = 1", "Num_Processes = 1 rank");
        let g = gen(&text).unwrap();
        assert_eq!(
            g.shell.clone().unwrap(),
            ["task serial foo 1 10 65536 65536 0 1 0 Stage_1_Output/Stage_1_Output_0_1 100B"]
        );
        let t = &g.built.workflow.tasks[0].spec;
        assert_eq!(t.est_duration_s, 10.0);
        assert_eq!(t.output_files[0].size_bytes, Some(100));
        assert_eq!(
            warnings(&g),
            [
                "t.input:6: `Task_Length = 10` has no distribution; read as `uniform 10` (the original tool would fail)",
                "t.input:7: `Num_Processes = 1 rank`: read as 1, the text after it is ignored",
                "t.input:12: `uniform 100B` is not a plain number; the synthetic task reads it as 100 (as task.c's atof/atoi do)",
                "t.input:2: stage `Stage_1`: unknown `Task_Mode = foo`, read as `time` (as task.c does)",
            ]
        );
    }

    #[test]
    fn iteration_groups_must_be_the_following_blocks() {
        let text = format!(
            "Num_Stage = 2\n{}{}",
            stage(
                "Stage_1",
                1,
                FS,
                1,
                "    Iteration_Num = 2\n    Iteration_Stages = Stage_1, Stage_3\n    Iteration_Substitute = Stage_1.Input_1, Stage_3.Output_1\n"
            ),
            stage("Stage_2", 1, "    Input_Files_Each_Task = 0\n", 0, "")
        );
        assert_eq!(
            gen(&text).unwrap_err(),
            "t.input:15: `Iteration_Stages = Stage_1, Stage_3`: the stages iterated with `Stage_1` must be the stage blocks right after it, in order; the file has [Stage_2] there"
        );
        let text = text.replace(
            "Iteration_Stages = Stage_1, Stage_3",
            "Iteration_Stages = Stage_2",
        );
        assert_eq!(
            gen(&text).unwrap_err(),
            "t.input:15: `Iteration_Stages = Stage_2` must include the iterated stage `Stage_1`"
        );
    }

    #[test]
    fn a_filesystem_input_size_cannot_be_a_polynomial() {
        let text = format!(
            "Num_Stage = 1\n{}",
            stage(
                "Stage_1",
                1,
                &FS.replace("uniform 1048576", "polynomial [1, 2] Length"),
                0,
                ""
            )
        );
        assert_eq!(
            gen(&text).unwrap_err(),
            "t.input:11: `Input_1.Size` takes a statistical distribution, not a polynomial"
        );
    }
}

/// Messages and comments cite the facts about the original format by their anchors in
/// docs/skeleton.md (`#classic-format` and the like); each must exist, and nothing may cite
/// a file outside the repository.
#[test]
fn cited_skeleton_doc_sections_exist() {
    use std::path::Path;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/skeleton.md")).unwrap();
    let mut files = Vec::new();
    let mut dirs = vec![root.join("manager/src"), root.join("manager/tests")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs" || x == "md") {
                files.push(path);
            }
        }
    }
    let needle = ["docs/skeleton.md", "#"].concat();
    let mut cited = std::collections::BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            !text.contains(&["FORMAT", ".md"].concat()),
            "{} cites a file outside the repository",
            f.display()
        );
        for (at, _) in text.match_indices(&needle) {
            let anchor: String = text[at + needle.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            cited.insert((anchor, f.display().to_string()));
        }
    }
    // Links inside the guide itself.
    for (at, _) in doc.match_indices("](#") {
        let anchor: String = doc[at + 3..].chars().take_while(|c| *c != ')').collect();
        cited.insert((anchor, "docs/skeleton.md".into()));
    }
    assert!(cited.len() >= 8, "{cited:?}");
    for (anchor, file) in &cited {
        assert!(
            doc.contains(&format!("<a id=\"{anchor}\"></a>")),
            "{file} cites the section `{anchor}` of docs/skeleton.md, which has no such anchor"
        );
    }
}
