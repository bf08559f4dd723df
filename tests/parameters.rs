//! Vhost runtime parameters (`/api/parameters…`, src/http/parameters.rs):
//! RabbitMQ 3.13's status codes, bodies and access rules, durability
//! across a restart, definitions export and import, and warrenctl's
//! set_parameter / clear_parameter / list_parameters.

mod common_durable;
mod common_http;

use common_durable::{start_in, DataDir};
use common_http::*;
use serde_json::{json, Value};

const S1: &str = "/api/parameters/shovel/%2F/s1";

/// A shovel value the (stub) validation accepts.
fn shovel(queue: &str) -> Value {
    json!({"src-uri": "amqp://", "src-queue": queue, "dest-uri": "amqp://", "dest-queue": "out"})
}

fn body(v: &Value) -> String {
    json!({ "value": v }).to_string()
}

#[test]
fn put_get_delete_and_the_errors() {
    let dir = DataDir::new("params-api");
    let b = start_in(&dir.0, 2);
    let api = Api::new(b.http_port().unwrap());

    assert_eq!(api.get_json("/api/parameters"), json!([]));
    let r = api.put(S1, &body(&shovel("q1")));
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body, "");
    let r = api.put(S1, &body(&shovel("q2")));
    assert_eq!(r.status, 204, "{r:?}");
    // Fields of the body other than `value` are ignored, as in RabbitMQ.
    let r = api.put(
        "/api/parameters/shovel/%2F/s0",
        &json!({"component": "x", "vhost": "nope", "name": "y", "value": shovel("q0")}).to_string(),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(api.put("/api/vhosts/v2", "{}").status, 201);
    assert_eq!(
        api.put("/api/parameters/shovel/v2/s9", &body(&shovel("q9")))
            .status,
        201
    );

    let one = json!({"component": "shovel", "name": "s1", "value": shovel("q2"), "vhost": "/"});
    assert_eq!(api.get_json(S1), one);
    let all = api.get_json("/api/parameters");
    let names: Vec<(&str, &str)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["vhost"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("/", "s0"), ("/", "s1"), ("v2", "s9")]);
    assert_eq!(api.get_json("/api/parameters/shovel"), all);
    assert_eq!(
        api.get_json("/api/parameters/federation-upstream"),
        json!([])
    );
    assert_eq!(
        api.get_json("/api/parameters/shovel/v2"),
        json!([{"component": "shovel", "name": "s9", "value": shovel("q9"), "vhost": "v2"}])
    );

    // Not found.
    let nf = |a: &Answer| assert_error(a, 404, "Object Not Found", "Not Found");
    nf(&api.get("/api/parameters/shovel/%2F/nope"));
    nf(&api.get("/api/parameters/shovel/nope"));
    nf(&api.get("/api/parameters/shovel/nope/s1"));
    nf(&api.delete("/api/parameters/shovel/%2F/nope"));
    assert_error(
        &api.put("/api/parameters/shovel/nope/s1", &body(&shovel("q"))),
        404,
        "not_found",
        "vhost_not_found",
    );

    // Bad requests.
    let bad = |path: &str, b: &str, reason: &str| {
        assert_error(&api.put(path, b), 400, "bad_request", reason);
    };
    bad(S1, r#"{"valeur": 1}"#, "[{key_missing,value}]");
    bad(S1, "", "[{key_missing,value}]");
    bad(S1, "{not json", "not_json");
    bad(
        "/api/parameters/federation-upstream/%2F/u1",
        &body(&json!({"uri": "amqp://"})),
        "Validation failed\n\ncomponent federation-upstream not found\n",
    );
    bad(
        S1,
        &body(&json!({"dest-uri": "amqp://", "src-queue": "q"})),
        "Validation failed\n\nKey \"src-uri\" not found in s1\n",
    );
    // Several errors, RabbitMQ's order, HTML-escaped (3.10.8 oracle).
    bad(
        S1,
        &body(&json!({"src-uri": "amqp://", "src-queue": "q", "dest-uri": "amqp://", "ack-mode": "x"})),
        "Validation failed\n\nack-mode should be one of [&lt;&lt;\"no-ack\"&gt;&gt;,&lt;&lt;\"on-publish\"&gt;&gt;,&lt;&lt;\"on-confirm\"&gt;&gt;], actually was &lt;&lt;\"x\"&gt;&gt;\n",
    );
    // The refused value changed nothing.
    assert_eq!(api.get_json(S1), one);

    // A direct URI needs the acting user's access to its vhost.
    let r = api.put(
        S1,
        &body(&json!({"src-uri": "amqp:///v2", "src-queue": "q", "dest-uri": "amqp://"})),
    );
    assert_eq!(r.status, 400, "{r:?}");
    let reason = r.json()["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("user \"guest\" may not connect to vhost \"v2\"\n"),
        "{reason:?}"
    );

    // Delete.
    assert_eq!(api.delete(S1).status, 204);
    nf(&api.delete(S1));
    nf(&api.get(S1));

    // Deleting the vhost takes its parameters.
    assert_eq!(api.delete("/api/vhosts/v2").status, 204);
    assert_eq!(
        api.get_json("/api/parameters/shovel")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    b.shutdown();
}

#[test]
fn parameters_survive_a_restart() {
    let dir = DataDir::new("params-restart");
    {
        let b = start_in(&dir.0, 2);
        let api = Api::new(b.http_port().unwrap());
        assert_eq!(api.put(S1, &body(&shovel("q1"))).status, 201);
        assert_eq!(api.put(S1, &body(&shovel("q2"))).status, 204);
        let gone = "/api/parameters/shovel/%2F/gone";
        assert_eq!(api.put(gone, &body(&shovel("g"))).status, 201);
        assert_eq!(api.delete(gone).status, 204);
        b.shutdown();
    }
    let b = start_in(&dir.0, 2);
    let api = Api::new(b.http_port().unwrap());
    assert_eq!(
        api.get_json("/api/parameters"),
        json!([{"component": "shovel", "name": "s1", "value": shovel("q2"), "vhost": "/"}])
    );
    b.shutdown();
}

#[test]
fn definitions_export_and_import() {
    let dir = DataDir::new("params-defs");
    let b = start_in(&dir.0, 2);
    let api = Api::new(b.http_port().unwrap());
    // Passwords in URIs are exported verbatim, as RabbitMQ does.
    let value = json!({"src-uri": "amqp://u:secret@host/vh", "src-queue": "q",
                       "dest-uri": "amqp://", "dest-queue": "out"});
    assert_eq!(api.put(S1, &body(&value)).status, 201);
    let defs = api.get_json("/api/definitions");
    assert_eq!(
        defs["parameters"],
        json!([{"component": "shovel", "name": "s1", "value": value, "vhost": "/"}])
    );

    // Import into a fresh broker: the parameter comes back; an unknown
    // component is skipped.
    let dir2 = DataDir::new("params-defs2");
    let b2 = start_in(&dir2.0, 2);
    let api2 = Api::new(b2.http_port().unwrap());
    let mut file = defs.clone();
    file["parameters"].as_array_mut().unwrap().push(json!({
        "component": "federation-upstream", "name": "up", "vhost": "/",
        "value": {"uri": "amqp://"}
    }));
    let r = api2.post("/api/definitions", &file.to_string());
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(api2.get_json("/api/parameters"), defs["parameters"]);

    // A value the validation refuses fails the import with RabbitMQ's text.
    let mut bad = defs.clone();
    bad["parameters"] = json!([{"component": "shovel", "name": "s2", "vhost": "/",
                                "value": {"src-queue": "q"}}]);
    let r = api2.post("/api/definitions", &bad.to_string());
    assert_eq!(r.status, 400, "{r:?}");
    let reason = r.json()["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("Validation failed\n\n"), "{reason:?}");
    assert!(reason.ends_with(" (//shovel/s2)"), "{reason:?}");
    nf_get(&api2, "/api/parameters/shovel/%2F/s2");
    b2.shutdown();
    b.shutdown();
}

fn nf_get(api: &Api, path: &str) {
    assert_error(&api.get(path), 404, "Object Not Found", "Not Found");
}

#[test]
fn only_administrators_and_policymakers_with_access() {
    let dir = DataDir::new("params-auth");
    let b = start_in(&dir.0, 2);
    let api = Api::new(b.http_port().unwrap());
    assert_eq!(api.put("/api/vhosts/v2", "{}").status, 201);
    assert_eq!(api.put(S1, &body(&shovel("q"))).status, 201);
    assert_eq!(
        api.put("/api/parameters/shovel/v2/s2", &body(&shovel("q")))
            .status,
        201
    );
    for (user, tags) in [("pm", "policymaker"), ("mon", "monitoring"), ("none", "")] {
        let r = api.put(
            &format!("/api/users/{user}"),
            &json!({"password": "pw", "tags": tags}).to_string(),
        );
        assert_eq!(r.status, 201);
        let r = api.put(
            &format!("/api/permissions/%2F/{user}"),
            r#"{"configure":".*","write":".*","read":".*"}"#,
        );
        assert_eq!(r.status, 201, "{r:?}");
    }
    let pm = api.as_user(Some(("pm", "pw")));
    let mon = api.as_user(Some(("mon", "pw")));
    let none = api.as_user(Some(("none", "pw")));

    // A policymaker works in the vhosts it has a permission in, and lists
    // only those.
    let listed = pm.get_json("/api/parameters");
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["vhost"], "/");
    assert_eq!(pm.get_json(S1)["name"], "s1");
    assert_eq!(
        pm.put("/api/parameters/shovel/%2F/s3", &body(&shovel("q")))
            .status,
        201
    );
    let denied = |a: &Answer| {
        assert_error(
            a,
            401,
            "not_authorised",
            "User not authorised to access object",
        )
    };
    denied(&pm.get("/api/parameters/shovel/v2/s2"));
    denied(&pm.get("/api/parameters/shovel/v2"));
    denied(&pm.delete("/api/parameters/shovel/v2/s2"));
    denied(&pm.put("/api/parameters/shovel/v2/s4", &body(&shovel("q"))));

    // A monitoring user is no policymaker; a user without a management
    // tag may not use the API at all.
    denied(&mon.get("/api/parameters"));
    denied(&mon.put(S1, &body(&shovel("q"))));
    assert_error(
        &none.get("/api/parameters"),
        401,
        "not_authorised",
        "Not management user",
    );
    assert_eq!(pm.delete(S1).status, 204);
    b.shutdown();
}

#[test]
fn warrenctl_parameter_commands() {
    let dir = DataDir::new("params-ctl");
    let b = start_in(&dir.0, 2);
    let port = b.http_port().unwrap().to_string();
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_warrenctl"))
            .args(["--port", &port])
            .args(args)
            .env_remove("WARREN_USER")
            .env_remove("WARREN_PASS")
            .output()
            .expect("warrenctl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let v = shovel("q1").to_string();
    let (ok, out, err) = ctl(&["set_parameter", "shovel", "s1", &v]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out,
        format!("Setting runtime parameter \"s1\" for component \"shovel\" to \"{v}\" in vhost \"/\" ...\n")
    );
    let (ok, out, err) = ctl(&["-q", "list_parameters"]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("component\tname\tvalue\nshovel\ts1\t{v}\n"));
    let (ok, out, _) = ctl(&["-q", "list_parameters", "-p", "other"]);
    assert!(ok);
    assert_eq!(out, "component\tname\tvalue\n");
    let (ok, _, err) = ctl(&["set_parameter", "shovel", "s2", r#"{"src-queue":"q"}"#]);
    assert!(!ok);
    assert!(err.contains("Validation failed"), "{err}");
    let (ok, out, err) = ctl(&["clear_parameter", "shovel", "s1"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "Clearing runtime parameter \"s1\" for component \"shovel\" on vhost \"/\" ...\n"
    );
    let (ok, _, _) = ctl(&["clear_parameter", "shovel", "s1"]);
    assert!(!ok);
    b.shutdown();
}
