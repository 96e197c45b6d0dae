//! The scripts' own mechanics that a user relies on, exercised as the scripts run them.

use std::{process::Command, time::Duration};

/// Proves: a process `dev-setup.sh start-all` launches is tracked by the pid of the process
/// that really runs it, even when the script runs in a shell with job control (where
/// `setsid` forks and `$!` names a process that exits at once): half a second later the pid
/// file still names a live process whose command line is the one started, so the liveness
/// check does not report "exited during start-up" for a process that is running.
#[test]
fn started_processes_are_tracked_under_job_control() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lib = edge_sync_e2e::stack::repo_root().join("scripts/lib.sh");
    let script = dir.path().join("launch.sh");
    std::fs::write(
        &script,
        format!(
            "source '{lib}'\nPIDS='{dir}'\nLOGS='{dir}'\n\
             launch_detached e2e-sleeper bash -c 'sleep 30; :' e2e-sleeper\n\
             sleep 0.5\nour_pid e2e-sleeper\n",
            lib = lib.display(),
            dir = dir.path().display(),
        ),
    )
    .expect("write the script");
    // `bash -m` on a terminal (`script` gives it one): job control, as in a user's shell.
    let output = Command::new("script")
        .args([
            "-qec",
            &format!("bash -m '{}'", script.display()),
            "/dev/null",
        ])
        .output()
        .expect("run script(1) from util-linux");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "our_pid lost the started process: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pid: i32 = stdout.trim().parse().expect("a pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("a live process");
    assert!(
        String::from_utf8_lossy(&cmdline).contains("e2e-sleeper"),
        "the pid runs the started command"
    );
    // It leads its own process group, which stop-all stops as a whole.
    let stopped = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pid}")])
        .status()
        .expect("kill");
    assert!(stopped.success(), "the process group {pid} exists");
    std::thread::sleep(Duration::from_millis(200));
}
