//! Progress and reporting: what a long batch job tells its operator.
//!
//! On a terminal each task (a collection, a table) gets an `indicatif` bar with rows, rows/s,
//! MB/s and ETA. When stderr is not a terminal (batch jobs, CI logs) the bars are hidden and a
//! ticker prints one line per active task every few seconds instead. `--quiet` silences both.
//! At the end every command prints a summary table and, with `--report-json`, writes it as JSON.
//! Nothing here ever prints a row value, a password or an API key.

use std::collections::BTreeMap;
use std::fmt::Write as FmtWrite;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;

/// How often the non-terminal ticker prints: often enough to show a job is alive, rarely
/// enough not to flood a log.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Output options shared by every command.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct OutputArgs {
    /// Print nothing but errors and the final summary.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Also say how this process shares its work with the run's other processes (which it
    /// planned, which units another worker took), even when it runs alone.
    #[arg(long, short = 'v', global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "FILE", global = true)]
    pub report_json: Option<PathBuf>,
}

/// The console of one command run: bars or log lines, and the tasks that feed the summary.
pub struct Ui {
    quiet: bool,
    verbose: bool,
    bars: Option<MultiProgress>,
    tasks: Mutex<Vec<Arc<Task>>>,
    /// Findings a command adds to its JSON report beside the tasks.
    extra: Mutex<BTreeMap<String, serde_json::Value>>,
    started: Instant,
    ticker_stop: Arc<AtomicBool>,
}

/// What a task counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Points or rows moved (export, import, migrate, verify).
    Rows,
    /// Indexes built (index).
    Indexes,
}

impl Unit {
    fn word(self) -> &'static str {
        match self {
            Unit::Rows => "rows",
            Unit::Indexes => "indexes",
        }
    }
}

/// One unit of reporting (a collection being exported, a table being loaded, an index built).
pub struct Task {
    pub name: String,
    unit: Unit,
    total: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
    files: AtomicU64,
    started: Instant,
    finished: Mutex<Option<(Instant, String)>>,
    bar: Option<ProgressBar>,
}

impl Ui {
    pub fn new(args: &OutputArgs) -> Arc<Ui> {
        let terminal = std::io::stderr().is_terminal();
        let bars = (!args.quiet && terminal)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let ui = Arc::new(Ui {
            quiet: args.quiet,
            verbose: args.verbose,
            bars,
            tasks: Mutex::new(Vec::new()),
            extra: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
            ticker_stop: Arc::new(AtomicBool::new(false)),
        });
        if !args.quiet && !terminal {
            Ui::spawn_ticker(&ui);
        }
        ui
    }

    fn spawn_ticker(ui: &Arc<Ui>) {
        let weak = Arc::downgrade(ui);
        let stop = Arc::clone(&ui.ticker_stop);
        std::thread::spawn(move || {
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() < LOG_INTERVAL {
                    continue;
                }
                last = Instant::now();
                let Some(ui) = weak.upgrade() else { return };
                for task in ui.tasks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    if task
                        .finished
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_none()
                    {
                        eprintln!("{}", task.status_line());
                    }
                }
            }
        });
    }

    /// Starts a task counting rows; `total` is the expected row count when known.
    pub fn task(&self, name: &str, total: Option<u64>) -> Arc<Task> {
        self.task_of(name, total, Unit::Rows)
    }

    /// Starts a task counting `unit`s; `total` is the expected count when known.
    pub fn task_of(&self, name: &str, total: Option<u64>, unit: Unit) -> Arc<Task> {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new(total.unwrap_or(0)));
            let template = format!(
                "{{prefix:>20.bold}} [{{bar:30}}] {{pos}}/{{len}} {} {{rate}} {{msg}} ETA {{eta}}",
                unit.word()
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                // indicatif's own {per_sec} prints `8,763.8559/s`: a rate reads rounded.
                let style =
                    style.with_key("rate", |state: &ProgressState, w: &mut dyn FmtWrite| {
                        let _ = write!(w, "{}/s", rounded_rate(state.per_sec()));
                    });
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(name.to_owned());
            bar
        });
        let task = Arc::new(Task {
            name: name.to_owned(),
            unit,
            total: AtomicU64::new(total.unwrap_or(0)),
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            started: Instant::now(),
            finished: Mutex::new(None),
            bar,
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&task));
        task
    }

    /// Adds `value` to the JSON report under `key` (what a command found beyond its tasks).
    pub fn record(&self, key: &str, value: serde_json::Value) {
        self.extra
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), value);
    }

    /// An informational line (suppressed by `--quiet`).
    pub fn info(&self, message: &str) {
        if !self.quiet {
            self.println(message);
        }
    }

    /// A line on how the work is shared between processes, which matters to a user when the
    /// run really has several (`several`) and otherwise only under `--verbose`.
    pub fn sharing(&self, several: bool, message: &str) {
        if several || self.verbose {
            self.info(message);
        }
    }

    /// A warning: always printed.
    pub fn warn(&self, message: &str) {
        self.println(&format!("warning: {message}"));
    }

    fn println(&self, line: &str) {
        match &self.bars {
            Some(bars) => bars.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Prints the summary table to stdout and writes the JSON report if asked.
    pub fn finish(&self, command: &str, args: &OutputArgs) -> std::io::Result<()> {
        self.ticker_stop.store(true, Ordering::Relaxed);
        let report = self.report(command);
        writeln!(std::io::stdout().lock(), "{}", report.table())?;
        Self::write_report(&report, args)
    }

    /// For commands whose stdout is their result (`plan`, `index --dry-run`): no summary
    /// table, only the JSON report if asked.
    pub fn finish_quietly(&self, command: &str, args: &OutputArgs) -> std::io::Result<()> {
        self.ticker_stop.store(true, Ordering::Relaxed);
        Self::write_report(&self.report(command), args)
    }

    fn write_report(report: &Report, args: &OutputArgs) -> std::io::Result<()> {
        if let Some(path) = &args.report_json {
            let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
            std::fs::write(path, json)?;
        }
        Ok(())
    }

    pub fn report(&self, command: &str) -> Report {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        Report {
            command: command.to_owned(),
            seconds: self.started.elapsed().as_secs_f64(),
            tasks: tasks.iter().map(|t| t.report()).collect(),
            extra: self.extra.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

/// The collections a run could not finish, each with its reason: a run finishes every other
/// collection, then fails naming these.
#[derive(Default)]
pub struct Failed(Vec<(String, anyhow::Error)>);

impl Failed {
    /// Records `name` as failed (its task, when it has one, ends as `FAILED`).
    pub fn add(&mut self, name: &str, task: Option<&Task>, error: anyhow::Error) {
        if let Some(task) = task {
            task.finish("FAILED");
        }
        self.0.push((name.to_owned(), error));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// `Ok` when nothing failed; else one error naming each failed collection with its reason
    /// (`doing`: what could not be done, `then`: what a re-run does).
    pub fn into_result(self, of: usize, doing: &str, then: &str) -> anyhow::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut message = format!(
            "{} of {of} collection(s) could not be {doing}; {then}:",
            self.0.len()
        );
        for (name, error) in &self.0 {
            message.push_str(&format!("\n  - {name}: {error:#}"));
        }
        Err(anyhow::anyhow!(message))
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Task {
    /// Counts rows and bytes that have been made durable (written, committed).
    pub fn add(&self, rows: u64, bytes: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        let total_bytes = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(bar) = &self.bar {
            bar.inc(rows);
            let secs = self.started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{:.1} MB/s", total_bytes as f64 / 1e6 / secs));
        }
    }

    /// Rows already done before this run (resume): counted towards the bar, not the rate.
    pub fn add_done_before(&self, rows: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(rows);
            bar.reset_eta();
        }
    }

    pub fn add_file(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// Marks the task done with an outcome word for the summary (`ok`, `skipped`, `FAILED`…).
    pub fn finish(&self, outcome: &str) {
        *self.finished.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), outcome.to_owned()));
        if let Some(bar) = &self.bar {
            bar.finish_with_message(outcome.to_owned());
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    fn status_line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let rows = self.rows.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let unit = self.unit.word();
        format!(
            "{}: {rows}/{} {unit}, {} {unit}/s, {:.1} MB/s",
            self.name,
            self.total.load(Ordering::Relaxed),
            rounded_rate(rows as f64 / secs),
            bytes as f64 / 1e6 / secs
        )
    }

    fn report(&self) -> TaskReport {
        let finished = self
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let end = finished.as_ref().map_or_else(Instant::now, |(at, _)| *at);
        let seconds = end.duration_since(self.started).as_secs_f64();
        let rows = self.rows.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        TaskReport {
            name: self.name.clone(),
            unit: self.unit,
            outcome: finished.map_or_else(|| "unfinished".to_owned(), |(_, o)| o),
            rows,
            bytes,
            files: self.files.load(Ordering::Relaxed),
            seconds,
            rows_per_second: rows as f64 / seconds.max(1e-9),
            megabytes_per_second: bytes as f64 / 1e6 / seconds.max(1e-9),
        }
    }
}

/// The summary of one command run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub seconds: f64,
    pub tasks: Vec<TaskReport>,
    /// What the command found beyond its tasks (`verify --search`: recall per vector).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The summary of one task.
#[derive(Clone, Debug, Serialize)]
pub struct TaskReport {
    pub name: String,
    /// What `rows` and `rows_per_second` count.
    pub unit: Unit,
    pub outcome: String,
    pub rows: u64,
    pub bytes: u64,
    pub files: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    pub megabytes_per_second: f64,
}

impl Report {
    /// A plain-text table, one line per task and a total. Index builds move no rows: their
    /// table says which index took how long. A command's table has only the columns it fills
    /// ([`Columns::of`]): no MB where nothing moved, no files where none were written.
    pub fn table(&self) -> String {
        let width = self
            .tasks
            .iter()
            .map(|t| t.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(10);
        let outcome = self
            .tasks
            .iter()
            .map(|t| t.outcome.chars().count())
            .max()
            .unwrap_or(0)
            .max(8);
        if self.tasks.iter().all(|t| t.unit == Unit::Indexes) {
            let mut out = format!(
                "{:<width$}  {:>outcome$}  {:>8}\n",
                "index", "outcome", "seconds"
            );
            for t in &self.tasks {
                out.push_str(&format!(
                    "{:<width$}  {:>outcome$}  {:>8.2}\n",
                    t.name, t.outcome, t.seconds
                ));
            }
            let built = self.tasks.iter().filter(|t| t.outcome == "ok").count();
            out.push_str(&format!(
                "qdrant2pg {}: {built} of {} index(es) built in {:.2} s",
                self.command,
                self.tasks.len(),
                self.seconds
            ));
            return out;
        }
        let columns = Columns::of(&self.command);
        let mut out = format!(
            "{:<width$}  {:>outcome$}  {:>12}",
            "name", "outcome", "rows"
        );
        if columns.bytes {
            out.push_str(&format!("  {:>10}", "MB"));
        }
        if columns.files {
            out.push_str(&format!("  {:>6}", "files"));
        }
        out.push_str(&format!("  {:>8}  {:>12}", "seconds", "rows/s"));
        if columns.bytes {
            out.push_str(&format!("  {:>8}", "MB/s"));
        }
        out.push('\n');
        for t in &self.tasks {
            out.push_str(&format!(
                "{:<width$}  {:>outcome$}  {:>12}",
                t.name, t.outcome, t.rows
            ));
            if columns.bytes {
                out.push_str(&format!("  {:>10.1}", t.bytes as f64 / 1e6));
            }
            if columns.files {
                out.push_str(&format!("  {:>6}", t.files));
            }
            out.push_str(&format!(
                "  {:>8.2}  {:>12}",
                t.seconds,
                rounded_rate(t.rows_per_second)
            ));
            if columns.bytes {
                out.push_str(&format!("  {:>8.1}", t.megabytes_per_second));
            }
            out.push('\n');
        }
        let rows: u64 = self.tasks.iter().map(|t| t.rows).sum();
        let bytes: u64 = self.tasks.iter().map(|t| t.bytes).sum();
        let moved = if columns.bytes {
            format!(", {:.1} MB", bytes as f64 / 1e6)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "qdrant2pg {}: {rows} rows{moved} in {:.2} s ({} rows/s)",
            self.command,
            self.seconds,
            rounded_rate(rows as f64 / self.seconds.max(1e-9))
        ));
        out
    }
}

/// The columns of a row-counting summary beyond rows and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Columns {
    /// Bytes moved: export writes them, import and migrate load them.
    bytes: bool,
    /// Files: export writes them, import loads them; migrate goes without.
    files: bool,
}

impl Columns {
    /// By the command's first word: `verify` and `generate` move nothing into a target (their
    /// byte counts would read 0.0 MB), and only export and import deal in files.
    fn of(command: &str) -> Columns {
        match command.split_whitespace().next().unwrap_or_default() {
            "export" | "import" => Columns {
                bytes: true,
                files: true,
            },
            "migrate" => Columns {
                bytes: true,
                files: false,
            },
            _ => Columns {
                bytes: false,
                files: false,
            },
        }
    }
}

/// A rate as people read one: whole units, with three significant digits below 100
/// (`12345`, `87.3`, `0.512`), never `8,763.8559`.
fn rounded_rate(rate: f64) -> String {
    if !rate.is_finite() {
        "-".to_owned()
    } else if rate >= 100.0 {
        format!("{rate:.0}")
    } else if rate >= 10.0 {
        format!("{rate:.1}")
    } else if rate >= 1.0 {
        format!("{rate:.2}")
    } else {
        format!("{rate:.3}")
    }
}

/// An error and its causes, `: `-separated (what `{:#}` prints for anyhow errors).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cause = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_rounded() {
        assert_eq!(rounded_rate(8763.8559), "8764");
        assert_eq!(rounded_rate(87.349), "87.3");
        assert_eq!(rounded_rate(1.5), "1.50");
        assert_eq!(rounded_rate(0.5123), "0.512");
        assert_eq!(rounded_rate(0.0), "0.000");
    }

    #[test]
    fn an_index_report_speaks_of_indexes() {
        let report = Report {
            command: "index".into(),
            seconds: 2.5,
            extra: BTreeMap::new(),
            tasks: vec![TaskReport {
                name: "t_vector_idx".into(),
                unit: Unit::Indexes,
                outcome: "ok".into(),
                rows: 1,
                bytes: 0,
                files: 0,
                seconds: 2.0,
                rows_per_second: 0.5,
                megabytes_per_second: 0.0,
            }],
        };
        let table = report.table();
        assert!(table.contains("1 of 1 index(es) built"), "{table}");
        assert!(!table.contains("rows"), "{table}");
    }

    fn rows_report(command: &str, outcome: &str) -> Report {
        Report {
            command: command.into(),
            seconds: 1.0,
            extra: BTreeMap::new(),
            tasks: vec![TaskReport {
                name: "docs".into(),
                unit: Unit::Rows,
                outcome: outcome.into(),
                rows: 1000,
                bytes: 2_500_000,
                files: 3,
                seconds: 1.0,
                rows_per_second: 1000.0,
                megabytes_per_second: 2.5,
            }],
        }
    }

    #[test]
    fn each_table_has_the_columns_its_command_fills() {
        let header = |command: &str| {
            let table = rows_report(command, "ok").table();
            table.lines().next().unwrap_or_default().to_owned()
        };
        for (command, mb, files) in [
            ("export", true, true),
            ("import", true, true),
            ("migrate", true, false),
            ("verify", false, false),
            ("generate", false, false),
        ] {
            let header = header(command);
            assert_eq!(header.contains("MB"), mb, "{command}: {header}");
            assert_eq!(header.contains("files"), files, "{command}: {header}");
        }
        let verify = rows_report("verify", "ok").table();
        assert!(
            verify.ends_with("qdrant2pg verify: 1000 rows in 1.00 s (1000 rows/s)"),
            "{verify}"
        );
    }

    #[test]
    fn a_long_outcome_keeps_the_columns_aligned() {
        let table = rows_report("verify", "LOW RECALL").table();
        let lines: Vec<&str> = table.lines().collect();
        // "rows" and "1000" are both right-aligned in one column.
        assert_eq!(lines[0].find("rows"), lines[1].find("1000"), "{table}");
        assert!(lines[1].contains("LOW RECALL"), "{table}");
    }
}
