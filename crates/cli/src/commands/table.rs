//! Aligned text tables for list commands: a header row, then one line per row, each column as
//! wide as its widest cell. Tabs and line breaks in a cell become spaces, so that a row is
//! always one line (an upstream's error may span several).

/// Which side of its column a cell keeps to: numbers right, text left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table being filled; [`Table::render`] lays it out.
#[derive(Debug)]
pub struct Table {
    header: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

/// The space between two columns.
const GUTTER: &str = "  ";

impl Table {
    pub fn new(header: &[(&'static str, Align)]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row: one cell per column of the header.
    pub fn push(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len(), "one cell per column");
        self.rows
            .push(cells.into_iter().map(|cell| one_line(&cell)).collect());
    }

    /// The header and the rows, one line each, without trailing spaces or a final newline.
    pub fn render(&self) -> String {
        let titles: Vec<String> = self.header.iter().map(|(t, _)| (*t).to_owned()).collect();
        let lines: Vec<&Vec<String>> = std::iter::once(&titles).chain(&self.rows).collect();
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| lines.iter().map(|l| width(&l[c])).max().unwrap_or(0))
            .collect();
        lines
            .iter()
            .map(|cells| {
                let mut line = String::new();
                for (c, cell) in cells.iter().enumerate() {
                    if c > 0 {
                        line.push_str(GUTTER);
                    }
                    let pad = " ".repeat(widths[c] - width(cell));
                    match self.header[c].1 {
                        Align::Left => {
                            line.push_str(cell);
                            line.push_str(&pad);
                        }
                        Align::Right => {
                            line.push_str(&pad);
                            line.push_str(cell);
                        }
                    }
                }
                line.trim_end().to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The columns a cell takes on a terminal, counted in characters (close enough for the ids,
/// names, dates and error texts these tables show).
fn width(cell: &str) -> usize {
    cell.chars().count()
}

fn one_line(cell: &str) -> String {
    cell.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&[
            ("ID", Align::Right),
            ("NAME", Align::Left),
            ("WHY", Align::Left),
        ]);
        table.push(vec!["7".into(), "a".into(), "x".into()]);
        table.push(vec!["12".into(), "longer".into(), "two\nlines".into()]);
        assert_eq!(
            table.render(),
            "ID  NAME    WHY\n 7  a       x\n12  longer  two lines"
        );
    }
}
