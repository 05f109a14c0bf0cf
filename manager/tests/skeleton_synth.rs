//! Generated skeleton tasks run for real: each task's argv starts the built
//! `emanager-synth`, which reads its inputs, computes and writes outputs of the right sizes.

mod skeleton_synth {
    use emanager::skeleton::{generate, generate_str, InputFormat, SkeletonOptions};
    use emanager::workflow::Workflow;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, Instant};

    const SYNTH: &str = env!("CARGO_BIN_EXE_emanager-synth");

    fn opts(dir: &Path) -> SkeletonOptions {
        SkeletonOptions {
            synth: Some(PathBuf::from(SYNTH)),
            data_dir: Some(dir.to_path_buf()),
            time_scale: 0.01,
            ..SkeletonOptions::default()
        }
    }

    /// Runs every task in index order (parents always come first) like an agent would.
    fn run_all(wf: &Workflow) {
        for (i, t) in wf.tasks.iter().enumerate() {
            assert!(t.depends_on.iter().all(|&d| d < i));
            let out = Command::new(&t.spec.command[0])
                .args(&t.spec.command[1..])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                t.spec.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn assert_outputs(wf: &Workflow) {
        for t in &wf.tasks {
            for f in t.spec.input_files.iter().chain(&t.spec.output_files) {
                let len = std::fs::metadata(&f.path)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.path))
                    .len();
                assert_eq!(Some(len), f.size_bytes, "{}", f.path);
            }
        }
    }

    const THREE_STAGES: &str = r#"
name = "three"
[[stages]]
name = "gen"
tasks = 4
length = { uniform = [1, 2] }
inputs = [{ size = { uniform = [1000, 5000] } }]
outputs = [{ size = { normal = [20000, 3000] } }, { size = 777 }]

[[stages]]
name = "pair"
type = "parallel"
processes = 2
tasks = 6
length = { polynomial = [0.5, 0.00001], of = "inputs" }
inputs = [{ from = "gen", mapping = "combinations", group = 2 }]
outputs = [{ size = { polynomial = [100, 0.001], of = "length" } }]

[[stages]]
name = "sum"
tasks = 1
length = 1
inputs = [{ from = "pair", mapping = "all-to-all" }, { from = "gen", output = 2, mapping = "all-to-all" }]
outputs = [{ size = 4096 }]
"#;

    #[test]
    fn three_stage_skeleton_runs_and_writes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate_str(
            THREE_STAGES,
            "three.toml",
            "three",
            dir.path(),
            InputFormat::Toml,
            Some(9),
            &opts(dir.path()),
        )
        .unwrap();
        let wf = &g.built.workflow;
        assert_eq!(wf.tasks.len(), 11);
        assert_eq!(wf.tasks[10].spec.input_files.len(), 10);
        run_all(wf);
        assert_outputs(wf);
    }

    #[test]
    fn original_format_input_runs_too() {
        let dir = tempfile::tempdir().unwrap();
        let input =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/skeletons/map-reduce.input");
        let mut o = opts(dir.path());
        o.time_scale = 0.0;
        let g = generate(&input, None, &o).unwrap();
        run_all(&g.built.workflow);
        assert_outputs(&g.built.workflow);
        assert!(dir
            .path()
            .join("Stage_4_Output/Stage_4_Output_0_1")
            .exists());
    }

    #[test]
    fn sleep_mode_takes_the_scaled_length() {
        let start = Instant::now();
        let st = Command::new(SYNTH)
            .args(["--length", "20", "--time-scale", "0.01", "--sleep"])
            .status()
            .unwrap();
        assert!(st.success());
        assert!(start.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn a_missing_input_fails_the_task_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.dat");
        let out = Command::new(SYNTH)
            .arg("--in")
            .arg(&missing)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("cannot open input {}", missing.display())),
            "{err}"
        );
    }

    #[test]
    fn relative_paths_resolve_against_emanager_workdir() {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new(SYNTH)
            .env("EMANAGER_WORKDIR", dir.path())
            .args(["--make-in", "in/a.dat:10", "--out", "out/b.dat:123"])
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            std::fs::metadata(dir.path().join("in/a.dat"))
                .unwrap()
                .len(),
            10
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("out/b.dat"))
                .unwrap()
                .len(),
            123
        );
    }

    #[test]
    fn every_interleave_mode_reads_writes_everything_and_takes_the_length() {
        for mode in ["0", "1", "2", "3"] {
            let dir = tempfile::tempdir().unwrap();
            let start = Instant::now();
            let out = Command::new(SYNTH)
                .env("EMANAGER_WORKDIR", dir.path())
                .args(["--length", "0.4", "--sleep", "--interleave", mode])
                .args(["--make-in", "in.dat:300000", "--out", "a.dat:200000"])
                .args(["--out", "b.dat:70000", "--write-buffer", "50000"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "mode {mode}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(400), "mode {mode}: {took:?}");
            for (f, len) in [("a.dat", 200000), ("b.dat", 70000)] {
                assert_eq!(
                    std::fs::metadata(dir.path().join(f)).unwrap().len(),
                    len,
                    "mode {mode}"
                );
            }
        }
        let refused = Command::new(SYNTH)
            .args(["--interleave", "4"])
            .output()
            .unwrap();
        assert!(!refused.status.success());
    }

    /// Bytes written so far to the output being written (its temporary file).
    fn partial_output(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".out.dat.tmp-"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn interleave_2_writes_while_it_computes_and_0_only_after() {
        // 2 s of computation and 4 writes: mode 2 writes one after each half second.
        let observe = |mode: &str| {
            let dir = tempfile::tempdir().unwrap();
            let mut child = Command::new(SYNTH)
                .env("EMANAGER_WORKDIR", dir.path())
                .args(["--length", "2", "--sleep", "--interleave", mode])
                .args(["--out", "out.dat:262144", "--write-buffer", "65536"])
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(1100));
            let midway = partial_output(dir.path());
            assert!(child.wait().unwrap().success());
            assert_eq!(
                std::fs::metadata(dir.path().join("out.dat")).unwrap().len(),
                262144
            );
            midway
        };
        let interleaved = observe("2");
        assert!(
            interleaved > 0 && interleaved < 262144,
            "mode 2 has written part of its output halfway: {interleaved}"
        );
        assert_eq!(observe("0"), 0, "mode 0 writes only after computing");
    }
}
