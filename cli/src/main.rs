//! `pg-migration-guard check [--dsn URL] [--reporter text|json|gcc|github] FILE...`
//!
//! Sends the migration files, in the order given (a directory: its `*.sql` files in name
//! order), as one script to `pg_migration_guard.check()` on a server (a primary or a hot
//! standby), inside a read-only transaction, and reports every statement that would be
//! rejected or warned about, or that the server could not judge (`unknown`).
//!
//! Exit status: 0 when no statement would be rejected, 1 when one would (or the script does
//! not parse), 2 on a usage error, an unreadable file or a connection error.
//! docs/check.md describes the reporters.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use postgres::error::{ErrorPosition, SqlState};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "pg-migration-guard", version, about = "Checks migrations against a PostgreSQL server with pg_migration_guard")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Judge migration files with pg_migration_guard.check() without running them.
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// Connection string: a postgresql:// URL or libpq key=value pairs. Default: the
    /// PG_MIGRATION_GUARD_DSN environment variable, then DATABASE_URL.
    #[arg(long, env = "PG_MIGRATION_GUARD_DSN")]
    dsn: Option<String>,
    /// How to report: text (ERROR/DETAIL/HINT like the server's), json, gcc
    /// (file:line:col: error: rule: message) or github (GitHub Actions annotations).
    #[arg(long, value_enum, default_value_t = Reporter::Text)]
    reporter: Reporter,
    /// Migration files, checked as one migration in this order; a directory stands for its
    /// *.sql files in name order.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Reporter {
    Text,
    Json,
    Gcc,
    Github,
}

/// A usage, file or connection error: exit status 2.
struct Fatal(String);

/// One file's place in the combined script.
struct Span {
    path: String,
    /// The 1-based line of the script where it starts.
    line: usize,
}

/// The files joined into one script: each followed by a line with a lone `;`, so that a
/// last statement without its semicolon does not run into the next file (an empty
/// statement is nothing to PostgreSQL).
struct Script {
    text: String,
    spans: Vec<Span>,
}

fn read_files(paths: &[PathBuf]) -> Result<Script, Fatal> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| Fatal(format!("cannot read directory {}: {e}", p.display())))?;
            let mut sql: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "sql") && f.is_file())
                .collect();
            sql.sort();
            files.extend(sql);
        } else {
            files.push(p.clone());
        }
    }
    let mut script = Script { text: String::new(), spans: Vec::new() };
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| Fatal(format!("cannot read {}: {e}", f.display())))?;
        let line = script.text.matches('\n').count() + 1;
        script.spans.push(Span { path: f.display().to_string(), line });
        script.text.push_str(&text);
        script.text.push_str(if text.ends_with('\n') { ";\n" } else { "\n;\n" });
    }
    Ok(script)
}

impl Script {
    /// The file and its own line for a line of the script.
    fn locate(&self, line: usize) -> (&str, usize) {
        let span = self.spans.iter().rev().find(|s| s.line <= line).unwrap_or(&self.spans[0]);
        (&span.path, line - span.line + 1)
    }

    /// The server's reasons name earlier statements by their line in the script ("the
    /// statement at line 45"): names them by file and line instead ("at 0007_x.sql:3").
    fn place_lines(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find("at line ") {
            let (before, after) = rest.split_at(at);
            out.push_str(before);
            let digits: String = after["at line ".len()..].chars().take_while(char::is_ascii_digit).collect();
            match digits.parse::<usize>() {
                Ok(line) if self.spans.len() > 1 => {
                    let (file, line) = self.locate(line);
                    out.push_str(&format!("at {file}:{line}"));
                }
                _ => out.push_str(&after[.."at line ".len() + digits.len()]),
            }
            rest = &after["at line ".len() + digits.len()..];
        }
        out.push_str(rest);
        out
    }

    /// Line and column (1-based, characters) of a 1-based character position.
    fn position(&self, char_pos: usize) -> (usize, usize) {
        let byte = self.text.char_indices().nth(char_pos.saturating_sub(1)).map_or(self.text.len(), |(b, _)| b);
        let before = &self.text[..byte];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// One statement's judgement, placed in its file.
struct Finding {
    file: String,
    line: usize,
    col: usize,
    statement_no: i32,
    statement: String,
    command_tag: String,
    decision: String,
    rules: Vec<String>,
    sqlstate: Option<String>,
    message: Option<String>,
    detail: Option<String>,
    hint: Option<String>,
    locks: Value,
    sizes: Value,
}

impl Finding {
    fn reported(&self) -> bool {
        self.decision != "allowed"
    }

    /// The server's severity for the decision.
    fn severity(&self) -> &'static str {
        match self.decision.as_str() {
            "rejected" => "ERROR",
            "unknown" => "UNKNOWN",
            _ => "WARNING",
        }
    }

    /// `rule: message` (the guard's messages start with their rule id), or the SQLSTATE
    /// for PostgreSQL's own errors and `unknown` for what could not be judged.
    fn titled_message(&self) -> String {
        let message = self.message.clone().unwrap_or_default();
        match (self.decision.as_str(), self.rules.is_empty(), &self.sqlstate) {
            ("unknown", _, _) => format!("unknown: {message}"),
            (_, true, Some(code)) => format!("postgres-{code}: {message}"),
            _ => message,
        }
    }

    fn rule(&self) -> String {
        match (self.decision.as_str(), self.rules.first(), &self.sqlstate) {
            ("unknown", _, _) => "unknown".into(),
            (_, Some(r), _) => r.clone(),
            (_, None, Some(code)) => format!("postgres-{code}"),
            _ => "pg_migration_guard".into(),
        }
    }
}

/// An error with its causes: `error connecting to server: Connection refused (os error 111)`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

fn check(args: &CheckArgs) -> Result<Vec<Finding>, Fatal> {
    let dsn = args
        .dsn
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .ok_or_else(|| Fatal("no server to check against: give --dsn URL or set PG_MIGRATION_GUARD_DSN or DATABASE_URL".into()))?;
    let script = read_files(&args.files)?;
    let mut config: postgres::Config = dsn.parse().map_err(|e| Fatal(format!("invalid connection string: {}", chain(&e))))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("pg-migration-guard check");
    }
    let mut client = config.connect(postgres::NoTls).map_err(|e| Fatal(format!("cannot connect to the server: {}", chain(&e))))?;
    let mut tx =
        client.build_transaction().read_only(true).start().map_err(|e| Fatal(format!("cannot start a read-only transaction: {e}")))?;
    let rows = tx.query(
        "SELECT statement_no, line, col, statement, command_tag, decision, rules, sqlstate, message, detail, hint, locks, sizes \
         FROM pg_migration_guard.check($1)",
        &[&script.text],
    );
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            let Some(db) = e.as_db_error() else { return Err(Fatal(format!("the server failed: {e}"))) };
            if *db.code() == SqlState::SYNTAX_ERROR {
                // The script does not parse: PostgreSQL would refuse it.
                // check() gives the place in DETAIL: "at character N of the script (...)".
                let in_detail = db
                    .detail()
                    .and_then(|d| d.strip_prefix("at character "))
                    .and_then(|d| d.split(' ').next())
                    .and_then(|n| n.parse::<u32>().ok());
                let (line, col) = match (in_detail, db.position()) {
                    (Some(p), _) | (None, Some(&ErrorPosition::Original(p))) => script.position(p as usize),
                    _ => (1, 1),
                };
                let (file, line) = script.locate(line);
                return Ok(vec![Finding {
                    file: file.to_string(),
                    line,
                    col,
                    statement_no: 0,
                    statement: String::new(),
                    command_tag: String::new(),
                    decision: "rejected".into(),
                    rules: vec![],
                    sqlstate: Some(db.code().code().to_string()),
                    message: Some(db.message().to_string()),
                    detail: None,
                    hint: db.hint().map(str::to_string),
                    locks: json!([]),
                    sizes: json!([]),
                }]);
            }
            if matches!(*db.code(), SqlState::UNDEFINED_FUNCTION | SqlState::INVALID_SCHEMA_NAME | SqlState::UNDEFINED_FILE) {
                return Err(Fatal(format!(
                    "the server has no usable pg_migration_guard.check() ({}): install pg_migration_guard 0.3.0 or later \
                     (CREATE EXTENSION, or ALTER EXTENSION pg_migration_guard UPDATE) in this database",
                    db.message()
                )));
            }
            return Err(Fatal(format!("the server refused the check: {}: {}", db.code().code(), db.message())));
        }
    };
    let _ = tx.rollback();
    let place = |text: Option<String>| text.map(|t| script.place_lines(&t));
    Ok(rows
        .iter()
        .map(|r| {
            let line: i32 = r.get("line");
            let (file, line) = script.locate(line as usize);
            Finding {
                file: file.to_string(),
                line,
                col: r.get::<_, i32>("col") as usize,
                statement_no: r.get("statement_no"),
                statement: r.get("statement"),
                command_tag: r.get("command_tag"),
                decision: r.get("decision"),
                rules: r.get("rules"),
                sqlstate: r.get("sqlstate"),
                message: place(r.get("message")),
                detail: place(r.get("detail")),
                hint: r.get("hint"),
                locks: r.get("locks"),
                sizes: r.get("sizes"),
            }
        })
        .collect())
}

/// ERROR/WARNING with DETAIL and HINT, as psql prints the server's messages, under the
/// statement's place; then a summary.
fn text(findings: &[Finding], files: usize) -> String {
    let mut out = String::new();
    for f in findings.iter().filter(|f| f.reported()) {
        let first_line = f.statement.lines().next().unwrap_or("");
        let more = if f.statement.lines().nth(1).is_some() { " ..." } else { "" };
        let _ = writeln!(out, "{}:{}:{}: {first_line}{more}", f.file, f.line, f.col);
        let _ = writeln!(out, "{}:  {}", f.severity(), f.message.as_deref().unwrap_or(""));
        if let Some(d) = &f.detail {
            let _ = writeln!(out, "DETAIL:  {d}");
        }
        if let Some(h) = &f.hint {
            let _ = writeln!(out, "HINT:  {h}");
        }
        out.push('\n');
    }
    let count = |d: &str| findings.iter().filter(|f| f.decision == d).count();
    let statements = findings.iter().filter(|f| f.statement_no > 0).count();
    let _ = writeln!(
        out,
        "{statements} statement{} in {files} file{}: {} rejected, {} warned, {} overridden, {} unknown",
        if statements == 1 { "" } else { "s" },
        if files == 1 { "" } else { "s" },
        count("rejected"),
        count("warned"),
        count("overridden"),
        count("unknown")
    );
    out
}

fn json_report(findings: &[Finding]) -> String {
    let all: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "file": f.file, "line": f.line, "column": f.col, "statement_no": f.statement_no,
                "statement": f.statement, "command_tag": f.command_tag, "decision": f.decision,
                "rules": f.rules, "sqlstate": f.sqlstate, "message": f.message, "detail": f.detail,
                "hint": f.hint, "locks": f.locks, "sizes": f.sizes,
            })
        })
        .collect();
    format!("{}\n", Value::Array(all))
}

/// `file:line:col: error: rule: message`, one line each (squawk's gcc reporter).
fn gcc(findings: &[Finding]) -> String {
    findings
        .iter()
        .filter(|f| f.reported())
        .map(|f| {
            let level = if f.decision == "rejected" { "error" } else { "warning" };
            format!("{}:{}:{}: {level}: {}\n", f.file, f.line, f.col, f.titled_message().replace('\n', " "))
        })
        .collect()
}

/// GitHub Actions workflow commands (`::error file=...,line=...,col=...,title=...::message`),
/// with DETAIL and HINT in the message; values escaped as the runner expects.
fn github(findings: &[Finding]) -> String {
    fn data(s: &str) -> String {
        s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
    }
    fn property(s: &str) -> String {
        data(s).replace(':', "%3A").replace(',', "%2C")
    }
    findings
        .iter()
        .filter(|f| f.reported())
        .map(|f| {
            let level = if f.decision == "rejected" { "error" } else { "warning" };
            let mut message = f.message.clone().unwrap_or_default();
            if let Some(d) = &f.detail {
                message.push_str(&format!("\nDETAIL: {d}"));
            }
            if let Some(h) = &f.hint {
                message.push_str(&format!("\nHINT: {h}"));
            }
            format!(
                "::{level} file={},line={},col={},title={}::{}\n",
                property(&f.file),
                f.line,
                f.col,
                property(&f.rule()),
                data(&message)
            )
        })
        .collect()
}

fn file_count(paths: &[PathBuf]) -> usize {
    paths
        .iter()
        .map(|p| {
            if Path::new(p).is_dir() {
                std::fs::read_dir(p)
                    .map(|d| d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "sql")).count())
                    .unwrap_or(0)
            } else {
                1
            }
        })
        .sum()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Check(args) = cli.command;
    match check(&args) {
        Ok(findings) => {
            let out = match args.reporter {
                Reporter::Text => text(&findings, file_count(&args.files)),
                Reporter::Json => json_report(&findings),
                Reporter::Gcc => gcc(&findings),
                Reporter::Github => github(&findings),
            };
            print!("{out}");
            if findings.iter().any(|f| f.decision == "rejected") {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(Fatal(message)) => {
            eprintln!("pg-migration-guard: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(decision: &str, rules: &[&str], sqlstate: Option<&str>, message: &str) -> Finding {
        Finding {
            file: "m/1.sql".into(),
            line: 3,
            col: 5,
            statement_no: 1,
            statement: "CREATE INDEX i ON t (c)\n  WHERE c > 0".into(),
            command_tag: "CREATE INDEX".into(),
            decision: decision.into(),
            rules: rules.iter().map(|r| r.to_string()).collect(),
            sqlstate: sqlstate.map(str::to_string),
            message: Some(message.into()),
            detail: Some("Detail, 50%.".into()),
            hint: Some("Do this:\nSELECT 1;".into()),
            locks: json!([]),
            sizes: json!([]),
        }
    }

    #[test]
    fn reporters_format_like_the_documentation() {
        let rejected = finding("rejected", &["require-concurrent-index-creation"], Some("55000"), "require-concurrent-index-creation: x");
        let pg = finding("rejected", &[], Some("25001"), "CREATE INDEX CONCURRENTLY cannot run inside a transaction block");
        let unknown = finding("unknown", &[], None, "relation t does not exist");
        let fs = [rejected, pg, unknown];
        assert_eq!(
            gcc(&fs),
            "m/1.sql:3:5: error: require-concurrent-index-creation: x\n\
             m/1.sql:3:5: error: postgres-25001: CREATE INDEX CONCURRENTLY cannot run inside a transaction block\n\
             m/1.sql:3:5: warning: unknown: relation t does not exist\n"
        );
        assert_eq!(
            github(&fs[..1]),
            "::error file=m/1.sql,line=3,col=5,title=require-concurrent-index-creation::require-concurrent-index-creation: x%0ADETAIL: Detail, 50%25.%0AHINT: Do this:%0ASELECT 1;\n"
        );
        let t = text(&fs[..1], 1);
        assert!(t.starts_with(
            "m/1.sql:3:5: CREATE INDEX i ON t (c) ...\nERROR:  require-concurrent-index-creation: x\nDETAIL:  Detail, 50%.\nHINT:  Do this:\nSELECT 1;\n\n"
        ));
        assert!(t.ends_with("1 statement in 1 file: 1 rejected, 0 warned, 0 overridden, 0 unknown\n"), "{t}");
    }

    #[test]
    fn lines_map_back_to_files() {
        let s = Script {
            text: "a;\nb;\n;\nc\n\n;\n".into(),
            spans: vec![Span { path: "1.sql".into(), line: 1 }, Span { path: "2.sql".into(), line: 4 }],
        };
        assert_eq!(s.locate(2), ("1.sql", 2));
        assert_eq!(s.locate(4), ("2.sql", 1));
        assert_eq!(s.position(1), (1, 1));
        assert_eq!(s.position(4), (2, 1));
        assert_eq!(
            s.place_lines("changed by the statement at line 5 (x), at line 2"),
            "changed by the statement at 2.sql:2 (x), at 1.sql:2"
        );
    }
}
