//! The broker binary's configuration file (part of the `warren` binary, not
//! the library): `--config FILE`, TOML, one key per flag, named like the
//! flag with `_` for `-` (`port = 5672`, `data_dir = "/var/lib/warren"`,
//! `bind = ["0.0.0.0"]`). `/etc/warren/warren.toml` is read when it exists
//! and no `--config` is given.
//!
//! Precedence: flag > environment (`WARREN_*`) > file > default. The file's
//! values go through the flags' own parsers, so a bad value fails at start
//! with the file, the key, the value and what the flag allows; an unknown
//! key fails too, with the keys there are. `example` writes a file with
//! every key, its help and its default, from the same definitions as
//! `--help` (`packaging/warren.toml` is its output; a test keeps them equal).

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Read when it exists and no `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/warren/warren.toml";

/// Flags that are about the file itself, not keys of it.
const NOT_KEYS: &[&str] = &[
    "config",
    "check_config",
    "example_config",
    "help",
    "version",
];

/// Where each setting came from (`--check-config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Environment,
    File,
    Default,
}

/// The parsed flags, and where each setting came from.
pub struct Parsed<A> {
    pub args: A,
    pub sources: BTreeMap<String, Source>,
    pub file: Option<PathBuf>,
    /// The effective value of every key, as text (`--check-config`).
    pub values: BTreeMap<String, String>,
}

/// Parses the command line, the environment and the configuration file
/// into `A`. Help and version exit as clap makes them; any error is
/// returned as one line.
pub fn parse<A: CommandFactory + FromArgMatches>(argv: Vec<OsString>) -> Result<Parsed<A>, String> {
    let first = A::command().get_matches_from(argv.clone());
    let (path, required) = match first.get_one::<PathBuf>("config") {
        Some(p) => (Some(p.clone()), true),
        None => (Some(PathBuf::from(DEFAULT_PATH)), false),
    };
    let mut extra: Vec<OsString> = Vec::new();
    let mut from_file = Vec::new();
    let mut used = None;
    if let Some(path) = path {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                used = Some(path.clone());
                for (key, value) in read(&A::command(), &path, &text)? {
                    let set_elsewhere = matches!(
                        first.value_source(&key),
                        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                    );
                    if !set_elsewhere {
                        extra.extend(value);
                        from_file.push(key);
                    }
                }
            }
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    let mut all = argv;
    all.extend(extra);
    let matches = A::command()
        .try_get_matches_from(all)
        .map_err(|e| first_line(&e.to_string()))?;
    let args = A::from_arg_matches(&matches).map_err(|e| first_line(&e.to_string()))?;
    let mut sources = BTreeMap::new();
    let mut values = BTreeMap::new();
    for arg in A::command().get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_KEYS.contains(&id) {
            continue;
        }
        let source = if from_file.iter().any(|k| k == id) {
            Source::File
        } else {
            match matches.value_source(id) {
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Environment,
                _ => Source::Default,
            }
        };
        sources.insert(id.to_string(), source);
        let text = match matches.get_raw(id) {
            Some(v) => v
                .map(|s| s.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(","),
            None => String::new(),
        };
        values.insert(id.to_string(), text);
    }
    Ok(Parsed {
        args,
        sources,
        file: used,
        values,
    })
}

/// Reads `text` (the file at `path`) into the command-line arguments each
/// key stands for, checking every key and value against its flag in `cmd`.
fn read(
    cmd: &clap::Command,
    path: &Path,
    text: &str,
) -> Result<Vec<(String, Vec<OsString>)>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        format!("{}: {}", path.display(), first_line(&e.to_string()))
    })?;
    let mut out = Vec::new();
    for (key, value) in table {
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_id().as_str() == key && !NOT_KEYS.contains(&key.as_str()))
        else {
            let known: Vec<&str> = cmd
                .get_arguments()
                .map(|a| a.get_id().as_str())
                .filter(|k| !NOT_KEYS.contains(k))
                .collect();
            return Err(format!(
                "{}: unknown key '{key}'; the keys are the flags, with _ for -: {}",
                path.display(),
                known.join(", ")
            ));
        };
        let long = arg.get_long().unwrap_or(key.as_str());
        let bad = |why: &str| format!("{}: {key} = {}: {why}", path.display(), show(&value));
        let argv: Vec<OsString> = if is_switch(arg) {
            match value {
                toml::Value::Boolean(true) => vec![format!("--{long}").into()],
                toml::Value::Boolean(false) => Vec::new(),
                _ => return Err(bad("expected true or false")),
            }
        } else {
            let text = match &value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => {
                    let mut parts = Vec::new();
                    for i in items {
                        match i {
                            toml::Value::String(s) => parts.push(s.clone()),
                            toml::Value::Integer(n) => parts.push(n.to_string()),
                            _ => return Err(bad("expected strings or numbers in the list")),
                        }
                    }
                    parts.join(",")
                }
                _ => return Err(bad("expected a string, a number, true/false or a list")),
            };
            vec![format!("--{long}={text}").into()]
        };
        // The flag's own parser says whether the value is allowed.
        let mut probe: Vec<OsString> = vec!["warren".into()];
        probe.extend(argv.iter().cloned());
        if let Err(e) = cmd.clone().try_get_matches_from(probe) {
            return Err(bad(&first_line(&e.to_string())));
        }
        out.push((key, argv));
    }
    Ok(out)
}

/// A value as the file wrote it (near enough for an error message).
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(show).collect();
            format!("[{}]", parts.join(", "))
        }
        other => format!("{other:?}"),
    }
}

/// The first line of a clap or toml error, without clap's `error: `.
fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim_start_matches("error: ")
        .trim()
        .to_string()
}

/// Whether `arg` is an on/off flag (no value).
fn is_switch(arg: &clap::Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

/// A configuration file with every key commented out at its default, each
/// under its flag's help and environment variable: the same definitions
/// as `--help`.
pub fn example(cmd: &clap::Command) -> String {
    let mut out = String::from(
        "# warren configuration file (TOML), read from --config FILE or\n\
         # /etc/warren/warren.toml. Every key is a flag of `warren --help`, with _\n\
         # for -; a flag or an environment variable overrides the file.\n\
         # Generated by `warren --example-config`.\n",
    );
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_KEYS.contains(&id) {
            continue;
        }
        out.push('\n');
        if let Some(help) = arg.get_long_help().or(arg.get_help()) {
            for line in help.to_string().lines() {
                out.push_str(format!("# {line}").trim_end());
                out.push('\n');
            }
        }
        if let Some(env) = arg.get_env() {
            out.push_str(&format!(
                "# (environment variable: {})\n",
                env.to_string_lossy()
            ));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let line = if is_switch(arg) {
            format!("# {id} = false\n")
        } else if defaults.is_empty() {
            format!("# {id} = (not set)\n")
        } else if arg.get_value_delimiter().is_some() {
            let items: Vec<String> = defaults
                .iter()
                .flat_map(|d| d.split(','))
                .map(toml_value)
                .collect();
            format!("# {id} = [{}]\n", items.join(", "))
        } else {
            format!("# {id} = {}\n", toml_value(&defaults.join(",")))
        };
        out.push_str(&line);
    }
    out
}

/// A value as TOML: numbers and true/false bare, the rest quoted.
pub fn toml_value(v: &str) -> String {
    if v == "true" || v == "false" {
        return v.to_string();
    }
    if v.parse::<i64>().is_ok() || (v.parse::<f64>().is_ok() && v.contains('.')) {
        v.to_string()
    } else {
        format!("{v:?}")
    }
}
