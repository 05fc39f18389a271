//! `kaizen sweep emit slurm|k8s|shell`: the text that runs every cell of a planned sweep on a scheduler. Text
//! only: the user submits it. Every variant calls `kaizen sweep worker DIR` once per index, writes the log of
//! index i to `DIR/logs/<i>.out` (Slurm, shell; Kubernetes keeps pod logs) and can be resubmitted as is: finished
//! runs exit at once, interrupted ones resume.

use std::path::Path;

/// Where and with what each worker runs.
#[derive(Debug, Clone)]
pub struct Resources {
    /// CPUs per worker.
    pub cpus: usize,
    /// Memory per worker (Slurm syntax, e.g. `8G`).
    pub mem: String,
    /// Time limit per worker (`HH:MM:SS`).
    pub time: String,
    /// Workers running at once (the `%K` of a Slurm array, `parallelism` of a Job, `xargs -P`).
    pub parallel: usize,
    /// GPUs per worker (0 = none).
    pub gpus: usize,
    /// Slurm partition (empty = the cluster's default).
    pub partition: String,
    /// Seconds before the time limit at which Slurm sends SIGUSR1 (the worker checkpoints and is requeued).
    pub signal_seconds: usize,
    /// Container image (Kubernetes).
    pub image: String,
    /// PersistentVolumeClaim mounted at the sweep directory's path (Kubernetes).
    pub pvc: String,
}

/// The worker command line for device `device` (`cuda` when GPUs are requested, else `cpu`).
fn worker_cmd(kaizen: &str, dir: &Path, r: &Resources) -> String {
    let device = if r.gpus > 0 { "cuda" } else { "cpu" };
    format!(
        "{} sweep worker {} --device {device} --quiet",
        shell_quote(kaizen),
        shell_quote(&dir.display().to_string())
    )
}

/// Single-quote `s` for a POSIX shell when it holds anything but safe characters.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A path in an `#SBATCH` line: `%` doubled (Slurm's filename patterns), double-quoted when it has spaces.
fn sbatch_path(p: &str) -> String {
    let p = p.replace('%', "%%");
    if p.contains(char::is_whitespace) {
        format!("\"{p}\"")
    } else {
        p
    }
}

/// A Kubernetes memory quantity from Slurm's syntax: `8G` / `8GB` -> `8Gi`, `512M` -> `512Mi`, a bare number in MB
/// (Slurm's default unit) -> `Mi`.
fn k8s_memory(mem: &str) -> String {
    let m = mem.trim().trim_end_matches(['B', 'b']);
    match m.chars().last() {
        Some(u @ ('K' | 'k' | 'M' | 'm' | 'G' | 'g' | 'T' | 't')) => {
            format!("{}{}i", &m[..m.len() - 1], u.to_ascii_uppercase())
        }
        _ => format!("{m}Mi"),
    }
}

/// A Slurm batch script submitting the sweep as one job array.
pub fn slurm(kaizen: &str, dir: &Path, runs: usize, r: &Resources) -> String {
    let d = dir.display();
    let logs = sbatch_path(&format!("{d}/logs/%a.out")).replace("%%a.out", "%a.out");
    let mut s = format!(
        "#!/bin/bash\n\
         # kaizen sweep of {runs} runs in {d}: submit with `sbatch {d}/sweep.slurm`, collect with\n\
         # `kaizen sweep collect {d}`. Resubmitting is safe: finished runs exit at once, interrupted ones resume.\n\
         #SBATCH --job-name=kaizen-sweep\n\
         #SBATCH --array=0-{last}%{parallel}\n\
         #SBATCH --cpus-per-task={cpus}\n\
         #SBATCH --mem={mem}\n\
         #SBATCH --time={time}\n\
         #SBATCH --output={logs}\n\
         #SBATCH --open-mode=append\n\
         #SBATCH --requeue\n\
         #SBATCH --signal=USR1@{sig}\n",
        last = runs.saturating_sub(1),
        parallel = r.parallel.max(1),
        cpus = r.cpus,
        mem = r.mem,
        time = r.time,
        sig = r.signal_seconds,
    );
    if r.gpus > 0 {
        s.push_str(&format!("#SBATCH --gres=gpu:{}\n", r.gpus));
    }
    if !r.partition.is_empty() {
        s.push_str(&format!("#SBATCH --partition={}\n", r.partition));
    }
    s.push_str(&format!(
        "\nexport RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-{cpus}}}\"\n\
         # srun does not inherit --cpus-per-task on every Slurm version: give the step all of the task's CPUs.\n\
         export SRUN_CPUS_PER_TASK=\"${{SLURM_CPUS_PER_TASK:-{cpus}}}\"\n\
         # srun makes the worker a job step, so --signal reaches it; on SIGUSR1 / SIGTERM it checkpoints and exits 130.\n\
         srun {cmd}\n\
         rc=$?\n\
         if [ \"$rc\" -eq 130 ]; then\n\
         \x20   # Stopped before the time limit (or preempted) with a checkpoint: run again in a new allocation.\n\
         \x20   scontrol requeue \"$SLURM_JOB_ID\"\n\
         fi\n\
         exit \"$rc\"\n",
        cpus = r.cpus,
        cmd = worker_cmd(kaizen, dir, r)
    ));
    s
}

/// A Kubernetes Indexed Job running the sweep (`kubectl apply -f`).
pub fn k8s(kaizen: &str, dir: &Path, runs: usize, r: &Resources) -> String {
    let d = dir.display().to_string();
    let gpu = if r.gpus > 0 {
        format!("\n                nvidia.com/gpu: {}", r.gpus)
    } else {
        String::new()
    };
    let device = if r.gpus > 0 { "cuda" } else { "cpu" };
    format!(
        "# kaizen sweep of {runs} runs in {d}: `kubectl apply -f` this file; each pod gets JOB_COMPLETION_INDEX.\n\
         # The volume claim `{pvc}` must hold the sweep directory at the same path. To run it again (finished runs\n\
         # exit at once, interrupted ones resume), delete the finished Job first: kubectl delete job kaizen-sweep\n\
         apiVersion: batch/v1\n\
         kind: Job\n\
         metadata:\n\
         \x20 name: kaizen-sweep\n\
         spec:\n\
         \x20 completionMode: Indexed\n\
         \x20 completions: {runs}\n\
         \x20 parallelism: {parallel}\n\
         \x20 backoffLimitPerIndex: 3\n\
         \x20 maxFailedIndexes: {runs}\n\
         \x20 template:\n\
         \x20   spec:\n\
         \x20     restartPolicy: Never\n\
         \x20     terminationGracePeriodSeconds: {sig}\n\
         \x20     containers:\n\
         \x20       - name: worker\n\
         \x20         image: {image}\n\
         \x20         command: [{kaizen:?}, \"sweep\", \"worker\", {d:?}, \"--device\", \"{device}\", \"--quiet\"]\n\
         \x20         env:\n\
         \x20           - name: RAYON_NUM_THREADS\n\
         \x20             value: \"{cpus}\"\n\
         \x20         resources:\n\
         \x20           requests:\n\
         \x20             cpu: \"{cpus}\"\n\
         \x20             memory: {mem}\n\
         \x20           limits:\n\
         \x20             memory: {mem}{gpu}\n\
         \x20         volumeMounts:\n\
         \x20           - name: runs\n\
         \x20             mountPath: {d:?}\n\
         \x20     volumes:\n\
         \x20       - name: runs\n\
         \x20         persistentVolumeClaim:\n\
         \x20           claimName: {pvc}\n",
        parallel = r.parallel.max(1),
        sig = r.signal_seconds,
        image = r.image,
        cpus = r.cpus,
        mem = k8s_memory(&r.mem),
        pvc = r.pvc,
    )
}

/// A local shell script running every index with `xargs -P`. The index reaches the worker as the inner script's
/// `$1` (not substituted into its text), so any sweep path quotes correctly.
pub fn shell(kaizen: &str, dir: &Path, runs: usize, r: &Resources) -> String {
    let d = shell_quote(&dir.display().to_string());
    let inner = format!(
        "KAIZEN_INDEX=\"$1\" {} >> {d}/logs/\"$1\".out 2>&1",
        worker_cmd(kaizen, dir, r)
    );
    format!(
        "#!/bin/sh\n\
         # kaizen sweep of {runs} runs in {d}, {parallel} at a time on this machine; rerun to continue.\n\
         mkdir -p {d}/logs\n\
         seq 0 {last} | xargs -P {parallel} -I{{}} sh -c {inner} sh {{}}\n\
         exec {kaizen} sweep collect {d}\n",
        parallel = r.parallel.max(1),
        last = runs.saturating_sub(1),
        inner = shell_quote(&inner),
        kaizen = shell_quote(kaizen),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(gpus: usize) -> Resources {
        Resources {
            cpus: 2,
            mem: "8G".into(),
            time: "01:00:00".into(),
            parallel: 3,
            gpus,
            partition: String::new(),
            signal_seconds: 90,
            image: "registry/kaizen:1".into(),
            pvc: "runs-pvc".into(),
        }
    }

    #[test]
    fn the_slurm_script_is_an_array_with_requeue_signal_and_per_task_logs() {
        let s = slurm("/opt/kaizen", Path::new("/scratch/sw"), 4, &res(0));
        for line in [
            "#!/bin/bash\n",
            "#SBATCH --array=0-3%3\n",
            "#SBATCH --cpus-per-task=2\n",
            "#SBATCH --mem=8G\n",
            "#SBATCH --time=01:00:00\n",
            "#SBATCH --output=/scratch/sw/logs/%a.out\n",
            "#SBATCH --requeue\n",
            "#SBATCH --signal=USR1@90\n",
            "srun /opt/kaizen sweep worker /scratch/sw --device cpu --quiet\n",
            "scontrol requeue \"$SLURM_JOB_ID\"",
        ] {
            assert!(s.contains(line), "missing {line:?} in\n{s}");
        }
        assert!(!s.contains("--gres"));
        assert!(s.contains("export SRUN_CPUS_PER_TASK="), "{s}");
        let g = slurm("/opt/kaizen", Path::new("/scratch/my sw"), 1, &res(1));
        assert!(
            g.contains("#SBATCH --output=\"/scratch/my sw/logs/%a.out\"\n"),
            "{g}"
        );
        let pct = slurm("/opt/kaizen", Path::new("/scratch/50%"), 1, &res(0));
        assert!(
            pct.contains("#SBATCH --output=/scratch/50%%/logs/%a.out\n"),
            "{pct}"
        );
        assert!(g.contains("#SBATCH --array=0-0%3\n") && g.contains("#SBATCH --gres=gpu:1\n"));
        assert!(
            g.contains("sweep worker '/scratch/my sw' --device cuda"),
            "{g}"
        );
    }

    #[test]
    fn the_kubernetes_job_is_indexed_and_the_shell_script_uses_xargs() {
        let k = k8s("kaizen", Path::new("/data/sw"), 6, &res(2));
        for line in [
            "kind: Job\n",
            "  completionMode: Indexed\n",
            "  completions: 6\n",
            "  parallelism: 3\n",
            "          image: registry/kaizen:1\n",
            "\"sweep\", \"worker\", \"/data/sw\", \"--device\", \"cuda\"",
            "nvidia.com/gpu: 2",
            "claimName: runs-pvc",
            "terminationGracePeriodSeconds: 90",
        ] {
            assert!(k.contains(line), "missing {line:?} in\n{k}");
        }
        let sh = shell("/opt/kaizen", Path::new("/tmp/sw"), 5, &res(0));
        assert!(
            sh.contains(r#"seq 0 4 | xargs -P 3 -I{} sh -c 'KAIZEN_INDEX="$1" /opt/kaizen sweep worker /tmp/sw"#),
            "{sh}"
        );
        assert!(
            sh.contains(r#">> /tmp/sw/logs/"$1".out 2>&1' sh {}"#),
            "{sh}"
        );
        assert!(
            sh.ends_with("exec /opt/kaizen sweep collect /tmp/sw\n"),
            "{sh}"
        );
        // A path with a space stays one word at both levels of quoting.
        let odd = shell("/opt/kaizen", Path::new("/tmp/my sw"), 1, &res(0));
        assert!(
            odd.contains(r#"worker '\''/tmp/my sw'\'' --device"#),
            "{odd}"
        );
        assert_eq!(k8s_memory("16GB"), "16Gi");
        assert_eq!(k8s_memory("512M"), "512Mi");
        assert_eq!(k8s_memory("8192"), "8192Mi");
        assert!(k.contains("kubectl delete job kaizen-sweep"));
    }
}
