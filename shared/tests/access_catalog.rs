//! The resource catalog: the shipped example loads; mistakes are errors that name the
//! resource and the field.

/// Named `access` so `cargo test -p emanager-shared access` selects these tests.
mod access {

    use emanager_shared::access::{command_runner_for, AccessError, JobDescription};
    use emanager_shared::catalog::{AccessKind, Catalog, CatalogError, LaunchMethod};

    fn example() -> Catalog {
        Catalog::load(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/resources.toml"
        ))
        .unwrap()
    }

    const MINIMAL: &str = r#"
[resources.m]
access = "slurm"
nodes = 4
cores_per_node = 8
default_queue = "debug"

[[resources.m.queues]]
name = "debug"
max_walltime = "01:00:00"
max_nodes = 2
"#;

    fn error_of(text: &str) -> String {
        Catalog::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn example_catalog_has_the_real_machines_and_the_test_entries() {
        let c = example();
        for name in [
            "frontier",
            "perlmutter-cpu",
            "perlmutter-gpu",
            "polaris",
            "aurora",
            "frontera",
            "localhost-slurm",
            "localhost-slurm-ssh",
            "localhost-slurm-b",
            "localhost-slurm-b-ssh",
            "localhost-sge",
            "local",
        ] {
            assert!(c.get(name).is_ok(), "{name} missing");
        }
        let frontier = c.get("frontier").unwrap();
        assert_eq!(frontier.access, AccessKind::Slurm);
        assert_eq!((frontier.cores_per_node, frontier.gpus_per_node), (56, 8));
        assert_eq!(frontier.queue(None).unwrap().max_walltime_s, 12 * 3600);
        assert_eq!(frontier.launch_methods, [LaunchMethod::Srun]);
        let polaris = c.get("polaris").unwrap();
        assert_eq!(polaris.access, AccessKind::Pbs);
        assert_eq!(polaris.queue(Some("prod")).unwrap().min_nodes, 10);
        assert_eq!(
            c.get("localhost-slurm-ssh").unwrap().ssh.as_deref(),
            Some("root@localhost")
        );
        for name in ["localhost-slurm-b", "localhost-slurm-b-ssh"] {
            let b = c.get(name).unwrap();
            assert_eq!(
                b.batch_env.get("SLURM_CONF").map(String::as_str),
                Some("/etc/slurm-b/slurm.conf"),
                "{name}"
            );
            assert_eq!(b.queue(Some("short")).unwrap().max_walltime_s, 60, "{name}");
        }
        assert!(c.get("localhost-slurm").unwrap().batch_env.is_empty());
    }

    #[test]
    fn batch_env_names_must_be_variable_names() {
        for name in ["1ST", "A-B", "", "-i", "A=B", "A B", "Ä"] {
            let text = MINIMAL.replace(
                "nodes = 4",
                &format!("nodes = 4\nbatch_env = {{ \"{name}\" = \"x\" }}"),
            );
            let err = error_of(&text);
            assert!(
                err.contains(&format!(
                    "resource `m`: field `batch_env`: `{name}` is not a variable name"
                )),
                "{name:?}: {err}"
            );
        }
        let ok = MINIMAL.replace(
            "nodes = 4",
            "nodes = 4\nbatch_env = { _X1 = \"a b\", SLURM_CONF = \"/etc/slurm-b/slurm.conf\" }",
        );
        let c = Catalog::parse(&ok).unwrap();
        assert_eq!(c.get("m").unwrap().batch_env.len(), 2);
    }

    #[test]
    fn batch_env_values_must_not_hold_nul_and_local_access_has_none() {
        let err =
            error_of(&MINIMAL.replace("nodes = 4", "nodes = 4\nbatch_env = { X = \"a\\u0000b\" }"));
        assert!(
            err.contains("field `batch_env`: `X`: the value contains a NUL byte"),
            "{err}"
        );
        let err = error_of(&MINIMAL.replace(
            "access = \"slurm\"",
            "access = \"local\"\nbatch_env = { X = \"1\" }",
        ));
        assert!(
            err.contains("field `batch_env`: `access = \"local\"` runs no batch commands"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn batch_env_reaches_the_commands_of_the_resource_runner() {
        let c = example();
        let runner = command_runner_for(c.get("localhost-slurm-b").unwrap());
        let out = runner
            .run(
                &["sh".into(), "-c".into(), "echo \"$SLURM_CONF\"".into()],
                None,
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, "/etc/slurm-b/slurm.conf\n");
        assert_eq!(runner.host(), "localhost");
    }

    #[test]
    fn unknown_resource_lists_the_known_ones() {
        let c = Catalog::parse(MINIMAL).unwrap();
        assert_eq!(
            c.get("x").unwrap_err().to_string(),
            "unknown resource `x`; known: m"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = error_of(&MINIMAL.replace("nodes = 4", "nodes = 4\ncores = 3"));
        assert!(err.contains("unknown field `cores`"), "{err}");
        let err = error_of(&MINIMAL.replace("max_nodes = 2", "max_nodes = 2\nwalltime = 3"));
        assert!(err.contains("unknown field `walltime`"), "{err}");
    }

    #[test]
    fn impossible_values_name_resource_and_field() {
        for (from, to, want) in [
            (
                "cores_per_node = 8",
                "cores_per_node = 0",
                "resource `m`: field `cores_per_node`: must be at least 1",
            ),
            ("nodes = 4", "nodes = 0", "resource `m`: field `nodes`"),
            (
                "default_queue = \"debug\"",
                "default_queue = \"batch\"",
                "field `default_queue`: `batch` is not one of the queues (debug)",
            ),
            (
                "max_walltime = \"01:00:00\"",
                "max_walltime = \"00:00:00\"",
                "field `queues[0].max_walltime`",
            ),
            (
                "max_nodes = 2",
                "max_nodes = 0",
                "field `queues[0].max_nodes`",
            ),
            (
                "access = \"slurm\"",
                "access = \"local\"\nssh = \"a@b\"",
                "field `ssh`",
            ),
            (
                "access = \"slurm\"",
                "access = \"slurm\"\ncost_per_core_hour = -1.0",
                "field `cost_per_core_hour`",
            ),
        ] {
            let text = MINIMAL.replace(from, to);
            assert_ne!(text, MINIMAL, "{from}");
            let err = error_of(&text);
            assert!(err.contains(want), "{err} lacks {want}");
        }
    }

    #[test]
    fn a_queue_larger_than_its_resource_is_an_error_naming_both_numbers_and_the_fix() {
        let err = error_of(&MINIMAL.replace("max_nodes = 2", "max_nodes = 5"));
        assert_eq!(
            err,
            "resource `m`: field `queues[0].max_nodes`: queue `debug` allows 5 nodes but the \
             resource has 4 (`nodes`); lower `max_nodes` to at most 4 or raise `nodes`"
        );
        // As large as the resource is fine.
        Catalog::parse(&MINIMAL.replace("max_nodes = 2", "max_nodes = 4")).unwrap();
    }

    #[test]
    fn a_pilot_job_runs_in_its_queues_reservation_else_in_its_resources() {
        let text = MINIMAL
            .replace("nodes = 4", "nodes = 4\nreservation = \"project-resv\"")
            .replace(
                "max_nodes = 2",
                "max_nodes = 2\n\n[[resources.m.queues]]\nname = \"hack\"\npartition = \"debug\"\n\
                 max_walltime = \"01:00:00\"\nmax_nodes = 2\nreservation = \"hackathon\"",
            );
        let c = Catalog::parse(&text).unwrap();
        let m = c.get("m").unwrap();
        let job = |q| JobDescription::for_pilot(m, q, 1, 60, &[]).unwrap();
        assert_eq!(job(None).reservation.as_deref(), Some("project-resv"));
        assert_eq!(job(Some("hack")).reservation.as_deref(), Some("hackathon"));
        assert_eq!(job(Some("hack")).queue.as_deref(), Some("debug"));
        let plain = Catalog::parse(MINIMAL).unwrap();
        let job = JobDescription::for_pilot(plain.get("m").unwrap(), None, 1, 60, &[]).unwrap();
        assert_eq!(job.reservation, None);
    }

    #[test]
    fn reservations_must_be_one_word_and_not_on_local_resources() {
        for (from, to, want) in [
            (
                "nodes = 4",
                "nodes = 4\nreservation = \"my resv\"",
                "resource `m`: field `reservation`: `my resv` is not a reservation name",
            ),
            (
                "nodes = 4",
                "nodes = 4\nreservation = \"--uid=0\"",
                "read as an option",
            ),
            (
                "max_nodes = 2",
                "max_nodes = 2\nreservation = \"\"",
                "field `queues[0].reservation`: queue `debug`: the reservation name is empty",
            ),
        ] {
            let err = error_of(&MINIMAL.replace(from, to));
            assert!(err.contains(want), "{err} lacks {want}");
        }
        let local = "[resources.here]\naccess = \"local\"\nnodes = 1\ncores_per_node = 2\nreservation = \"r\"\n";
        let err = error_of(local);
        assert!(
            err.contains("resource `here`: field `reservation`: `access = \"local\"` runs pilots on this host"),
            "{err}"
        );
    }

    #[test]
    fn bad_walltime_and_access_values_are_explained() {
        let err = error_of(&MINIMAL.replace("\"01:00:00\"", "\"one hour\""));
        assert!(err.contains("is not a duration"), "{err}");
        let err = error_of(&MINIMAL.replace("\"slurm\"", "\"condor\""));
        assert!(err.contains("unknown variant `condor`"), "{err}");
    }

    #[test]
    fn load_names_the_file_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resources.toml");
        std::fs::write(&path, "[resources.m]\naccess = 1\n").unwrap();
        let err = Catalog::load(&path).unwrap_err();
        assert!(matches!(err, CatalogError::Syntax { .. }));
        assert!(
            err.to_string().starts_with(&path.display().to_string()),
            "{err}"
        );
        assert!(Catalog::load(dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
    }

    #[test]
    fn template_paths_are_relative_to_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resources.toml");
        std::fs::write(
            &path,
            MINIMAL.replace("nodes = 4", "nodes = 4\ntemplate = \"site/slurm.sh\""),
        )
        .unwrap();
        let c = Catalog::load(&path).unwrap();
        assert_eq!(
            c.get("m").unwrap().template.as_ref().unwrap(),
            &dir.path().join("site/slurm.sh")
        );
    }

    #[test]
    fn pilot_job_description_follows_the_catalog_and_checks_limits() {
        let c = example();
        let args = vec!["--campaign".to_string(), "C".to_string()];
        let job = JobDescription::for_pilot(
            c.get("perlmutter-gpu").unwrap(),
            Some("debug"),
            2,
            1800,
            &args,
        )
        .unwrap();
        assert_eq!(
            (job.queue.clone(), job.qos.as_deref()),
            (None, Some("debug"))
        );
        assert_eq!(job.extra_directives, ["--constraint=gpu"]);
        assert_eq!(
            job.command,
            ["$HOME/emanager/bin/pilot-agent", "--campaign", "C"]
        );
        assert_eq!(job.pre_commands, ["module load python"]);
        let frontier = c.get("frontier").unwrap();
        let job = JobDescription::for_pilot(frontier, None, 10, 3600, &args).unwrap();
        assert_eq!(
            (
                job.queue.as_deref(),
                job.account.as_deref(),
                job.cores_per_node
            ),
            (Some("batch"), Some("PROJ123"), 56)
        );
        let err =
            JobDescription::for_pilot(frontier, Some("extended"), 100, 3600, &args).unwrap_err();
        assert!(
            matches!(&err, AccessError::InvalidJob(m) if m.contains("queue `extended` takes 1..=64 nodes")),
            "{err}"
        );
        let err =
            JobDescription::for_pilot(frontier, Some("debug"), 1, 3 * 3600, &args).unwrap_err();
        assert!(err.to_string().contains("at most 7200 s"), "{err}");
        let err = JobDescription::for_pilot(frontier, Some("nope"), 1, 60, &args).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown queue `nope`; known: batch, extended, debug"),
            "{err}"
        );
    }
}
