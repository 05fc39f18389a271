//! End-to-end tests of `kaizen sweep` without a scheduler: workers driven by the scheduler's index variable, run
//! twice, stopped by a signal or killed, and collected (scripts/slurm-local.sh runs the same on a real Slurm).

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// The sweep of configs/sweeps/smoke.toml (2 strategies x 2 seeds on `smoke`) through `sweep worker` with Slurm's
/// index variable: every run once, a second pass that does nothing, an interrupted worker that resumes to the same
/// numbers, `collect` with finished and missing runs, and the emitted Slurm array.
#[test]
fn a_sweep_runs_by_scheduler_index_idempotently_and_resumes() {
    let t = tmp();
    let grid = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sweeps/smoke.toml");
    let (sw, sw2) = (t.path().join("sw"), t.path().join("sw2"));
    let plan = ok(&["sweep", "plan", "--grid", s(&grid), "--out", s(&sw)]);
    assert!(String::from_utf8_lossy(&plan.stdout).contains("planned 4 runs (2 cells x 2 seeds)"));
    let sweep: serde_json::Value = serde_json::from_str(&read(&sw.join("sweep.json"))).unwrap();
    let dirs: Vec<String> = (0..4)
        .map(|i| sweep["runs"][i]["dir"].as_str().unwrap().to_string())
        .collect();
    let worker = |dir: &Path, i: usize, extra: &[&str]| {
        let idx = i.to_string();
        let mut args = vec!["sweep", "worker", s(dir), "-q"];
        args.extend_from_slice(extra);
        kaizen_env(&args, &[("SLURM_ARRAY_TASK_ID", idx.as_str())])
    };
    for i in 0..4 {
        let o = worker(&sw, i, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let summaries: Vec<(String, std::time::SystemTime)> = dirs
        .iter()
        .map(|d| {
            let p = sw.join(d).join("summary.json");
            (read(&p), std::fs::metadata(&p).unwrap().modified().unwrap())
        })
        .collect();
    for i in 0..4 {
        let o = worker(&sw, i, &[]);
        assert!(o.status.success());
        assert!(String::from_utf8_lossy(&o.stdout).contains("already finished"));
        let p = sw.join(&dirs[i]).join("summary.json");
        assert_eq!(
            (read(&p), std::fs::metadata(&p).unwrap().modified().unwrap()),
            summaries[i]
        );
    }
    // The same grid planned again: the same ids. Run 0 is stopped after 2 steps (as by SIGUSR1: exit 130), then
    // the same worker command resumes it to the uninterrupted run's numbers.
    ok(&["sweep", "plan", "--grid", s(&grid), "--out", s(&sw2)]);
    assert_eq!(read(&sw2.join("sweep.json")), read(&sw.join("sweep.json")));
    let o = worker(&sw2, 0, &["--stop-after-steps", "2"]);
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!sw2.join(&dirs[0]).join("summary.json").exists());
    let o = worker(&sw2, 0, &[]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("resuming"));
    assert_eq!(
        read(&sw2.join(&dirs[0]).join("summary.json")),
        summaries[0].0
    );

    let c = ok(&["sweep", "collect", s(&sw)]);
    assert!(String::from_utf8_lossy(&c.stdout).contains("4 of 4 runs finished"));
    let csv = read(&sw.join("results.csv"));
    assert!(
        csv.starts_with("cell,strategy,protocol,metric,mean,std,n,values\n"),
        "{csv}"
    );
    assert!(
        csv.contains("strategy=kaizen,kaizen,classifier,final_accuracy,"),
        "{csv}"
    );
    let c = ok(&["sweep", "collect", s(&sw2)]);
    let text = String::from_utf8_lossy(&c.stdout);
    assert!(
        text.contains("1 of 4 runs finished") && text.contains("not started"),
        "{text}"
    );

    ok(&["sweep", "emit", "slurm", s(&sw), "--parallel", "2"]);
    let script = read(&sw.join("sweep.slurm"));
    assert!(
        script.contains("#SBATCH --array=0-3%2\n") && script.contains("sweep worker"),
        "{script}"
    );
    fails_with(&["sweep", "worker", s(&sw), "--index", "4"], "out of range");
    fails_with(&["sweep", "worker", s(&sw)], "SLURM_ARRAY_TASK_ID");
    fails_with(
        &["sweep", "collect", s(&t.path().join("none"))],
        "plan the sweep first",
    );
}

/// A sweep worker told to stop by SIGUSR1 (Slurm's warning before the time limit) checkpoints and exits 130; one
/// killed with SIGKILL mid-run loses only the steps after its last checkpoint. Rerun by the same command, both
/// end with the uninterrupted run's numbers.
#[test]
fn a_signalled_or_killed_sweep_worker_resumes_to_the_same_result() {
    let t = tmp();
    let grid = t.path().join("grid.toml");
    std::fs::write(
        &grid,
        "preset = \"smoke\"\nseeds = [4]\nstrategies = [\"kaizen\"]\n[set]\n\"train.epochs\" = 3\n\"train.checkpoint_every\" = 1\n",
    )
    .unwrap();
    let plan = |name: &str| {
        let d = t.path().join(name);
        ok(&["sweep", "plan", "--grid", s(&grid), "--out", s(&d)]);
        d
    };
    let worker = |d: &Path| {
        Command::new(env!("CARGO_BIN_EXE_kaizen"))
            .args(["sweep", "worker", s(d), "--index", "0", "-q"])
            .env("RAYON_NUM_THREADS", "2")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn kaizen")
    };
    let wait_for = |p: &Path| {
        let start = std::time::Instant::now();
        while !p.exists() && start.elapsed().as_secs() < 120 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    let full = plan("full");
    ok(&["sweep", "worker", s(&full), "--index", "0", "-q"]);
    let sweep: serde_json::Value = serde_json::from_str(&read(&full.join("sweep.json"))).unwrap();
    let run = sweep["runs"][0]["dir"].as_str().unwrap().to_string();
    let expected = summary_of(&full.join(&run));

    let usr1 = plan("usr1");
    let child = worker(&usr1);
    wait_for(&usr1.join(&run).join("metrics.jsonl"));
    let sent = Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .expect("kill -USR1");
    assert!(sent.success());
    let out = child.wait_with_output().expect("wait for the worker");
    let finished_first = usr1.join(&run).join("summary.json").exists();
    let code = out.status.code();
    assert!(
        code == Some(130) || (finished_first && code == Some(0)),
        "exit {code:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let killed = plan("killed");
    let mut child = worker(&killed);
    wait_for(&killed.join(&run).join("checkpoints/latest.safetensors"));
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();

    for d in [&usr1, &killed] {
        ok(&["sweep", "worker", s(d), "--index", "0", "-q"]);
        assert_eq!(summary_of(&d.join(&run)), expected, "{}", d.display());
    }
}
