//! Summaries of repeated rounds (median, min-max) and the markdown tables
//! the benchmarks print, ready to paste into the README.

/// Median, min and max of some samples (NaN-free).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Spread { median, min: v[0], max: v[n - 1] })
    }

    /// `0.92 (0.90-0.95)` with `prec` decimals; just the value for one sample.
    pub fn show(&self, prec: usize) -> String {
        if self.min == self.max {
            format!("{:.prec$}", self.median)
        } else {
            format!("{:.prec$} ({:.prec$}-{:.prec$})", self.median, self.min, self.max)
        }
    }
}

/// `Spread::of(samples).show(prec)`, or `-` without samples.
pub fn spread(samples: &[f64], prec: usize) -> String {
    Spread::of(samples).map(|s| s.show(prec)).unwrap_or_else(|| "-".into())
}

/// A count with thousands separators: 12800 -> `12,800`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A markdown table whose columns are padded to line up in a terminal too.
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Table {
        Table { head: head.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let n = self.head.len();
        let mut w: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, width) in w.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                s.push_str(&format!(" {c}{} |", " ".repeat(width - c.chars().count())));
            }
            s
        };
        let mut out = vec![line(&self.head)];
        out.push(format!("|{}", w.iter().map(|x| format!("{}|", "-".repeat(x + 2))).collect::<String>()));
        out.extend(self.rows.iter().map(|r| line(r)));
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads() {
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0]), Some(Spread { median: 2.0, min: 1.0, max: 3.0 }));
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).map(|s| s.median), Some(2.5));
        assert_eq!(Spread::of(&[f64::NAN]), None);
        assert_eq!(spread(&[0.9, 0.95, 0.92], 2), "0.92 (0.90-0.95)");
        assert_eq!(spread(&[1.0], 2), "1.00");
        assert_eq!(spread(&[], 2), "-");
    }

    #[test]
    fn counts_and_tables() {
        assert_eq!((count(0), count(999), count(12800), count(1234567)), ("0".into(), "999".into(), "12,800".into(), "1,234,567".into()));
        let mut t = Table::new(&["mode", "x"]);
        t.row(vec!["untraced".into(), "1".into()]);
        assert_eq!(t.render(), "| mode     | x |\n|----------|---|\n| untraced | 1 |");
    }
}
