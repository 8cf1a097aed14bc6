//! The summary: a table for people, `--json` for scripts. Both carry the same numbers; a
//! value that was not measured is "n/a" (`null` in JSON), never an estimate.

use std::time::Duration;

use serde_json::{Value, json};

use super::run::{Measured, group};
use crate::cli::table::Table;

/// The bench environment, and whether it is gone.
#[derive(Debug, Clone)]
pub struct EnvOutcome {
    pub id: String,
    pub name: String,
    pub deleted: bool,
}

/// Everything a run reports.
#[derive(Debug)]
pub struct Report {
    pub server: Option<String>,
    pub server_pid: Option<u32>,
    /// Why the server's CPU is not reported, when it is not.
    pub server_cpu_note: Option<String>,
    pub clock_ticks_per_second: u64,
    pub clock_ticks_assumed: bool,
    pub concurrency: usize,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    pub pending: u64,
    pub environment: Option<EnvOutcome>,
    pub interrupted: bool,
    pub scenarios: Vec<Measured>,
}

/// A duration in milliseconds with about three significant digits.
fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v < 1.0 {
        format!("{v:.3}")
    } else if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        group(v.round() as u64)
    }
}

/// A rate or a per-operation cost: whole numbers grouped, small ones with one decimal.
fn amount(v: f64) -> String {
    if v >= 10.0 {
        group(v.round() as u64)
    } else {
        format!("{v:.1}")
    }
}

fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

fn errors_cell(m: &Measured) -> String {
    let total = m.tally.error_count();
    if total == 0 {
        return "0".to_owned();
    }
    let kinds: Vec<String> = m
        .tally
        .errors
        .iter()
        .map(|(kind, n)| format!("{kind} {}", group(*n)))
        .collect();
    format!("{} ({})", group(total), kinds.join(", "))
}

impl Report {
    pub fn table(&self) -> String {
        let mut t = Table::new([
            "SCENARIO",
            "OPS",
            "PER SEC",
            "P50 MS",
            "P90 MS",
            "P99 MS",
            "MAX MS",
            "SERVER CPU µs/OP",
            "BENCH CPU µs/OP",
            "ERRORS",
        ]);
        let na = || "n/a".to_owned();
        for m in &self.scenarios {
            let h = &m.tally.latency;
            let pct = |q: f64| h.percentile(q).map_or_else(na, ms);
            t.row([
                m.name.clone(),
                group(m.operations()),
                amount(m.per_second()),
                pct(0.5),
                pct(0.9),
                pct(0.99),
                h.max().map_or_else(na, ms),
                m.per_operation(m.cpu.server).map_or_else(na, amount),
                m.per_operation(m.cpu.bench).map_or_else(na, amount),
                errors_cell(m),
            ]);
        }
        let mut out = t.render();
        for m in &self.scenarios {
            if m.tally.pending_answers > 0 {
                out.push_str(&format!(
                    "{}: {} polls were answered authorization_pending (each made its flow wait an interval)\n",
                    m.name,
                    group(m.tally.pending_answers)
                ));
            }
        }
        if let Some(note) = &self.server_cpu_note {
            out.push_str(&format!("server CPU n/a: {note}\n"));
        }
        if self.clock_ticks_assumed {
            out.push_str(
                "CPU times assume 100 clock ticks per second (/proc/self/auxv was unreadable)\n",
            );
        }
        if self.interrupted {
            out.push_str("interrupted: the numbers cover the run until Ctrl-C\n");
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let scenarios: Vec<Value> = self.scenarios.iter().map(scenario_json).collect();
        json!({
            "server": self.server,
            "serverPid": self.server_pid,
            "serverCpuNote": self.server_cpu_note,
            "clockTicksPerSecond": self.clock_ticks_per_second,
            "clockTicksAssumed": self.clock_ticks_assumed,
            "concurrency": self.concurrency,
            "durationSeconds": self.duration.map(|d| d.as_secs()),
            "count": self.count,
            "pending": self.pending,
            "environment": self.environment.as_ref().map(|e| json!({
                "id": e.id,
                "name": e.name,
                "deleted": e.deleted,
            })),
            "interrupted": self.interrupted,
            "scenarios": scenarios,
        })
    }
}

fn scenario_json(m: &Measured) -> Value {
    let h = &m.tally.latency;
    let ms = |d: Option<Duration>| d.map(|d| round3(d.as_secs_f64() * 1e3));
    json!({
        "scenario": m.name,
        "operations": m.operations(),
        "elapsedSeconds": round3(m.elapsed.as_secs_f64()),
        "perSecond": round3(m.per_second()),
        "latencyMs": {
            "p50": ms(h.percentile(0.5)),
            "p90": ms(h.percentile(0.9)),
            "p99": ms(h.percentile(0.99)),
            "max": ms(h.max()),
        },
        "errors": m.tally.error_count(),
        "errorsByKind": m.tally.errors,
        "serverCpuUsPerOperation": m.per_operation(m.cpu.server).map(round3),
        "serverCpuNote": m.server_cpu_note,
        "benchCpuUsPerOperation": m.per_operation(m.cpu.bench).map(round3),
        "pendingAnswers": m.tally.pending_answers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::run::{CpuUse, Tally};

    fn measured() -> Measured {
        let mut tally = Tally::default();
        for ms in 1..=100 {
            tally.latency.record(Duration::from_millis(ms));
        }
        tally.errors.insert("slow_down".into(), 2);
        tally.errors.insert("HTTP 500".into(), 1);
        tally.pending_answers = 7;
        Measured {
            name: "flow".into(),
            tally,
            elapsed: Duration::from_secs(2),
            cpu: CpuUse {
                server: Some(Duration::from_millis(50)),
                bench: None,
            },
            server_cpu_note: None,
        }
    }

    fn report() -> Report {
        Report {
            server: Some("http://127.0.0.1:8080".into()),
            server_pid: Some(42),
            server_cpu_note: None,
            clock_ticks_per_second: 100,
            clock_ticks_assumed: false,
            concurrency: 64,
            duration: Some(Duration::from_secs(10)),
            count: None,
            pending: 1000,
            environment: Some(EnvOutcome {
                id: "E".into(),
                name: "assent-bench-00".into(),
                deleted: true,
            }),
            interrupted: false,
            scenarios: vec![measured()],
        }
    }

    #[test]
    fn the_table_has_one_row_per_scenario_with_every_column() {
        let text = report().table();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("SCENARIO") && lines[0].contains("P99 MS"),
            "{text}"
        );
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        // flow, 100 ops, 50/s, p50 50 ms (bucket top), …, 500 µs server CPU per op, bench n/a.
        assert_eq!(&row[..3], &["flow", "100", "50"], "{text}");
        assert_eq!(row[6], "100", "max is exact: {text}");
        assert_eq!(&row[7..9], &["500", "n/a"], "{text}");
        assert_eq!(
            &row[9..],
            &["3", "(HTTP", "500", "1,", "slow_down", "2)"],
            "{text}"
        );
        assert!(
            text.contains("7 polls were answered authorization_pending"),
            "{text}"
        );
    }

    #[test]
    fn json_carries_the_same_numbers_and_nulls_for_what_was_not_measured() {
        let v = report().to_json();
        let s = &v["scenarios"][0];
        assert_eq!(s["scenario"], "flow");
        assert_eq!(s["operations"], 100);
        assert_eq!(s["perSecond"], 50.0);
        assert_eq!(s["errors"], 3);
        assert_eq!(s["errorsByKind"]["slow_down"], 2);
        assert_eq!(s["latencyMs"]["max"], 100.0);
        let p99 = s["latencyMs"]["p99"].as_f64().unwrap();
        assert!((99.0..=100.0).contains(&p99), "{p99}");
        assert_eq!(s["serverCpuUsPerOperation"], 500.0);
        assert_eq!(s["benchCpuUsPerOperation"], Value::Null);
        assert_eq!(v["environment"]["deleted"], true);
        assert_eq!(v["serverPid"], 42);
    }

    #[test]
    fn durations_read_in_milliseconds() {
        assert_eq!(ms(Duration::from_micros(25)), "0.025");
        assert_eq!(ms(Duration::from_micros(2_500)), "2.50");
        assert_eq!(ms(Duration::from_micros(25_000)), "25.0");
        assert_eq!(ms(Duration::from_secs(2)), "2,000");
        assert_eq!(amount(4.44), "4.4");
        assert_eq!(amount(2876.6), "2,877");
    }
}
