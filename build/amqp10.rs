//! Generates the AMQP 1.0 codec tables from the OASIS XML in `spec/amqp-1.0/`
//! into `$OUT_DIR/amqp10_generated.rs` (included by
//! `src/protocol/amqp10/types.rs`):
//!
//! - `code`: the constructor of every primitive encoding of types.xml, and
//!   `ENCODINGS` / `encoding` (category and width of each);
//! - `descriptor`: the descriptor code of every described type, with
//!   `descriptor_name` and `descriptor_code` (symbolic descriptors);
//! - one struct per composite type (performatives, error, delivery states,
//!   terminus, message header and properties, SASL frames, transactions,
//!   lifetime policies) with its described-list codec and a `sample()`;
//! - one enum per archetype that several types provide (`Performative`,
//!   `SaslFrame`, `DeliveryState`, `Outcome`, `TargetOrCoordinator`,
//!   `LifetimePolicy`, `MessageId`);
//! - the `<choice>`s of restricted types: an enum for number-valued ones
//!   (`SenderSettleMode`), constants for symbol- and boolean-valued ones
//!   (`terminus_expiry_policy::NEVER`, `role::RECEIVER`), and the error
//!   conditions again as `condition::NOT_FOUND`,
//!   `condition::link::DETACH_FORCED`, ...;
//! - the `<definition>`s (`PORT`, `MIN_MAX_FRAME_SIZE`, ...).
//!
//! Nothing about the protocol is typed here: names, codes, fields, types,
//! defaults and choices all come from the XML. What is chosen here is how
//! XML types map to Rust types (see `Spec::resolve`).

use std::path::Path;

// The code emitters (`impl Spec`), apart to keep each file short.
#[path = "amqp10_emit.rs"]
mod emit;

const FILES: [&str; 5] = [
    "types.xml",
    "transport.xml",
    "messaging.xml",
    "security.xml",
    "transactions.xml",
];

struct Encoding {
    code: u8,
    name: Option<String>,
    category: String,
    width: u8,
}

struct Field {
    name: String,
    ty: String,
    requires: Option<String>,
    default: Option<String>,
    mandatory: bool,
    multiple: bool,
}

struct TypeDef {
    name: String,
    class: String,
    source: String,
    provides: Vec<String>,
    descriptor: Option<(String, u64)>,
    fields: Vec<Field>,
    choices: Vec<(String, String)>,
    encodings: Vec<Encoding>,
    file: &'static str,
}

struct Spec {
    types: Vec<TypeDef>,
    definitions: Vec<(String, String)>,
}

/// The Rust side of an XML field type.
#[derive(Clone, PartialEq, Debug)]
enum Ty {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I32,
    Timestamp,
    Uuid,
    Binary,
    Str,
    Symbol,
    Fields,
    Value,
    /// A number-valued restricted type with choices: a generated enum.
    Choice(String),
    Composite(String),
    /// An archetype several types provide: a generated enum.
    Archetype(String),
}

impl Ty {
    fn rust(&self) -> String {
        match self {
            Ty::Bool => "bool".into(),
            Ty::U8 => "u8".into(),
            Ty::U16 => "u16".into(),
            Ty::U32 => "u32".into(),
            Ty::U64 => "u64".into(),
            Ty::I32 => "i32".into(),
            Ty::Timestamp => "i64".into(),
            Ty::Uuid => "[u8; 16]".into(),
            Ty::Binary => "Bytes".into(),
            Ty::Str => "Str".into(),
            Ty::Symbol => "Symbol".into(),
            Ty::Fields => "Fields".into(),
            Ty::Value => "Value".into(),
            Ty::Choice(n) | Ty::Composite(n) | Ty::Archetype(n) => n.clone(),
        }
    }
}

pub fn generate(root: &Path, out_dir: &Path) {
    let dir = root.join("spec/amqp-1.0");
    for f in FILES {
        println!("cargo:rerun-if-changed=spec/amqp-1.0/{f}");
    }
    println!("cargo:rerun-if-changed=build/amqp10.rs");
    println!("cargo:rerun-if-changed=build/amqp10_emit.rs");
    let spec = Spec::load(&dir);
    let code = spec.generate();
    let path = out_dir.join("amqp10_generated.rs");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(code.as_str()) {
        std::fs::write(&path, code).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

fn camel(s: &str) -> String {
    s.split(['-', '_', '.', ':'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            let first = c.next().unwrap().to_ascii_uppercase();
            std::iter::once(first).chain(c).collect::<String>()
        })
        .collect()
}

fn snake(s: &str) -> String {
    let s = s.replace('-', "_");
    match s.as_str() {
        "type" | "as" | "break" | "const" | "continue" | "crate" | "else" | "enum" | "extern"
        | "false" | "fn" | "for" | "if" | "impl" | "in" | "let" | "loop" | "match" | "mod"
        | "move" | "mut" | "pub" | "ref" | "return" | "self" | "static" | "struct" | "super"
        | "trait" | "true" | "unsafe" | "use" | "where" | "while" | "async" | "await" | "dyn"
        | "box" | "do" | "final" | "macro" | "override" | "priv" | "typeof" | "yield" | "try" => {
            format!("{s}_")
        }
        _ => s,
    }
}

fn upper(s: &str) -> String {
    s.to_ascii_uppercase().replace(['-', ':', '.'], "_")
}

fn parse_u8(s: &str) -> u8 {
    u8::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("code {s}"))
}

/// "0x00000000:0x00000010" -> domain << 32 | id.
fn parse_descriptor_code(s: &str) -> u64 {
    let (hi, lo) = s.split_once(':').expect("descriptor code domain:id");
    let p = |x: &str| u64::from_str_radix(x.trim_start_matches("0x"), 16).expect("hex");
    (p(hi) << 32) | p(lo)
}

impl Spec {
    fn load(dir: &Path) -> Spec {
        let mut types = Vec::new();
        let mut definitions = Vec::new();
        for file in FILES {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            let doc = roxmltree::Document::parse(&text)
                .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
            for node in doc.descendants().filter(|n| n.is_element()) {
                match node.tag_name().name() {
                    "type" => types.push(TypeDef::parse(node, file)),
                    "definition" => definitions.push((
                        attr(node, "name").to_string(),
                        attr(node, "value").to_string(),
                    )),
                    _ => {}
                }
            }
        }
        Spec { types, definitions }
    }

    fn get(&self, name: &str) -> &TypeDef {
        self.types
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("spec: unknown type {name:?}"))
    }

    fn composites(&self) -> impl Iterator<Item = &TypeDef> {
        self.types.iter().filter(|t| t.class == "composite")
    }

    fn providers(&self, archetype: &str) -> Vec<&TypeDef> {
        self.types
            .iter()
            .filter(|t| t.provides.iter().any(|p| p == archetype))
            .collect()
    }

    /// The archetypes that get an enum: those several composite types
    /// provide, or several plain restricted types (message-id).
    fn archetypes(&self) -> Vec<(String, Vec<&TypeDef>)> {
        let mut names: Vec<&str> = Vec::new();
        for t in &self.types {
            for p in &t.provides {
                if !names.contains(&p.as_str()) {
                    names.push(p);
                }
            }
        }
        names
            .into_iter()
            .filter_map(|a| {
                let ps = self.providers(a);
                let all_composite = ps.iter().all(|t| t.class == "composite");
                let all_plain = ps.iter().all(|t| {
                    t.class == "restricted" && t.descriptor.is_none() && t.choices.is_empty()
                });
                (ps.len() >= 2 && (all_composite || all_plain)).then(|| (a.to_string(), ps))
            })
            .collect()
    }

    /// Rust name of an archetype's enum: "frame" is `Performative` (the
    /// transport's name for it; `Frame` is the frame itself), a name that a
    /// composite already has (`target`) becomes its providers joined by `Or`.
    fn archetype_name(&self, archetype: &str) -> String {
        if archetype == "frame" {
            return "Performative".into();
        }
        let n = camel(archetype);
        if self.composites().any(|t| camel(&t.name) == n) {
            let ps: Vec<String> = self
                .providers(archetype)
                .iter()
                .map(|t| camel(&t.name))
                .collect();
            return ps.join("Or");
        }
        n
    }

    /// The Rust type of a field.
    fn field_ty(&self, f: &Field) -> Ty {
        if f.ty != "*" {
            return self.resolve(&f.ty);
        }
        let Some(req) = &f.requires else {
            return Ty::Value;
        };
        let ps = self.providers(req);
        match ps.as_slice() {
            [] => Ty::Value,
            [one] if one.class == "composite" => Ty::Composite(camel(&one.name)),
            [one] if one.descriptor.is_none() => self.resolve(&one.name),
            _ if self.archetypes().iter().any(|(a, _)| a == req) => {
                Ty::Archetype(self.archetype_name(req))
            }
            _ => Ty::Value,
        }
    }

    /// XML type name -> Rust type: primitives by name, restricted types
    /// through their source (number choices become enums), composites by name.
    fn resolve(&self, name: &str) -> Ty {
        match name {
            "boolean" => return Ty::Bool,
            "ubyte" => return Ty::U8,
            "ushort" => return Ty::U16,
            "uint" => return Ty::U32,
            "ulong" => return Ty::U64,
            "int" => return Ty::I32,
            "timestamp" => return Ty::Timestamp,
            "uuid" => return Ty::Uuid,
            "binary" => return Ty::Binary,
            "string" => return Ty::Str,
            "symbol" => return Ty::Symbol,
            "map" => return Ty::Fields,
            "*" => return Ty::Value,
            _ => {}
        }
        let t = self.get(name);
        match t.class.as_str() {
            "composite" => Ty::Composite(camel(&t.name)),
            "restricted" => {
                let base = self.resolve(&t.source);
                let numeric = matches!(base, Ty::U8 | Ty::U16 | Ty::U32);
                if !t.choices.is_empty() && numeric {
                    Ty::Choice(camel(&t.name))
                } else {
                    base
                }
            }
            c => panic!("spec: type {name} of class {c} used as a field type"),
        }
    }

    /// A restricted type's choice named `name`, for a default.
    fn choice_of<'a>(&'a self, ty: &str, name: &str) -> Option<&'a (String, String)> {
        if ty == "*"
            || matches!(
                ty,
                "boolean" | "ubyte" | "ushort" | "uint" | "ulong" | "symbol"
            )
        {
            return None;
        }
        let t = self.types.iter().find(|t| t.name == ty)?;
        t.choices
            .iter()
            .find(|c| c.0 == name)
            .or_else(|| self.choice_of(&t.source, name))
    }

    /// Rust expression of a field's default.
    fn default_expr(&self, f: &Field, ty: &Ty) -> Option<String> {
        let d = f.default.as_ref()?;
        Some(match ty {
            Ty::Bool => {
                assert!(d == "true" || d == "false", "boolean default {d}");
                d.clone()
            }
            Ty::U8 | Ty::U16 | Ty::U32 | Ty::U64 | Ty::I32 => {
                d.parse::<u64>()
                    .unwrap_or_else(|_| panic!("numeric default {d}"));
                d.clone()
            }
            Ty::Choice(e) => format!("{e}::{}", camel(d)),
            Ty::Symbol => {
                let v = self.choice_of(&f.ty, d).map(|c| c.1.as_str()).unwrap_or(d);
                format!("Symbol::from_static({v:?})")
            }
            Ty::Str => format!("Str::from_static({d:?})"),
            other => panic!("default {d} for a field of type {other:?}"),
        })
    }
}

fn attr<'a>(n: roxmltree::Node<'a, '_>, name: &str) -> &'a str {
    n.attribute(name)
        .unwrap_or_else(|| panic!("spec: <{}> without {name}", n.tag_name().name()))
}

impl TypeDef {
    fn parse(n: roxmltree::Node, file: &'static str) -> TypeDef {
        let mut t = TypeDef {
            name: attr(n, "name").to_string(),
            class: attr(n, "class").to_string(),
            source: n.attribute("source").unwrap_or("").to_string(),
            provides: n
                .attribute("provides")
                .map(|p| p.split(',').map(|x| x.trim().to_string()).collect())
                .unwrap_or_default(),
            descriptor: None,
            fields: Vec::new(),
            choices: Vec::new(),
            encodings: Vec::new(),
            file,
        };
        for c in n.children().filter(|c| c.is_element()) {
            match c.tag_name().name() {
                "descriptor" => {
                    t.descriptor = Some((
                        attr(c, "name").to_string(),
                        parse_descriptor_code(attr(c, "code")),
                    ))
                }
                "field" => t.fields.push(Field {
                    name: attr(c, "name").to_string(),
                    ty: attr(c, "type").to_string(),
                    requires: c.attribute("requires").map(str::to_string),
                    default: c.attribute("default").map(str::to_string),
                    mandatory: c.attribute("mandatory") == Some("true"),
                    multiple: c.attribute("multiple") == Some("true"),
                }),
                "choice" => t
                    .choices
                    .push((attr(c, "name").to_string(), attr(c, "value").to_string())),
                "encoding" => t.encodings.push(Encoding {
                    code: parse_u8(attr(c, "code")),
                    name: c.attribute("name").map(str::to_string),
                    category: attr(c, "category").to_string(),
                    width: attr(c, "width").parse().expect("encoding width"),
                }),
                _ => {}
            }
        }
        t
    }
}
