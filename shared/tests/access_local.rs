//! The `local` job service: real processes on this host.

/// Named `access` so `cargo test -p emanager-shared access` selects these tests.
mod access {

    use emanager_shared::access::local::LocalJobService;
    use emanager_shared::access::{JobDescription, JobId, JobService, JobState, JobStatus};
    use std::time::{Duration, Instant};

    fn job(dir: &std::path::Path, command: &[&str], walltime_s: u64) -> JobDescription {
        JobDescription {
            name: "local".into(),
            nodes: 1,
            cores_per_node: 1,
            walltime_s,
            command: command.iter().map(|s| s.to_string()).collect(),
            stdout: Some(dir.join("out.txt").display().to_string()),
            environment: [("EM_X".to_string(), "42".to_string())].into(),
            working_dir: Some(dir.display().to_string()),
            ..Default::default()
        }
    }

    async fn wait_final(svc: &LocalJobService, id: &JobId) -> JobStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = svc.state(id).await.unwrap();
            if s.state.is_final() {
                return s;
            }
            assert!(Instant::now() < deadline, "still {s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn local_job_runs_to_done_with_output_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let svc = LocalJobService::new();
        let id = svc
            .submit(&job(
                dir.path(),
                &["sh", "-c", "echo x=$EM_X; pwd; echo err >&2"],
                60,
            ))
            .await
            .unwrap();
        let s = wait_final(&svc, &id).await;
        assert_eq!(s.state, JobState::Done, "{s:?}");
        let out = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
        assert!(out.contains("x=42") && out.contains("err"), "{out}");
        assert!(out.contains(&dir.path().display().to_string()));
    }

    #[tokio::test]
    async fn local_job_failure_reports_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let svc = LocalJobService::new();
        let id = svc
            .submit(&job(dir.path(), &["sh", "-c", "exit 3"], 60))
            .await
            .unwrap();
        let s = wait_final(&svc, &id).await;
        assert_eq!(
            (s.state, s.reason.as_deref()),
            (JobState::Failed, Some("exit code 3"))
        );
    }

    #[tokio::test]
    async fn local_cancel_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let svc = LocalJobService::new();
        // The child sleeps in a grandchild: cancel must reach it too.
        let id = svc
            .submit(&job(
                dir.path(),
                &["sh", "-c", "sleep 300 & echo $! > pid; wait"],
                60,
            ))
            .await
            .unwrap();
        let pid_file = dir.path().join("pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pid_file.exists() {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(svc.state(&id).await.unwrap().state, JobState::Running);
        assert_eq!(svc.queues().await.unwrap()[0].jobs_running, 1);
        svc.cancel(&id).await.unwrap();
        assert_eq!(wait_final(&svc, &id).await.state, JobState::Canceled);
        let grandchild = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_string();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let alive = std::path::Path::new(&format!("/proc/{grandchild}")).exists()
            && !std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(!alive, "grandchild {grandchild} survived the cancel");
    }

    #[tokio::test]
    async fn local_job_over_its_walltime_fails() {
        let dir = tempfile::tempdir().unwrap();
        let svc = LocalJobService::new();
        let id = svc
            .submit(&job(dir.path(), &["sleep", "30"], 1))
            .await
            .unwrap();
        let s = wait_final(&svc, &id).await;
        assert_eq!(
            (s.state, s.reason.as_deref()),
            (JobState::Failed, Some("walltime exceeded"))
        );
    }

    #[tokio::test]
    async fn local_unknown_job_is_an_error() {
        let svc = LocalJobService::new();
        assert!(svc.state(&JobId("local-1".into())).await.is_err());
    }

    #[tokio::test]
    async fn a_local_job_in_a_reservation_is_refused_and_nothing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let svc = LocalJobService::new();
        let mut j = job(dir.path(), &["touch", "ran"], 60);
        j.reservation = Some("hackathon".into());
        let err = svc.submit(&j).await.unwrap_err();
        assert!(
            matches!(&err, emanager_shared::access::AccessError::InvalidJob(m) if m.contains("reservation `hackathon`")),
            "{err}"
        );
        assert!(!dir.path().join("ran").exists());
    }
}
