//! The Nimbus extensions match their checked-in OpenAPI document.

use crate::support::Server;

const HELLO: &str = "def handler(event, context):\n    return 'hi'\n";

/// Follows a `$ref` inside the document.
fn resolve<'a>(doc: &'a serde_json::Value, schema: &'a serde_json::Value) -> &'a serde_json::Value {
    match schema.get("$ref").and_then(|r| r.as_str()) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("dangling {reference}"))
        }
        None => schema,
    }
}

/// Checks `value` has every required property of `schema`, recursing into objects and arrays.
fn conforms(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    at: &str,
) {
    let schema = resolve(doc, schema);
    if let Some(required) = schema.get("required").and_then(|r| r.as_array()) {
        for field in required.iter().filter_map(|f| f.as_str()) {
            assert!(
                value.get(field).is_some(),
                "{at}: missing {field} in {value}"
            );
        }
    }
    if let (Some(props), Some(object)) = (schema.get("properties"), value.as_object()) {
        for (key, item) in object {
            if let Some(sub) = props.get(key) {
                conforms(doc, sub, item, &format!("{at}.{key}"));
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            conforms(doc, items, item, &format!("{at}[{i}]"));
        }
    }
}

#[test]
fn every_documented_get_answers_as_documented() {
    let tmp = crate::support::tempdir();
    let server = Server::start(&tmp.path().join("data"));
    server.deploy_python(tmp.path(), "documented", HELLO, &[]);
    assert_eq!(server.invoke("documented", "{}").status, 200);
    let doc = server.http("GET", "/nimbus/v1/openapi.json", "").json;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    for served in [
        "/nimbus/v1/health",
        "/nimbus/v1/openapi.json",
        "/nimbus/v1/instances",
        "/nimbus/v1/nodes",
        "/nimbus/v1/functions/{name}/scaling",
        "/nimbus/v1/functions/{name}/code",
        "/nimbus/v1/dead-letters",
        "/nimbus/v1/dead-letters/redrive",
        "/nimbus/v1/dead-letters/{id}",
        "/nimbus/v1/dead-letters/{id}/redrive",
        "/nimbus/v1/schedules",
        "/nimbus/v1/schedules/{name}",
        "/nimbus/v1/functions/{name}/logs",
        "/nimbus/v1/usage",
    ] {
        assert!(
            paths.contains_key(served),
            "{served} is served but not documented"
        );
    }
    for (path, item) in paths {
        let Some(get) = item.get("get") else { continue };
        let url = path.replace("{name}", "documented");
        let answer = server.http("GET", &url, "");
        assert_eq!(answer.status, 200, "GET {url}");
        if let Some(schema) = get.pointer("/responses/200/content/application~1json/schema") {
            conforms(&doc, schema, &answer.json, &url);
        }
    }
    let missing = server.http("GET", "/nimbus/v1/functions/absent/scaling", "");
    assert_eq!(missing.status, 404);
}

/// The operations of a path item, by method.
fn operations(item: &serde_json::Value) -> impl Iterator<Item = (&String, &serde_json::Value)> {
    item.as_object()
        .into_iter()
        .flatten()
        .filter(|(method, _)| ["get", "put", "post", "delete"].contains(&method.as_str()))
}

/// The statuses the document declares for `method` on `path`.
fn declared(doc: &serde_json::Value, path: &str, method: &str) -> Vec<u16> {
    doc["paths"][path][method]["responses"]
        .as_object()
        .map(|r| r.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default()
}

#[test]
fn every_documented_operation_declares_the_errors_it_gives() {
    let tmp = crate::support::tempdir();
    let server = Server::start(&tmp.path().join("data"));
    let doc = server.http("GET", "/nimbus/v1/openapi.json", "").json;
    let paths = doc["paths"].as_object().expect("paths").clone();
    for (path, item) in &paths {
        for (method, op) in operations(item) {
            let declared = declared(&doc, path, method);
            for status in [403, 429, 503] {
                assert!(
                    declared.contains(&status),
                    "{method} {path} does not declare {status}"
                );
            }
            if path.contains('{') {
                let url = path.replace("{name}", "absent").replace("{id}", "absent");
                let answer = server.http(&method.to_uppercase(), &url, "{}");
                assert_eq!(answer.status, 404, "{method} {url}");
                assert!(declared.contains(&404), "{method} {path} answers 404");
            }
            if op.get("requestBody").is_some() && !path.contains('{') {
                let answer = server.http(&method.to_uppercase(), path, "not json");
                assert_eq!(answer.status, 400, "{method} {path} with a malformed body");
                assert!(declared.contains(&400), "{method} {path} answers 400");
            }
        }
    }
    let bad_time = server.http("GET", "/nimbus/v1/usage?from=yesterday-ish", "");
    assert_eq!(bad_time.status, 400);
    assert!(declared(&doc, "/nimbus/v1/usage", "get").contains(&400));

    // With credentials, an unsigned request to any documented operation is a 403.
    let signed = Server::start_exactly(&tmp.path().join("signed"), &[]);
    for (path, item) in &paths {
        for (method, _) in operations(item) {
            let url = path.replace("{name}", "absent").replace("{id}", "absent");
            let answer = signed.http(&method.to_uppercase(), &url, "{}");
            assert_eq!(answer.status, 403, "unsigned {method} {url}");
        }
    }
}
