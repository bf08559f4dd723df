// STUB: replaced by the real module at merge
//! A stand-in for the shovel definition's validation (written in
//! parallel): only the signature is real. It checks that the value is an
//! object with `src-uri` and `dest-uri`, and asks `direct_vhost_ok` about
//! a direct URI's vhost (`amqp://`, `amqp:///vh`).

/// Placeholder for the parsed shovel definition.
#[derive(Clone, Debug)]
pub struct ShovelDef;

pub fn validate(
    name: &str,
    value: &serde_json::Value,
    direct_vhost_ok: &dyn Fn(&str) -> Result<(), String>,
) -> Result<ShovelDef, Vec<String>> {
    let Some(m) = value.as_object() else {
        return Err(vec![]);
    };
    let mut errors = Vec::new();
    for key in ["src-uri", "dest-uri"] {
        match m.get(key).and_then(|v| v.as_str()) {
            None => errors.push(format!("Key \"{}\" not found in {}", key, name)),
            Some(uri) => {
                let vhost = match uri.strip_prefix("amqp://") {
                    Some("") => Some("/"),
                    Some(rest) => rest.strip_prefix('/'),
                    None => None,
                };
                if let Some(Err(e)) = vhost.map(direct_vhost_ok) {
                    errors.push(e);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(ShovelDef)
    } else {
        Err(errors)
    }
}
