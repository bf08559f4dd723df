//! Generates the AMQP 0-9-1 codec from `spec/amqp-rabbitmq-0.9.1.json`
//! (RabbitMQ's codegen JSON) into `$OUT_DIR`:
//!
//! - `amqp_constants.rs`: frame kinds, sizes, reply codes, `reply_name`, `is_hard_error`
//!   (included by `src/protocol/constants.rs`);
//! - `amqp_generated.rs`: one struct per method, the `Method` enum, its codec and
//!   metadata, `method_name`, and `sample_methods()` for tests
//!   (included by `src/protocol/methods.rs`);
//! - `amqp_properties.rs`: `BasicProperties` and its codec
//!   (included by `src/protocol/properties.rs`).
//!
//! It also generates the AMQP 1.0 codec tables from `spec/amqp-1.0/*.xml`
//! (see `build/amqp10.rs`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

#[path = "build/amqp10.rs"]
mod amqp10;

const SPEC: &str = "spec/amqp-rabbitmq-0.9.1.json";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Ty {
    Bit,
    Octet,
    Short,
    Long,
    LongLong,
    Timestamp,
    ShortStr,
    LongStr,
    Table,
}

impl Ty {
    fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "bit" => Ty::Bit,
            "octet" => Ty::Octet,
            "short" => Ty::Short,
            "long" => Ty::Long,
            "longlong" => Ty::LongLong,
            "timestamp" => Ty::Timestamp,
            "shortstr" => Ty::ShortStr,
            "longstr" => Ty::LongStr,
            "table" => Ty::Table,
            _ => return None,
        })
    }

    fn rust(self) -> &'static str {
        match self {
            Ty::Bit => "bool",
            Ty::Octet => "u8",
            Ty::Short => "u16",
            Ty::Long => "u32",
            Ty::LongLong | Ty::Timestamp => "u64",
            Ty::ShortStr | Ty::LongStr => "Bytes",
            Ty::Table => "FieldTable",
        }
    }

    /// Name of the `PropType` variant in properties.rs.
    fn prop_variant(self) -> &'static str {
        match self {
            Ty::Bit => "Bit",
            Ty::Octet => "Octet",
            Ty::Short => "Short",
            Ty::Long => "Long",
            Ty::LongLong => "LongLong",
            Ty::Timestamp => "Timestamp",
            Ty::ShortStr => "ShortStr",
            Ty::LongStr => "LongStr",
            Ty::Table => "Table",
        }
    }

    /// Expression reading one value from `r` (a `&mut Reader`).
    fn read(self) -> &'static str {
        match self {
            Ty::Bit => unreachable!("bits are packed"),
            Ty::Octet => "r.u8()?",
            Ty::Short => "r.u16()?",
            Ty::Long => "r.u32()?",
            Ty::LongLong | Ty::Timestamp => "r.u64()?",
            Ty::ShortStr => "r.shortstr()?",
            Ty::LongStr => "r.longstr()?",
            Ty::Table => "r.table()?",
        }
    }

    /// Statement writing `v` (an expression of type &T or T) to `out`.
    fn write(self, v: &str) -> String {
        match self {
            Ty::Bit => unreachable!("bits are packed"),
            Ty::Octet => format!("put_u8(out, {v});"),
            Ty::Short => format!("put_u16(out, {v});"),
            Ty::Long => format!("put_u32(out, {v});"),
            Ty::LongLong | Ty::Timestamp => format!("put_u64(out, {v});"),
            Ty::ShortStr => format!("put_shortstr(out, &{v});"),
            Ty::LongStr => format!("put_longstr(out, &{v});"),
            Ty::Table => format!("{v}.encode(out);"),
        }
    }
}

struct Field {
    spec_name: String,
    ident: String,
    ty: Ty,
}

struct Meth {
    class_id: u16,
    method_id: u16,
    /// "basic.publish"
    full_name: String,
    /// "BasicPublish"
    rust_name: String,
    synchronous: bool,
    content: bool,
    fields: Vec<Field>,
}

fn camel(s: &str) -> String {
    s.split(['-', '_', '.'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            let first = c.next().unwrap().to_ascii_uppercase();
            std::iter::once(first).chain(c).collect::<String>()
        })
        .collect()
}

fn field_ident(spec_name: &str) -> String {
    let s = spec_name.replace('-', "_");
    match s.as_str() {
        "type" => "kind".to_string(),
        "as" | "break" | "const" | "continue" | "crate" | "else" | "enum" | "extern" | "false"
        | "fn" | "for" | "if" | "impl" | "in" | "let" | "loop" | "match" | "mod" | "move"
        | "mut" | "pub" | "ref" | "return" | "self" | "static" | "struct" | "super" | "trait"
        | "true" | "unsafe" | "use" | "where" | "while" | "async" | "await" | "dyn"
        | "abstract" | "become" | "box" | "do" | "final" | "macro" | "override" | "priv"
        | "typeof" | "unsized" | "virtual" | "yield" | "try" => format!("{s}_"),
        _ => s,
    }
}

fn const_ident(spec_name: &str) -> String {
    spec_name.to_ascii_uppercase().replace('-', "_")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("spec: missing string {key:?} in {v}"))
}

fn id_of(v: &Value) -> u16 {
    let n = v["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("spec: missing id in {v}"));
    u16::try_from(n).expect("spec: id fits u16")
}

struct Spec {
    domains: HashMap<String, String>,
    json: Value,
}

impl Spec {
    /// Base type of an argument/property: its "type", or its "domain" resolved.
    fn ty_of(&self, arg: &Value) -> Ty {
        let mut name = match (arg["type"].as_str(), arg["domain"].as_str()) {
            (Some(t), _) => t.to_string(),
            (None, Some(d)) => d.to_string(),
            _ => panic!("spec: argument without type or domain: {arg}"),
        };
        for _ in 0..16 {
            match self.domains.get(&name) {
                Some(next) if next != &name => name = next.clone(),
                _ => {
                    return Ty::parse(&name)
                        .unwrap_or_else(|| panic!("spec: unknown type or domain {name:?}"))
                }
            }
        }
        panic!("spec: domain cycle at {name:?}")
    }
}

fn main() {
    println!("cargo:rerun-if-changed={SPEC}");
    println!("cargo:rerun-if-changed=build.rs");

    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(SPEC)).expect("read AMQP spec JSON");
    let json: Value = serde_json::from_str(&text).expect("parse AMQP spec JSON");
    let domains = json["domains"]
        .as_array()
        .expect("spec: domains")
        .iter()
        .map(|d| {
            let d = d.as_array().expect("spec: domain pair");
            (
                d[0].as_str().expect("domain name").to_string(),
                d[1].as_str().expect("domain type").to_string(),
            )
        })
        .collect();
    let spec = Spec { domains, json };

    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    write(&out.join("amqp_constants.rs"), &gen_constants(&spec));
    let methods = collect_methods(&spec);
    write(&out.join("amqp_generated.rs"), &gen_methods(&methods));
    write(&out.join("amqp_properties.rs"), &gen_properties(&spec));
    amqp10::generate(&root, &out);
}

fn write(path: &Path, code: &str) {
    // Only touch the file when it changed, so dependants are not rebuilt for nothing.
    if std::fs::read_to_string(path).ok().as_deref() != Some(code) {
        std::fs::write(path, code).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

fn gen_constants(spec: &Spec) -> String {
    let mut s = String::from("// @generated by build.rs from the AMQP spec JSON. Do not edit.\n\n");
    let mut replies = Vec::new();
    for c in spec.json["constants"].as_array().expect("spec: constants") {
        let name = const_ident(str_of(c, "name"));
        let value = c["value"].as_u64().expect("spec: constant value");
        let class = c["class"].as_str();
        let ty = if name == "FRAME_MIN_SIZE" || name.ends_with("_SIZE") {
            "u32"
        } else if name.starts_with("FRAME_") && class.is_none() {
            "u8"
        } else {
            replies.push((name.clone(), value, class.map(str::to_string)));
            "u16"
        };
        let doc = match class {
            Some(k) => format!("/// `{}` ({k}).\n", str_of(c, "name")),
            None => format!("/// `{}`.\n", str_of(c, "name")),
        };
        let _ = writeln!(s, "{doc}pub const {name}: {ty} = {value};");
    }
    s.push_str(
        "\n/// Spec name of a reply code, upper-cased with `_` (404 -> \"NOT_FOUND\",\n\
         /// 200 -> \"REPLY_SUCCESS\"); \"UNKNOWN\" for a code the spec does not name.\n\
         pub fn reply_name(code: u16) -> &'static str {\n    match code {\n",
    );
    for (name, value, _) in &replies {
        let _ = writeln!(s, "        {value} => \"{name}\",");
    }
    s.push_str("        _ => \"UNKNOWN\",\n    }\n}\n\n");
    s.push_str(
        "/// True for the spec's hard errors (they close the connection; soft errors\n\
         /// close only the channel).\n\
         pub fn is_hard_error(code: u16) -> bool {\n    matches!(code, ",
    );
    let hard: Vec<String> = replies
        .iter()
        .filter(|r| r.2.as_deref() == Some("hard-error"))
        .map(|r| r.1.to_string())
        .collect();
    s.push_str(&hard.join(" | "));
    s.push_str(")\n}\n");
    s
}

fn collect_methods(spec: &Spec) -> Vec<Meth> {
    let mut methods = Vec::new();
    for class in spec.json["classes"].as_array().expect("spec: classes") {
        let cname = str_of(class, "name");
        let class_id = id_of(class);
        for m in class["methods"].as_array().expect("spec: methods") {
            let mname = str_of(m, "name");
            let fields = m["arguments"]
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or(&[])
                .iter()
                .map(|a| Field {
                    spec_name: str_of(a, "name").to_string(),
                    ident: field_ident(str_of(a, "name")),
                    ty: spec.ty_of(a),
                })
                .collect();
            methods.push(Meth {
                class_id,
                method_id: id_of(m),
                full_name: format!("{cname}.{mname}"),
                rust_name: format!("{}{}", camel(cname), camel(mname)),
                synchronous: m["synchronous"].as_bool().unwrap_or(false),
                content: m["content"].as_bool().unwrap_or(false),
                fields,
            });
        }
    }
    methods
}

/// Groups of consecutive fields: `Err(bits)` for a run of bits (at most 8,
/// one octet), `Ok(field)` otherwise.
fn groups(fields: &[Field]) -> Vec<Result<&Field, Vec<&Field>>> {
    let mut g: Vec<Result<&Field, Vec<&Field>>> = Vec::new();
    for f in fields {
        if f.ty == Ty::Bit {
            if let Some(Err(bits)) = g.last_mut() {
                if bits.len() < 8 {
                    bits.push(f);
                    continue;
                }
            }
            g.push(Err(vec![f]));
        } else {
            g.push(Ok(f));
        }
    }
    g
}

fn gen_methods(methods: &[Meth]) -> String {
    let mut s = String::from("// @generated by build.rs from the AMQP spec JSON. Do not edit.\n\n");
    let _ = writeln!(
        s,
        "/// Number of methods in the spec.\npub const METHOD_COUNT: usize = {};\n",
        methods.len()
    );

    for m in methods {
        let n = &m.rust_name;
        let _ = writeln!(
            s,
            "/// `{}` (class {}, method {}{}{}).",
            m.full_name,
            m.class_id,
            m.method_id,
            if m.synchronous { ", synchronous" } else { "" },
            if m.content { ", carries content" } else { "" }
        );
        s.push_str("#[derive(Clone, Debug, PartialEq, Default)]\n");
        let _ = writeln!(s, "pub struct {n} {{");
        for f in &m.fields {
            let _ = writeln!(s, "    /// `{}`", f.spec_name);
            let _ = writeln!(s, "    pub {}: {},", f.ident, f.ty.rust());
        }
        s.push_str("}\n\n");

        let _ = writeln!(s, "impl {n} {{");
        let _ = writeln!(s, "    pub const CLASS_ID: u16 = {};", m.class_id);
        let _ = writeln!(s, "    pub const METHOD_ID: u16 = {};", m.method_id);
        let _ = writeln!(s, "    pub const NAME: &'static str = \"{}\";", m.full_name);
        let _ = writeln!(s, "    pub const SYNCHRONOUS: bool = {};", m.synchronous);
        let _ = writeln!(s, "    pub const HAS_CONTENT: bool = {};\n", m.content);

        // decode_args
        let r = if m.fields.is_empty() { "_r" } else { "r" };
        s.push_str("    /// Reads the arguments (after class-id and method-id).\n");
        s.push_str("    #[inline]\n");
        let _ = writeln!(
            s,
            "    pub fn decode_args({r}: &mut Reader) -> Result<Self, DecodeError> {{"
        );
        for (gi, g) in groups(&m.fields).into_iter().enumerate() {
            match g {
                Ok(f) => {
                    let _ = writeln!(s, "        let {} = {};", f.ident, f.ty.read());
                }
                Err(bits) => {
                    let _ = writeln!(s, "        let bits{gi} = r.u8()?;");
                    for (i, f) in bits.iter().enumerate() {
                        let _ =
                            writeln!(s, "        let {} = bits{gi} & {} != 0;", f.ident, 1u8 << i);
                    }
                }
            }
        }
        let idents: Vec<&str> = m.fields.iter().map(|f| f.ident.as_str()).collect();
        let _ = writeln!(s, "        Ok({n} {{ {} }})", idents.join(", "));
        s.push_str("    }\n\n");

        // encode_args
        let out = if m.fields.is_empty() { "_out" } else { "out" };
        s.push_str("    /// Writes the arguments (after class-id and method-id).\n");
        s.push_str("    #[inline]\n");
        let _ = writeln!(s, "    pub fn encode_args(&self, {out}: &mut Vec<u8>) {{");
        for g in groups(&m.fields) {
            match g {
                Ok(f) => {
                    let _ = writeln!(s, "        {}", f.ty.write(&format!("self.{}", f.ident)));
                }
                Err(bits) => {
                    let terms: Vec<String> = bits
                        .iter()
                        .enumerate()
                        .map(|(i, f)| match i {
                            0 => format!("self.{} as u8", f.ident),
                            _ => format!("((self.{} as u8) << {i})", f.ident),
                        })
                        .collect();
                    let _ = writeln!(s, "        put_u8(out, {});", terms.join(" | "));
                }
            }
        }
        s.push_str("    }\n}\n\n");

        let _ = writeln!(
            s,
            "impl From<{n}> for Method {{\n    #[inline]\n    fn from(m: {n}) -> Method {{\n        Method::{n}(m)\n    }}\n}}\n"
        );
    }

    // The enum.
    s.push_str("/// Every method of the spec; each variant wraps the struct of the same name.\n");
    s.push_str("#[derive(Clone, Debug, PartialEq)]\npub enum Method {\n");
    for m in methods {
        let _ = writeln!(s, "    {0}({0}),", m.rust_name);
    }
    s.push_str("}\n\n");

    s.push_str("impl Method {\n");
    s.push_str(
        "    /// Decodes a method frame payload (class-id, method-id, arguments).\n\
         /// Strings are slices of `payload`; trailing bytes are ignored.\n\
         pub fn decode(payload: Bytes) -> Result<Method, DecodeError> {\n\
         \x20       Method::decode_from(&mut Reader::new(payload))\n\
         \x20   }\n\n\
         \x20   /// [`Method::decode`] from a reader the caller keeps (a failed\n\
         \x20   /// decode can then quote the payload: `Reader::into_inner`).\n\
         \x20   pub fn decode_from(r: &mut Reader) -> Result<Method, DecodeError> {\n\
         \x20       let class_id = r.u16()?;\n\
         \x20       let method_id = r.u16()?;\n\
         \x20       Ok(match (class_id, method_id) {\n",
    );
    for m in methods {
        let _ = writeln!(
            s,
            "            ({}, {}) => Method::{n}({n}::decode_args(r)?),",
            m.class_id,
            m.method_id,
            n = m.rust_name
        );
    }
    s.push_str(
        "            _ => return Err(DecodeError::UnknownMethod { class_id, method_id }),\n\
         \x20       })\n    }\n\n",
    );

    s.push_str(
        "    /// Writes class-id, method-id and the arguments (a method frame payload).\n\
         \x20   pub fn encode(&self, out: &mut Vec<u8>) {\n\
         \x20       put_u16(out, self.class_id());\n\
         \x20       put_u16(out, self.method_id());\n\
         \x20       match self {\n",
    );
    for m in methods {
        let _ = writeln!(
            s,
            "            Method::{}(m) => m.encode_args(out),",
            m.rust_name
        );
    }
    s.push_str("        }\n    }\n\n");

    let accessor = |s: &mut String, sig: &str, doc: &str, val: &dyn Fn(&Meth) -> String| {
        let _ = writeln!(
            s,
            "    /// {doc}\n    #[inline]\n    pub fn {sig} {{\n        match self {{"
        );
        for m in methods {
            let _ = writeln!(s, "            Method::{}(_) => {},", m.rust_name, val(m));
        }
        s.push_str("        }\n    }\n\n");
    };
    accessor(&mut s, "class_id(&self) -> u16", "The class-id.", &|m| {
        m.class_id.to_string()
    });
    accessor(&mut s, "method_id(&self) -> u16", "The method-id.", &|m| {
        m.method_id.to_string()
    });
    accessor(
        &mut s,
        "name(&self) -> &'static str",
        "Spec name, e.g. `\"basic.publish\"`.",
        &|m| format!("\"{}\"", m.full_name),
    );
    accessor(
        &mut s,
        "has_content(&self) -> bool",
        "True when a content header and body frames follow (spec \"content\").",
        &|m| m.content.to_string(),
    );
    accessor(
        &mut s,
        "is_synchronous(&self) -> bool",
        "True when the method expects a reply (spec \"synchronous\").",
        &|m| m.synchronous.to_string(),
    );
    s.push_str("}\n\n");

    s.push_str(
        "/// Spec name (e.g. `\"basic.publish\"`) of a class-id/method-id pair.\n\
         pub fn method_name(class_id: u16, method_id: u16) -> Option<&'static str> {\n\
         \x20   Some(match (class_id, method_id) {\n",
    );
    for m in methods {
        let _ = writeln!(
            s,
            "        ({}, {}) => \"{}\",",
            m.class_id, m.method_id, m.full_name
        );
    }
    s.push_str("        _ => return None,\n    })\n}\n\n");

    s.push_str(
        "/// Spec name of a class-id (e.g. 60 -> `\"basic\"`).\n\
         pub fn class_name(class_id: u16) -> Option<&'static str> {\n\
         \x20   Some(match class_id {\n",
    );
    let mut seen = Vec::new();
    for m in methods {
        if !seen.contains(&m.class_id) {
            seen.push(m.class_id);
            let cname = m.full_name.split('.').next().unwrap();
            let _ = writeln!(s, "        {} => \"{cname}\",", m.class_id);
        }
    }
    s.push_str("        _ => return None,\n    })\n}\n\n");

    // Test samples: every field non-default.
    s.push_str(
        "/// One instance of every method with non-default field values (tests,\n\
         /// fuzz seeds).\n#[doc(hidden)]\npub fn sample_methods() -> Vec<Method> {\n    vec![\n",
    );
    let mut counter = 0u64;
    for m in methods {
        let _ = writeln!(s, "        Method::{}({} {{", m.rust_name, m.rust_name);
        let mut bit = 0usize;
        for f in &m.fields {
            counter += 1;
            let v = match f.ty {
                Ty::Bit => {
                    bit += 1;
                    // T, F, T, T, F, T, ... so packing order matters.
                    ((bit - 1) % 3 != 1).to_string()
                }
                Ty::Octet => format!("{}", (counter % 250) + 1),
                Ty::Short => format!("{}", 1000 + counter),
                Ty::Long => format!("{}", 100_000 + counter),
                Ty::LongLong | Ty::Timestamp => format!("{}", (1u64 << 40) + counter),
                Ty::ShortStr => format!("Bytes::from_static(b\"x{}\")", f.spec_name),
                Ty::LongStr => format!("Bytes::from_static(b\"long-{}\")", f.spec_name),
                Ty::Table => format!(
                    "[(\"k-{}\", FieldValue::LongStr(Bytes::from_static(b\"v\"))), (\"n\", FieldValue::I32({}))].into_iter().collect()",
                    f.spec_name, counter
                ),
            };
            let _ = writeln!(s, "            {}: {v},", f.ident);
        }
        s.push_str("        }),\n");
    }
    s.push_str("    ]\n}\n");
    s
}

fn gen_properties(spec: &Spec) -> String {
    let classes = spec.json["classes"].as_array().expect("spec: classes");
    let basic = classes
        .iter()
        .find(|c| c["name"] == "basic")
        .expect("spec: class basic");
    let props: Vec<Field> = basic["properties"]
        .as_array()
        .expect("spec: basic properties")
        .iter()
        .map(|p| Field {
            spec_name: str_of(p, "name").to_string(),
            ident: field_ident(str_of(p, "name")),
            ty: spec.ty_of(p),
        })
        .collect();
    assert!(
        props.len() <= 15,
        "more than 15 properties need a second flags word"
    );
    assert!(
        props.iter().all(|p| p.ty != Ty::Bit),
        "bit properties not supported"
    );

    let mut s = String::from("// @generated by build.rs from the AMQP spec JSON. Do not edit.\n\n");
    let _ = writeln!(s, "/// Class-id of `basic` (the class whose properties these are).\npub const BASIC_CLASS_ID: u16 = {};\n", id_of(basic));
    let _ = writeln!(
        s,
        "/// Number of basic properties.\npub const PROPERTY_COUNT: usize = {};\n",
        props.len()
    );
    s.push_str("/// Wire type of each property, in flag order (bit 15 first).\n");
    let _ = writeln!(
        s,
        "pub const PROPERTY_TYPES: [PropType; {}] = [",
        props.len()
    );
    for p in &props {
        let _ = writeln!(s, "    PropType::{},", p.ty.prop_variant());
    }
    s.push_str("];\n\n");
    for (i, p) in props.iter().enumerate() {
        let _ = writeln!(
            s,
            "/// Index of `{}` in [`PROPERTY_TYPES`]; its flag is `1 << (15 - index)`.\npub const PROP_{}: usize = {i};",
            p.spec_name,
            const_ident(&p.spec_name)
        );
    }
    s.push('\n');

    s.push_str("/// The `basic` content properties; `None` = flag clear, absent on the wire.\n");
    s.push_str("#[derive(Clone, Debug, PartialEq, Default)]\npub struct BasicProperties {\n");
    for p in &props {
        let _ = writeln!(s, "    /// `{}`", p.spec_name);
        let _ = writeln!(s, "    pub {}: Option<{}>,", p.ident, p.ty.rust());
    }
    s.push_str("}\n\n");

    s.push_str("impl BasicProperties {\n");
    s.push_str(
        "    /// Decodes property flags + list, exactly as on the wire after body-size in a\n\
         \x20   /// content header (flags bit 15 = first property; bit 0 = another flags word\n\
         \x20   /// follows). Strings are slices of `raw`; trailing bytes are ignored.\n\
         \x20   pub fn decode(raw: Bytes) -> Result<BasicProperties, DecodeError> {\n\
         \x20       let (flags, start) = split_flags(&raw).ok_or(DecodeError::BadContentHeader)?;\n\
         \x20       let mut r = Reader::new(raw.slice(start..));\n\
         \x20       let mut p = BasicProperties::default();\n",
    );
    for (i, p) in props.iter().enumerate() {
        let _ = writeln!(
            s,
            "        if flags & (1 << {}) != 0 {{\n            p.{} = Some({});\n        }}",
            15 - i,
            p.ident,
            p.ty.read()
        );
    }
    s.push_str("        Ok(p)\n    }\n\n");

    s.push_str(
        "    /// The property flags word for the fields that are set.\n\
         \x20   pub fn flags(&self) -> u16 {\n\
         \x20       let mut flags = 0u16;\n",
    );
    for (i, p) in props.iter().enumerate() {
        let _ = writeln!(
            s,
            "        if self.{}.is_some() {{\n            flags |= 1 << {};\n        }}",
            p.ident,
            15 - i
        );
    }
    s.push_str("        flags\n    }\n\n");

    s.push_str(
        "    /// Writes flags + property list (what `decode` reads).\n\
         \x20   pub fn encode(&self, out: &mut Vec<u8>) {\n\
         \x20       put_u16(out, self.flags());\n",
    );
    for p in &props {
        // `v` is a reference here.
        let w = match p.ty {
            Ty::ShortStr => "put_shortstr(out, v);".to_string(),
            Ty::LongStr => "put_longstr(out, v);".to_string(),
            Ty::Table => p.ty.write("v"),
            _ => p.ty.write("*v"),
        };
        let _ = writeln!(
            s,
            "        if let Some(v) = &self.{} {{\n            {w}\n        }}",
            p.ident
        );
    }
    s.push_str("    }\n}\n");
    s
}
