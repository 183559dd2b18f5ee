//! CPU time spent by this process's threads whose names start with given prefixes, read from
//! `/proc/self/task/*/stat` (Linux): with the fakes on threads of their own, what the bot
//! itself costs.

/// Seconds of CPU (user + system) used so far by threads named with one of `prefixes`.
pub fn seconds(prefixes: &[&str]) -> f64 {
    let ticks = 100.0; // USER_HZ: 100 on every Linux this runs on.
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut total = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the name may hold spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        if !prefixes.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the name: state is field 3 of stat(5); utime and stime are fields 14 and 15.
        let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        total += utime + stime;
    }
    total as f64 / ticks
}
