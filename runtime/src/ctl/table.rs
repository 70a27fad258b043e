//! patronictl's tables (PrettyTable with its `+---+` rules), with the
//! cluster's title laid over the top rule as patronictl lays it:
//!
//! ```text
//! + Cluster: batman (7214483235493449737) --+----+-----------+
//! | Member | Host           | Role   | State   | TL | Lag in MB |
//! ```
//!
//! Cells may hold several lines (the tags); widths count characters.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            columns: columns.iter().map(|(name, align)| (name.to_string(), *align)).collect(),
            rows: Vec::new(),
        }
    }

    /// A row; missing cells are empty, extra ones dropped.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.columns.len(), String::new());
        self.rows.push(cells);
    }

    /// The table; `title` replaces the start of the top rule (cut to fit).
    pub fn render(&self, title: Option<&str>) -> String {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let cells = self.rows.iter().flat_map(|row| row[i].lines()).map(|l| l.chars().count());
                cells.chain([name.chars().count()]).max().unwrap_or(0)
            })
            .collect();
        let rule: String = widths.iter().fold("+".to_owned(), |mut rule, w| {
            rule.push_str(&"-".repeat(w + 2));
            rule.push('+');
            rule
        });
        let mut out = String::new();
        out.push_str(&match title {
            Some(title) => overlay(&rule, title),
            None => rule.clone(),
        });
        out.push('\n');
        let header: Vec<String> = self.columns.iter().map(|(name, _)| name.clone()).collect();
        let left = vec![Align::Left; header.len()];
        self.push_row(&mut out, &header, &widths, &left);
        out.push_str(&rule);
        out.push('\n');
        let aligns: Vec<Align> = self.columns.iter().map(|(_, a)| *a).collect();
        for row in &self.rows {
            self.push_row(&mut out, row, &widths, &aligns);
        }
        out.push_str(&rule);
        out.push('\n');
        out
    }

    fn push_row(&self, out: &mut String, cells: &[String], widths: &[usize], aligns: &[Align]) {
        let height = cells.iter().map(|c| c.lines().count()).max().unwrap_or(0).max(1);
        for line in 0..height {
            out.push('|');
            for ((cell, width), align) in cells.iter().zip(widths).zip(aligns) {
                let text = cell.lines().nth(line).unwrap_or("");
                let pad = " ".repeat(width - text.chars().count());
                match align {
                    Align::Left => out.push_str(&format!(" {text}{pad} |")),
                    Align::Right => out.push_str(&format!(" {pad}{text} |")),
                }
            }
            out.push('\n');
        }
    }
}

/// patronictl's `__build_header`: the rule's first character, the title
/// (at most the rule's length minus two), then the rest of the rule.
fn overlay(rule: &str, title: &str) -> String {
    let rule: Vec<char> = rule.chars().collect();
    let title: Vec<char> = title.chars().take(rule.len().saturating_sub(2)).collect();
    let mut line = String::with_capacity(rule.len() * 2);
    line.push(rule[0]);
    line.extend(&title);
    line.extend(&rule[1 + title.len()..]);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_aligns_and_lays_the_title_over_the_top_rule() {
        let mut t = Table::new(&[("Name", Align::Left), ("N", Align::Right), ("Tags", Align::Left)]);
        t.row(vec!["pg1".into(), "1".into(), "nofailover: true\nnosync: true".into()]);
        t.row(vec!["longer-name".into(), "12".into()]);
        let text = t.render(Some(" Cluster: c (42) "));
        let expected = "\
+ Cluster: c (42) -+------------------+
| Name        | N  | Tags             |
+-------------+----+------------------+
| pg1         |  1 | nofailover: true |
|             |    | nosync: true     |
| longer-name | 12 |                  |
+-------------+----+------------------+
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_title_longer_than_the_table_is_cut() {
        let mut t = Table::new(&[("A", Align::Left)]);
        t.row(vec!["x".into()]);
        assert_eq!(t.render(Some(" Cluster: very-long ")).lines().next(), Some("+ Cl+"));
    }
}
