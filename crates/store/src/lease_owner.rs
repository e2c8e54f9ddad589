//! Who holds an outbox lease: a process, named by its id and its start time, so that a starting
//! relay takes back only the leases of relays that are gone. The start time tells a process
//! from a later one that got the same id (a container restarted is pid 1 again).

use std::path::Path;
use std::sync::OnceLock;

/// This process's name as a lease owner: `PID:START`, START being its start time in clock ticks
/// since boot (`/proc/self/stat`), or 0 where that cannot be read.
pub fn this_process() -> &'static str {
    static OWNER: OnceLock<String> = OnceLock::new();
    OWNER.get_or_init(|| {
        let start = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| start_time(&stat))
            .unwrap_or(0);
        format!("{}:{start}", std::process::id())
    })
}

/// This process's name as a lease owner on a PostgreSQL outbox, shared by relays on several
/// machines: `HOST/PID/RANDOM`, unique across machines and restarts. Whether it is alive is
/// told by its heartbeat (the `relay_instances` table), not by `/proc`: [`is_gone`] never
/// answers yes for it.
pub fn this_instance() -> &'static str {
    static INSTANCE: OnceLock<String> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".to_owned());
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).expect("the operating system provides randomness");
        format!("{host}/{}/{}", std::process::id(), hex::encode(random))
    })
}

/// Whether the process `owner` names has surely ended. Where that cannot be told (no `/proc`,
/// a process we may not look at, an owner written some other way) the answer is no: those
/// leases lapse on their own.
pub fn is_gone(owner: &str) -> bool {
    let Some((pid, start)) = owner
        .split_once(':')
        .and_then(|(pid, start)| Some((pid.parse::<u32>().ok()?, start.parse::<u64>().ok()?)))
    else {
        return false;
    };
    if owner == this_process() || !Path::new("/proc/self").exists() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie (killed, not yet reaped by its parent) is gone for our purposes; so is a
        // process that started after the owner did.
        Ok(stat) => {
            matches!(state_of(&stat), Some('Z' | 'X'))
                || (start != 0 && start_time(&stat).is_some_and(|s| s != start))
        }
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// The fields of a `/proc/PID/stat` line after the `(command)`, which may itself hold spaces
/// and parentheses: the state is the first, the start time the 20th (field 22 of the line).
fn after_command(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat.rsplit_once(')')?.1.split_whitespace())
}

fn state_of(stat: &str) -> Option<char> {
    after_command(stat)?.next()?.chars().next()
}

fn start_time(stat: &str) -> Option<u64> {
    after_command(stat)?.nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_not_gone_and_a_reaped_child_is() {
        assert!(!is_gone(this_process()));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        if Path::new("/proc/self").exists() {
            assert!(is_gone(&format!("{pid}:1")));
            // The same id with another start time: a later process, so the owner is gone.
            let me = this_process();
            let (pid, start) = me.split_once(':').unwrap();
            if start != "0" {
                assert!(is_gone(&format!(
                    "{pid}:{}",
                    start.parse::<u64>().unwrap() + 1
                )));
            }
        }
        assert!(!is_gone("not an owner"));
    }

    #[test]
    fn reads_state_and_start_time_after_a_command_with_parentheses() {
        let stat = "42 (a (b) c) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19";
        assert_eq!(state_of(stat), Some('Z'));
        assert_eq!(start_time(stat), Some(777));
        assert_eq!(state_of("garbage"), None);
    }
}
