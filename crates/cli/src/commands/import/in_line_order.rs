//! Per-line reports in line order, though lines finish in any order (they are stored
//! concurrently): a line's report is let out once every line before it has settled, so a
//! reader sees `line 7` before `line 12` and nothing waits longer than the slowest earlier line.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct InLineOrder {
    /// Lines started and not settled yet.
    in_flight: BTreeSet<usize>,
    /// Reports of settled lines that wait for an earlier line.
    waiting: BTreeMap<usize, String>,
}

impl InLineOrder {
    /// Line `line` is being stored; its outcome comes later.
    pub fn started(&mut self, line: usize) {
        self.in_flight.insert(line);
    }

    /// Line `line` has settled, with a report or none (a line need not have been started: one
    /// rejected as it is read settles at once). Answers the reports now due, in line order.
    pub fn settled(&mut self, line: usize, report: Option<String>) -> Vec<String> {
        self.in_flight.remove(&line);
        if let Some(report) = report {
            self.waiting.insert(line, report);
        }
        let horizon = self.in_flight.first().copied().unwrap_or(usize::MAX);
        let later = self.waiting.split_off(&horizon);
        std::mem::replace(&mut self.waiting, later)
            .into_values()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_waits_for_the_lines_before_it() {
        let mut order = InLineOrder::default();
        order.started(1);
        order.started(2);
        order.started(4);
        assert!(order.settled(3, Some("three".into())).is_empty());
        assert!(order.settled(2, Some("two".into())).is_empty());
        assert_eq!(order.settled(1, None), ["two", "three"]);
        assert_eq!(order.settled(5, Some("five".into())), Vec::<String>::new());
        assert_eq!(order.settled(4, Some("four".into())), ["four", "five"]);
    }
}
