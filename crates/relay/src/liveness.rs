//! Whether the process that holds a lease still runs, so a starting relay takes back only the
//! calls of relays that died.

use std::path::Path;

/// Whether process `pid` runs on this machine. Where that cannot be told (no `/proc`), and for
/// this very process (another relay of ours may hold leases on the same database), the answer
/// is yes: those leases lapse on their own.
pub(crate) fn process_alive(pid: i64) -> bool {
    let proc = Path::new("/proc");
    if pid == i64::from(std::process::id()) || !proc.join("self").exists() {
        return true;
    }
    match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        // A zombie (killed, not yet reaped by its parent) is gone for our purposes.
        Ok(stat) => !matches!(state_of(&stat), Some('Z' | 'X')),
        Err(_) => false,
    }
}

/// The state letter of a `/proc/PID/stat` line: the first field after the `(command)`, which
/// may itself hold spaces and parentheses.
fn state_of(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(process_alive(i64::from(std::process::id())));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = i64::from(child.id());
        child.wait().expect("wait");
        if Path::new("/proc/self").exists() {
            assert!(!process_alive(pid));
        }
    }

    #[test]
    fn reads_the_state_after_a_command_with_parentheses() {
        assert_eq!(state_of("42 (a (b) c) Z 1 2 3"), Some('Z'));
        assert_eq!(state_of("42 (pdchannels) S 1"), Some('S'));
        assert_eq!(state_of("garbage"), None);
    }
}
