//! CPU time of the benchmark process, shared by the benches (`#[path]`-included).

/// User + system CPU seconds of this process and of its waited-for children, from /proc.
pub fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let tick = 100.0; // USER_HZ on Linux
    let at = |n: usize| fields.get(n - 3).copied().unwrap_or(0.0) / tick;
    (at(14) + at(15), at(16) + at(17))
}

/// Wall-clock and CPU seconds of one measurement (not read by every bench that includes this
/// file).
#[allow(dead_code)]
#[derive(Clone, Copy)]
pub struct Timing {
    pub cpu: f64,
    pub wall: f64,
}

/// Runs a child command once; CPU time is that of the children (waited for). Not every bench
/// that includes this file runs children.
#[allow(dead_code)]
pub fn measure_child(mut command: std::process::Command) -> (Timing, String) {
    let (_, child0) = cpu_seconds();
    let t0 = std::time::Instant::now();
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds().1 - child0;
    assert!(output.status.success(), "{command:?} failed");
    (
        Timing { cpu, wall },
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}
