//! `loadgen summarize raw.jsonl`: Markdown tables from the raw results.
//!
//! Each line of raw.jsonl is one scenario result with `case`, `target` and
//! `run`. For every case the headline metric is reported as the median over
//! runs per target, and every comparison is a ratio taken within the same
//! run (target / floor, shardcast / peer, cluster2 / shardcast, shardcast2 /
//! shardcast) whose median is reported.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// case -> (target rank, target) -> run -> result
type ByCase = BTreeMap<String, BTreeMap<(usize, String), Runs>>;
/// run -> result
type Runs = BTreeMap<u64, Value>;

/// (JSON path of the headline metric, label, higher is better).
fn headline(v: &Value) -> (&'static str, &'static str, bool) {
    match v["scenario"].as_str().unwrap_or("") {
        "fanout" if v["params"]["rate"] == "max" => ("deliveries_per_s", "deliveries/s", true),
        "fanout" => ("latency_ms.p99", "p99 latency ms", false),
        "connections" => (
            "rss_kib_per_connection",
            "resident KiB per connection",
            false,
        ),
        "trigger" => ("requests_per_s", "HTTP triggers/s", true),
        "churn" => ("connections_per_s", "connection cycles/s", true),
        _ => ("", "", true),
    }
}

fn get(v: &Value, path: &str) -> Option<f64> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    cur.as_f64()
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 100_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if a >= 10_000.0 {
        format!("{:.1}k", x / 1000.0)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn target_rank(t: &str) -> (usize, String) {
    let r = match t {
        "shardcast" => 0,
        "cluster2" | "shardcast2" => 1,
        "floor" => 2,
        "soketi" => 3,
        "sockudo" => 4,
        _ => 5,
    };
    (r, t.to_string())
}

/// Median over the runs both have of `metric` in `a` / `metric` in `b`.
fn run_ratio(a: &Runs, b: &Runs, metric: &str) -> Option<f64> {
    median(
        a.iter()
            .filter_map(|(run, r)| {
                let x = get(r, metric)?;
                let y = get(b.get(run)?, metric)?;
                (y != 0.0).then_some(x / y)
            })
            .collect(),
    )
}

/// A table of `mine` / each of `others`, per case (`intro` above it).
fn ratio_table(
    md: &mut String,
    by: &ByCase,
    case_order: &[String],
    mine: &(usize, String),
    others: &[&(usize, String)],
    intro: &str,
) {
    let _ = writeln!(md, "\n{intro}\n");
    let _ = write!(md, "| case |");
    for (_, t) in others {
        let _ = write!(md, " {} / {t} |", mine.1);
    }
    let _ = writeln!(md);
    let _ = write!(md, "|---|");
    for _ in others {
        let _ = write!(md, "---|");
    }
    let _ = writeln!(md);
    for case in case_order {
        let per_target = &by[case];
        let Some(mine_runs) = per_target.get(mine) else {
            continue;
        };
        let Some(sample) = mine_runs.values().next() else {
            continue;
        };
        let (metric, _, _) = headline(sample);
        let _ = write!(md, "| {case} |");
        for o in others {
            let r = per_target
                .get(*o)
                .and_then(|theirs| run_ratio(mine_runs, theirs, metric));
            let _ = write!(md, " {} |", r.map_or("-".into(), |r| format!("{r:.2}")));
        }
        let _ = writeln!(md);
    }
}

pub fn summarize(path: &std::path::Path, note: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let rows: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // case -> target -> run -> result
    let mut by: ByCase = BTreeMap::new();
    let mut case_order: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    for r in rows {
        let case = r["case"].as_str().unwrap_or("?").to_string();
        let target = r["target"].as_str().unwrap_or("?").to_string();
        let run = r["run"].as_u64().unwrap_or(0);
        if let Some(e) = r.get("error") {
            errors.push(format!("{case} / {target} / run {run}: {e}"));
            continue;
        }
        if !case_order.contains(&case) {
            case_order.push(case.clone());
        }
        by.entry(case)
            .or_default()
            .entry(target_rank(&target))
            .or_default()
            .insert(run, r);
    }
    let targets: BTreeSet<(usize, String)> = by.values().flat_map(|m| m.keys().cloned()).collect();
    let runs: BTreeSet<u64> = by
        .values()
        .flat_map(|m| m.values().flat_map(|r| r.keys().cloned()))
        .collect();

    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark results\n");
    if !note.is_empty() {
        let _ = writeln!(md, "{note}\n");
    }
    let _ = writeln!(
        md,
        "Medians over {} run(s). A ratio is computed within each run and its median is shown; \
         `×floor` is target / floor (the raw floor writes each delivery with one `send`, no protocol \
         logic). For throughput higher is better, for latency and memory lower is better.\n",
        runs.len()
    );
    // Headline table.
    let _ = write!(md, "| case | metric |");
    for (_, t) in &targets {
        let _ = write!(md, " {t} |");
    }
    let _ = writeln!(md);
    let _ = write!(md, "|---|---|");
    for _ in &targets {
        let _ = write!(md, "---|");
    }
    let _ = writeln!(md);
    for case in &case_order {
        let per_target = &by[case];
        let Some(sample) = per_target.values().flat_map(|r| r.values()).next() else {
            continue;
        };
        let (metric, label, _) = headline(sample);
        let _ = write!(md, "| {case} | {label} |");
        let floor_key = target_rank("floor");
        for tk in &targets {
            let Some(results) = per_target.get(tk) else {
                let _ = write!(md, " - |");
                continue;
            };
            let med = median(results.values().filter_map(|r| get(r, metric)).collect());
            let ratio = if tk.1 != "floor" {
                per_target
                    .get(&floor_key)
                    .and_then(|floor| run_ratio(results, floor, metric))
            } else {
                None
            };
            match (med, ratio) {
                (Some(m), Some(r)) => {
                    let _ = write!(md, " {} ({:.2}×floor) |", fmt_num(m), r);
                }
                (Some(m), None) => {
                    let _ = write!(md, " {} |", fmt_num(m));
                }
                _ => {
                    let _ = write!(md, " ? |");
                }
            }
        }
        let _ = writeln!(md);
    }
    // shardcast against each other server, and a two-node cluster against one node.
    let sc = target_rank("shardcast");
    let cluster = target_rank("cluster2");
    let sharded = target_rank("shardcast2");
    let others: Vec<&(usize, String)> = targets
        .iter()
        .filter(|t| **t != sc && **t != cluster && **t != sharded)
        .collect();
    if targets.contains(&sc) && !others.is_empty() {
        ratio_table(
            &mut md,
            &by,
            &case_order,
            &sc,
            &others,
            "shardcast / other, per-run ratio of the headline metric (median; > 1 is better for \
             shardcast on throughput, < 1 is better on latency and memory):",
        );
    }
    if targets.contains(&sc) && targets.contains(&cluster) {
        ratio_table(
            &mut md,
            &by,
            &case_order,
            &cluster,
            &[&sc],
            "cluster2 (two shardcast nodes and Redis sharing the server CPU, subscribers split \
             over both, triggers to one) / shardcast (one node), per-run ratio of the headline \
             metric (median; the cost of clustering: 1 would be free):",
        );
    }
    if targets.contains(&sc) && targets.contains(&sharded) {
        ratio_table(
            &mut md,
            &by,
            &case_order,
            &sharded,
            &[&sc],
            "shardcast2 (two shards sharing the server CPU) / shardcast (one shard on it), \
             per-run ratio of the headline metric (median; the sharding overhead: 1 would be \
             free; goals: trigger, nobody subscribed, >= 0.9; fan-out >= 0.95):",
        );
    }
    // Details.
    let _ = writeln!(md, "\nDetails (medians):\n");
    let _ = writeln!(
        md,
        "| case | target | headline | loss % | p50 ms | p99 ms | p99.9 ms | max ms | failures | server CPU % | loadgen CPU % |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for case in &case_order {
        for (tk, results) in &by[case] {
            let Some(sample) = results.values().next() else {
                continue;
            };
            let (metric, _, _) = headline(sample);
            let m = |p: &str| -> String {
                median(results.values().filter_map(|r| get(r, p)).collect())
                    .map_or("-".into(), fmt_num)
            };
            let lat = if sample["scenario"] == "connections" {
                "open_latency_ms"
            } else {
                "latency_ms"
            };
            let failures = median(
                results
                    .values()
                    .map(|r| {
                        [
                            "events_failed",
                            "subscribe_failed",
                            "failed",
                            "requests_failed",
                            "cycle_failures",
                            "subscribers_dropped",
                        ]
                        .iter()
                        .filter_map(|k| r[*k].as_f64())
                        .sum()
                    })
                    .collect(),
            )
            .unwrap_or(0.0);
            let _ = writeln!(
                md,
                "| {case} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                tk.1,
                m(metric),
                m("loss_pct"),
                m(&format!("{lat}.p50")),
                m(&format!("{lat}.p99")),
                m(&format!("{lat}.p999")),
                m(&format!("{lat}.max")),
                fmt_num(failures),
                m("server_cpu_pct"),
                m("loadgen_cpu_pct"),
            );
        }
    }
    per_node_table(&mut md, &by, &case_order);
    if !errors.is_empty() {
        let _ = writeln!(md, "\nRuns that failed:\n");
        for e in errors {
            let _ = writeln!(md, "- {e}");
        }
    }
    Ok(md)
}

/// Subscribers spread over several servers (`servers` in the result): loss
/// and latency per server, medians over the runs.
fn per_node_table(md: &mut String, by: &ByCase, case_order: &[String]) {
    let mut header = false;
    for case in case_order {
        for (tk, results) in &by[case] {
            let Some(sample) = results.values().next() else {
                continue;
            };
            let Some(nodes) = sample["servers"].as_array() else {
                continue;
            };
            if !header {
                header = true;
                let _ = writeln!(
                    md,
                    "\nPer node (subscribers spread round-robin; `triggers` marks the node the \
                     publishers post to; medians):\n"
                );
                let _ = writeln!(
                    md,
                    "| case | target | node | subscribed | loss % | p50 ms | p99 ms | max ms |"
                );
                let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
            }
            for i in 0..nodes.len() {
                let m = |f: &dyn Fn(&Value) -> Option<f64>| -> String {
                    median(
                        results
                            .values()
                            .filter_map(|r| f(&r["servers"][i]))
                            .collect(),
                    )
                    .map_or("-".into(), fmt_num)
                };
                let loss = m(&|n| {
                    let e = n["deliveries_expected"].as_f64()?;
                    let r = n["deliveries_received"].as_f64()?;
                    Some(if e > 0.0 { (e - r) * 100.0 / e } else { 0.0 })
                });
                let role = if nodes[i]["url"] == sample["url"] {
                    " (triggers)"
                } else {
                    ""
                };
                let _ = writeln!(
                    md,
                    "| {case} | {} | {}{role} | {} | {} | {} | {} | {} |",
                    tk.1,
                    i + 1,
                    m(&|n| n["subscribed"].as_f64()),
                    loss,
                    m(&|n| get(n, "latency_ms.p50")),
                    m(&|n| get(n, "latency_ms.p99")),
                    m(&|n| get(n, "latency_ms.max")),
                );
            }
        }
    }
}
