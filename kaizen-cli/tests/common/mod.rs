//! Helpers shared by the end-to-end test binaries of the `kaizen` CLI (each binary uses a subset).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn kaizen(args: &[&str]) -> Output {
    kaizen_env(args, &[])
}

/// `kaizen args` with extra environment variables (the scheduler's index variables are cleared first).
pub fn kaizen_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kaizen"));
    cmd.args(args).env("RAYON_NUM_THREADS", "2");
    for v in [
        "SLURM_ARRAY_TASK_ID",
        "JOB_COMPLETION_INDEX",
        "KAIZEN_INDEX",
    ] {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output();
    match out {
        Ok(o) => o,
        Err(e) => panic!("cannot start kaizen: {e}"),
    }
}

pub fn ok(args: &[&str]) -> Output {
    let o = kaizen(args);
    assert!(
        o.status.success(),
        "kaizen {args:?} failed ({:?}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A run stopped on request: exit code 130 and the resume hint.
pub fn stopped(args: &[&str]) {
    let o = kaizen(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(130),
        "kaizen {args:?} should exit 130; stderr:\n{err}"
    );
    assert!(err.contains("kaizen resume"), "{err}");
}

pub fn fails_with(args: &[&str], needle: &str) {
    let o = kaizen(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(2),
        "kaizen {args:?} should exit 2; stderr:\n{err}"
    );
    assert!(
        err.contains(needle),
        "kaizen {args:?}: stderr lacks `{needle}`:\n{err}"
    );
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

pub fn s(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
}

/// The arguments of `kaizen run --preset smoke --out DIR --quiet`, then `extra`.
pub fn smoke_run<'a>(dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "--preset", "smoke", "--out", s(dir), "--quiet"];
    v.extend_from_slice(extra);
    v
}

pub fn summary_of(dir: &Path) -> String {
    read(&dir.join("summary.json"))
}
