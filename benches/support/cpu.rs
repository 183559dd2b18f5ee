//! CPU time spent by the bot under test, read from `/proc/self/stat` and
//! `/proc/self/task/*/stat` (Linux): the whole process, less the threads of the fakes and the
//! main thread (which queues the fakes' updates). The process's total keeps the time of threads
//! that have ended (sqlx's SQLite threads end with their store), which a sum over the threads
//! alive at the end would lose.

/// USER_HZ: 100 on every Linux this runs on.
const TICKS: f64 = 100.0;

/// `(utime + stime)` in ticks from a `stat` line: the name may hold spaces, so fields are
/// counted from the last ')'.
fn ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    // After the name: state is field 3 of stat(5); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Seconds of CPU used so far by this process, every thread it ever had.
#[allow(dead_code)] // Not every bench binary asks.
pub fn process_seconds() -> f64 {
    process_ticks() as f64 / TICKS
}

fn process_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| ticks(&stat))
        .unwrap_or(0)
}

/// A live thread of this process: its id, its folder under `/proc/self/task`, and whether it
/// is the bot's: neither the main thread nor one named with one of the `others` given.
struct Thread {
    tid: String,
    folder: std::path::PathBuf,
    bots: bool,
}

fn threads(others: &[&str]) -> Vec<Thread> {
    let main = std::process::id().to_string();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_string_lossy().to_string();
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let bots = tid != main && !others.iter().any(|p| name.starts_with(p));
            Some(Thread {
                tid,
                folder: task.path(),
                bots,
            })
        })
        .collect()
}

/// Seconds of CPU used so far by this process, except its main thread and the threads named
/// with one of `others`.
#[allow(dead_code)] // Not every bench binary asks.
pub fn seconds_except(others: &[&str]) -> f64 {
    let process = process_ticks();
    let excluded: u64 = threads(others)
        .into_iter()
        .filter(|thread| !thread.bots)
        .filter_map(|thread| ticks(&std::fs::read_to_string(thread.folder.join("stat")).ok()?))
        .sum();
    process.saturating_sub(excluded) as f64 / TICKS
}

/// Context switches (voluntary and involuntary, from `/proc/self/task/*/status`) of each live
/// thread, by thread id, except the main thread and the threads named with one of `others`.
/// Every switch is a thread parked and woken again: between the runtime and sqlx's SQLite
/// threads, the cost of a hand-off the CPU time alone does not explain.
#[allow(dead_code)] // Not every bench binary asks.
pub fn switches_except(others: &[&str]) -> std::collections::HashMap<String, u64> {
    threads(others)
        .into_iter()
        .filter(|thread| thread.bots)
        .filter_map(|thread| {
            let status = std::fs::read_to_string(thread.folder.join("status")).ok()?;
            let count = |field: &str| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix(field))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let total = count("voluntary_ctxt_switches:") + count("nonvoluntary_ctxt_switches:");
            Some((thread.tid, total))
        })
        .collect()
}

/// The switches made between two readings of [`switches_except`]: by the threads alive at
/// both, and all of those of threads born in between (a thread that ended is not counted).
#[allow(dead_code)] // Not every bench binary asks.
pub fn switches_between(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
) -> u64 {
    after
        .iter()
        .map(|(tid, n)| n.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
}
