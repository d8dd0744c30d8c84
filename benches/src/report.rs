//! The results: one cell per row and column, the printed table (valid
//! Markdown, so it can be pasted into BENCHMARKS.md) and the JSON document.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::stats::{Summary, fmt_latency, fmt_rate, fmt_ratio, ratio};

/// The three columns of every row, in table order.
pub const COLUMNS: [(&str, &str); 3] = [
    ("ferrohsm", "FerroHSM"),
    ("softhsm", "SoftHSMv2"),
    ("raw", "raw crate"),
];

/// One row's result for one column.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Cell {
    /// Measured.
    Ok(Summary),
    /// Not measured, for the given reason (missing mechanism, no module, no
    /// raw equivalent, setup over budget).
    Skipped {
        /// Why.
        reason: String,
    },
    /// The column has no equivalent of the row (raw crates have no sessions).
    #[serde(rename = "n/a")]
    NotApplicable,
    /// A wrong answer or an unexpected error.
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl Cell {
    /// Throughput when measured.
    pub fn ops_per_sec(&self) -> Option<f64> {
        match self {
            Cell::Ok(s) => Some(s.ops_per_sec),
            _ => None,
        }
    }
}

/// All columns of one row.
#[derive(Clone, Debug, Serialize)]
pub struct RowResult {
    /// Row id (`--ops` name).
    pub id: String,
    /// Human title.
    pub title: String,
    /// Worker threads (each with its own session).
    pub threads: usize,
    /// FerroHSM through its `.so`.
    pub ferrohsm: Cell,
    /// SoftHSMv2 through its `.so`.
    pub softhsm: Cell,
    /// The backend crates called directly (the one the module uses for
    /// the row: RustCrypto, or aws-lc-rs for the RSA and ECDSA rows).
    pub raw: Cell,
    /// Which crates the raw column called ("RustCrypto" or "aws-lc-rs").
    pub raw_backend: Option<String>,
    /// FerroHSM ops/s ÷ SoftHSMv2 ops/s (above 1: FerroHSM is faster).
    pub ratio_ferrohsm_softhsm: Option<f64>,
    /// FerroHSM ops/s ÷ raw-crate ops/s (the share of the pure-Rust floor reached).
    pub ratio_ferrohsm_raw: Option<f64>,
}

impl RowResult {
    /// Builds a row and computes its ratios.
    pub fn new(
        id: String,
        title: String,
        threads: usize,
        ferrohsm: Cell,
        softhsm: Cell,
        raw: Cell,
    ) -> RowResult {
        let f = ferrohsm.ops_per_sec();
        RowResult {
            ratio_ferrohsm_softhsm: ratio(f, softhsm.ops_per_sec()),
            ratio_ferrohsm_raw: ratio(f, raw.ops_per_sec()),
            id,
            title,
            threads,
            ferrohsm,
            softhsm,
            raw,
            raw_backend: None,
        }
    }

    /// The cells in [`COLUMNS`] order.
    pub fn cells(&self) -> [&Cell; 3] {
        [&self.ferrohsm, &self.softhsm, &self.raw]
    }
}

/// A loaded module, for the report header.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleInfo {
    /// "ferrohsm" or "softhsm".
    pub key: String,
    /// Path of the shared library.
    pub path: String,
    /// `C_GetInfo` description and version.
    pub description: String,
}

/// Where and when the run happened.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Logical CPUs available.
    pub nproc: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads the current machine's description.
    pub fn current() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string());
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |s| s.trim().to_string()),
        }
    }
}

/// The whole run, as written by `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// UTC date and time the run started, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// The machine.
    pub machine: Machine,
    /// Seconds each row ran per column.
    pub seconds_per_row: f64,
    /// The modules measured.
    pub modules: Vec<ModuleInfo>,
    /// One entry per row.
    pub rows: Vec<RowResult>,
    /// Remarks printed under the table.
    pub notes: Vec<String>,
}

impl Report {
    /// The results table, as aligned Markdown.
    pub fn table(&self) -> String {
        let mut header = vec!["operation".to_string(), "thr".to_string()];
        for (_, name) in COLUMNS {
            header.extend([format!("{name} ops/s"), "p50".into(), "p99".into()]);
        }
        header.extend([
            "F/SoftHSM".to_string(),
            "F/raw".to_string(),
            "raw by".to_string(),
        ]);
        let mut lines: Vec<Vec<String>> = vec![header];
        for r in &self.rows {
            let mut line = vec![r.title.clone(), r.threads.to_string()];
            for c in r.cells() {
                match c {
                    Cell::Ok(s) => line.extend([
                        fmt_rate(s.ops_per_sec),
                        fmt_latency(s.p50_ns),
                        fmt_latency(s.p99_ns),
                    ]),
                    Cell::Skipped { .. } => line.extend(["skip".into(), "–".into(), "–".into()]),
                    Cell::NotApplicable => line.extend(["n/a".into(), "–".into(), "–".into()]),
                    Cell::Failed { .. } => line.extend(["FAILED".into(), "–".into(), "–".into()]),
                }
            }
            line.extend([
                fmt_ratio(r.ratio_ferrohsm_softhsm),
                fmt_ratio(r.ratio_ferrohsm_raw),
                r.raw_backend.clone().unwrap_or_else(|| "–".into()),
            ]);
            lines.push(line);
        }
        let ncol = lines[0].len();
        let widths: Vec<usize> = (0..ncol)
            .map(|i| {
                lines
                    .iter()
                    .map(|l| l[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for (n, l) in lines.iter().enumerate() {
            out.push('|');
            for (i, cell) in l.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                if i == 0 {
                    out.push_str(&format!(" {cell}{} |", " ".repeat(pad)));
                } else {
                    out.push_str(&format!(" {}{cell} |", " ".repeat(pad)));
                }
            }
            out.push('\n');
            if n == 0 {
                out.push('|');
                for (i, w) in widths.iter().enumerate() {
                    let dashes = "-".repeat(*w);
                    out.push_str(&if i == 0 {
                        format!(" {dashes} |")
                    } else {
                        format!(" {dashes}:|")
                    });
                }
                out.push('\n');
            }
        }
        out
    }

    /// Why cells were skipped or failed, one line each.
    pub fn reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.rows {
            for ((_, name), c) in COLUMNS.iter().zip(r.cells()) {
                match c {
                    Cell::Skipped { reason } => out.push(format!(
                        "{} (x{}): skipped: {name} {reason}",
                        r.id, r.threads
                    )),
                    Cell::Failed { reason } => out.push(format!(
                        "{} (x{}): FAILED: {name}: {reason}",
                        r.id, r.threads
                    )),
                    Cell::Ok(_) | Cell::NotApplicable => {}
                }
            }
        }
        out
    }

    /// True when any cell failed.
    pub fn failed(&self) -> bool {
        self.rows
            .iter()
            .any(|r| r.cells().iter().any(|c| matches!(c, Cell::Failed { .. })))
    }
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
pub fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC` (the
/// store's one calendar).
pub fn format_utc(secs: u64) -> String {
    ferrohsm_store::time::format_minutes_utc(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(ops_per_sec: f64) -> Cell {
        Cell::Ok(Summary {
            ops: 10,
            seconds: 1.0,
            ops_per_sec,
            p50_ns: 1_000.0,
            p99_ns: 2_000.0,
            mean_ns: 1_100.0,
        })
    }

    #[test]
    fn row_ratios() {
        let r = RowResult::new("x".into(), "x".into(), 1, ok(500.0), ok(1000.0), ok(2000.0));
        assert_eq!(r.ratio_ferrohsm_softhsm, Some(0.5));
        assert_eq!(r.ratio_ferrohsm_raw, Some(0.25));
        let skip = Cell::Skipped {
            reason: "lacks CKM_AES_GCM".into(),
        };
        let r = RowResult::new("x".into(), "x".into(), 1, skip, ok(1000.0), ok(2000.0));
        assert_eq!(r.ratio_ferrohsm_softhsm, None);
        assert_eq!(r.ratio_ferrohsm_raw, None);
    }

    #[test]
    fn table_and_reasons() {
        let rep = Report {
            date: "d".into(),
            machine: Machine {
                nproc: 2,
                cpu: "c".into(),
                kernel: "k".into(),
            },
            seconds_per_row: 1.0,
            modules: vec![],
            rows: vec![RowResult::new(
                "gcm".into(),
                "AES-GCM".into(),
                1,
                Cell::Skipped {
                    reason: "lacks CKM_AES_GCM".into(),
                },
                ok(20_000.0),
                Cell::Failed {
                    reason: "bad".into(),
                },
            )],
            notes: vec![],
        };
        let t = rep.table();
        assert!(t.contains("| AES-GCM "), "{t}");
        assert!(t.contains("skip"));
        assert!(t.contains("20.0k"));
        assert_eq!(t.lines().count(), 3);
        assert_eq!(
            rep.reasons(),
            [
                "gcm (x1): skipped: FerroHSM lacks CKM_AES_GCM",
                "gcm (x1): FAILED: raw crate: bad"
            ]
        );
        assert!(rep.failed());
        let json = serde_json::to_value(&rep).unwrap();
        assert_eq!(json["rows"][0]["ferrohsm"]["status"], "skipped");
        assert_eq!(json["rows"][0]["softhsm"]["ops_per_sec"], 20_000.0);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(format_utc(4_107_542_400 + 3_660), "2100-03-01 01:01 UTC");
    }
}
