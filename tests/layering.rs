//! The layering rule, checked on the source: the core imports no protocol
//! session, a front end never reaches into the shard loop, and the bottom
//! layers (net, protocol, store) know nothing above them. A `use` (or a path)
//! that crosses a layer the wrong way fails here, naming file and line.
//!
//! Layers, bottom up: `net`, `protocol`, `store`, `config` → `core` →
//! the front ends `amqp091` and `amqp10` (side by side, neither imports the
//! other) → `shard` → `admin` → `shovel` → `http`; `client` sits beside
//! `protocol`.

use std::path::{Path, PathBuf};

/// (folder under src/, paths its files must not mention).
const RULES: &[(&str, &[&str])] = &[
    // `amqp091::` and not `crate::amqp091`: grouped imports and `super::`
    // paths name the module too (`from_amqp091` is a format, not the module).
    (
        "core",
        &[
            "amqp091::",
            "amqp10::",
            "shard::",
            "crate::net",
            "super::net",
            "crate::http",
        ],
    ),
    ("amqp091", &["shard::", "crate::http", "crate::amqp10"]),
    ("amqp10", &["shard::", "crate::http", "amqp091::"]),
    // The HTTP API sits on top of everything: only lib.rs starts it.
    ("shard", &["crate::http"]),
    ("admin", &["crate::http", "crate::shovel"]),
    // Shovels are clients of the broker, above admin, below http; of the
    // front ends they use only the 1.0 message mapping (`amqp10::mapping`).
    ("shovel", &["crate::http", "shard::", "amqp091::"]),
    // The cluster's control thread (issue 20, under way): below http.
    ("cluster", &["crate::http", "amqp091::", "crate::amqp10"]),
    (
        "net",
        &[
            "protocol::",
            "core::",
            "amqp091::",
            "crate::amqp10",
            "shard::",
            "store::",
        ],
    ),
    (
        "protocol",
        &[
            "net::",
            "core::",
            "amqp091::",
            "crate::amqp10",
            "shard::",
            "store::",
        ],
    ),
    (
        "store",
        &["net::", "core::", "amqp091::", "crate::amqp10", "shard::"],
    ),
    // The AMQP client (loadgen, shovels) is a bottom layer beside protocol.
    (
        "client",
        &[
            "crate::net",
            "super::net",
            "core::",
            "amqp091::",
            "crate::amqp10",
            "shard::",
            "store::",
            "crate::admin",
            "crate::http",
        ],
    ),
    // config sits beside store (it names the store's defaults).
    (
        "config.rs",
        &["crate::net", "core::", "amqp091::", "shard::"],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {}", dir.display(), e)) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of code that name `forbidden`, comments left out.
fn offending_lines(text: &str, forbidden: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.split("//").next().unwrap_or("");
            code.contains(forbidden)
        })
        .map(|(i, line)| (i + 1, line.trim().to_string()))
        .collect()
}

#[test]
fn no_layer_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (layer, forbidden) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "no files in src/{}", layer);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for f in *forbidden {
                for (line, code) in offending_lines(&text, f) {
                    violations.push(format!("{}:{}: {}", file.display(), line, code));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering (core → amqp091 → shard):\n{}",
        violations.join("\n")
    );
}

/// The check itself must catch a violation, or the test above proves nothing.
#[test]
fn the_check_sees_an_import() {
    let text = "use crate::amqp091::channel::Channel; // the core must not\n// crate::amqp091 in a comment\nuse crate::{\n    amqp091::error::AmqpError,\n};\nlet m = Message::from_amqp091(p);\n";
    assert_eq!(offending_lines(text, "amqp091::").len(), 2);
}
