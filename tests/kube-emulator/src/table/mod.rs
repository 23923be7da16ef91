//! Server-side printing: a `meta.k8s.io/v1` `Table` for clients that ask for one in
//! `Accept` (`kubectl get` does), with the columns the API server prints — a CRD
//! version's `additionalPrinterColumns` (JSONPath cells, `priority` > 0 for `-o wide`)
//! or a built-in kind's usual columns — each row carrying the object as
//! `PartialObjectMetadata` (or whole, or not at all, per `includeObject`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::resources::Resource;

mod builtin;
mod jsonpath;

/// Whether the client asked for a Table (its first choice may be one; kubectl lists a
/// plain JSON fallback after it).
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept.split(',').any(|choice| {
                let params: Vec<&str> = choice.split(';').map(str::trim).collect();
                params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
            })
        })
}

/// What each row carries of its object (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn from_query(q: &HashMap<String, String>) -> Result<Include, ApiError> {
        match q.get("includeObject").map(String::as_str) {
            None | Some("") | Some("Metadata") => Ok(Include::Metadata),
            Some("None") => Ok(Include::None),
            Some("Object") => Ok(Include::Object),
            Some(other) => Err(ApiError::bad_request(format!(
                "includeObject must be one of None, Metadata or Object: {other:?}"
            ))),
        }
    }
}

/// One column: its definition and how a cell is computed.
struct Column {
    definition: Value,
    cell: Cell,
}

enum Cell {
    /// A CRD column: its JSONPath and type (`date` cells print as ages).
    Path { path: String, date: bool },
    /// A built-in kind's column `n` (see `builtin::cells`).
    Builtin(usize),
}

fn definition(name: &str, type_: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": type_, "format": format,
           "description": description, "priority": priority})
}

fn name_column() -> Value {
    definition(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace.",
        0,
    )
}

fn columns(res: &Resource) -> Vec<Column> {
    let mut out = vec![Column {
        definition: name_column(),
        cell: Cell::Path {
            path: ".metadata.name".into(),
            date: false,
        },
    }];
    if res.schema.is_some() {
        // A CRD without printer columns gets the server's default one, Age.
        let defined: Vec<Value> = if res.printer_columns.is_empty() {
            vec![json!({"name": "Age", "type": "date",
                        "jsonPath": ".metadata.creationTimestamp"})]
        } else {
            res.printer_columns.clone()
        };
        for c in defined {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_owned();
            out.push(Column {
                definition: definition(
                    &s("name"),
                    &s("type"),
                    &s("format"),
                    &s("description"),
                    c["priority"].as_i64().unwrap_or(0),
                ),
                cell: Cell::Path {
                    path: s("jsonPath"),
                    date: s("type") == "date",
                },
            });
        }
        return out;
    }
    let mut fixed = 0;
    for &(name, type_, priority) in builtin::columns(&res.kind) {
        let cell = if name == "Age" {
            Cell::Path {
                path: ".metadata.creationTimestamp".into(),
                date: true,
            }
        } else {
            fixed += 1;
            Cell::Builtin(fixed - 1)
        };
        out.push(Column {
            definition: definition(name, type_, "", "", priority),
            cell,
        });
    }
    out
}

/// A cell as the server prints it: strings, numbers and booleans as they are, `date`
/// values as the time since, anything else as its JSON, a missing value as null.
fn path_cell(object: &Value, path: &str, date: bool) -> Value {
    match jsonpath::eval(object, path) {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(t)) if date => json!(age(t)),
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => v.clone(),
        Some(other) => json!(other.to_string()),
    }
}

/// The time since an RFC 3339 timestamp, as kubectl prints ages (`45s`, `3m12s`, `5h`,
/// `12d`…).
pub fn age(timestamp: &str) -> String {
    let Ok(then) = humantime::parse_rfc3339_weak(timestamp) else {
        return "<unknown>".into();
    };
    let since = SystemTime::now()
        .duration_since(then)
        .unwrap_or(Duration::ZERO);
    human(since.as_secs())
}

fn human(s: u64) -> String {
    let (m, h) = (s / 60, s / 3600);
    let (d, y) = (h / 24, h / (24 * 365));
    let pair = |big: u64, bu: &str, small: u64, su: &str| {
        if small == 0 {
            format!("{big}{bu}")
        } else {
            format!("{big}{bu}{small}{su}")
        }
    };
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => pair(m, "m", s % 60, "s"),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 => pair(h, "h", m % 60, "m"),
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => pair(d, "d", h % 24, "h"),
        _ if h < 24 * 365 * 2 => format!("{d}d"),
        _ if h < 24 * 365 * 8 => pair(y, "y", d % 365, "d"),
        _ => format!("{y}y"),
    }
}

fn row_object(object: &Value, include: Include) -> Value {
    match include {
        Include::None => Value::Null,
        Include::Object => object.clone(),
        Include::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object["metadata"],
        }),
    }
}

/// The Table of `objects` (a list's items, or the one object of a get).
pub fn table(res: &Resource, objects: &[Value], list_meta: Value, include: Include) -> Value {
    let columns = columns(res);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let fixed = builtin::cells(&res.kind, o);
            let cells: Vec<Value> = columns
                .iter()
                .map(|c| match &c.cell {
                    Cell::Path { path, date } => path_cell(o, path, *date),
                    Cell::Builtin(i) => fixed.get(*i).cloned().unwrap_or(Value::Null),
                })
                .collect();
            let mut row = json!({"cells": cells});
            if include != Include::None {
                row["object"] = row_object(o, include);
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns.into_iter().map(|c| c.definition).collect::<Vec<_>>(),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        assert_eq!(human(45), "45s");
        assert_eq!(human(192), "3m12s");
        assert_eq!(human(600), "10m");
        assert_eq!(human(5 * 3600), "5h");
        assert_eq!(human(3 * 86400 + 3600), "3d1h");
        assert_eq!(human(40 * 86400), "40d");
    }

    #[test]
    fn only_a_table_request_is_one() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert!(wanted(&h));
        h.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wanted(&h));
    }

    #[test]
    fn crd_columns_come_after_the_name_and_age_is_default_only_without_them() {
        let mut res = crate::resources::builtins().remove(0);
        res.kind = "Widget".into();
        res.schema = Some(json!({"type": "object"}));
        let w = json!({"metadata": {"name": "w1", "creationTimestamp": meta_now()},
                       "status": {"phase": "Ready"}, "spec": {"size": 3}});
        let t = table(&res, std::slice::from_ref(&w), json!({}), Include::Metadata);
        assert_eq!(t["columnDefinitions"][1]["name"], "Age");
        assert_eq!(t["rows"][0]["cells"], json!(["w1", "0s"]));
        res.printer_columns = vec![
            json!({"name": "Phase", "type": "string", "jsonPath": ".status.phase"}),
            json!({"name": "Size", "type": "integer", "jsonPath": ".spec.size", "priority": 1}),
        ];
        let t = table(&res, &[w], json!({}), Include::Metadata);
        assert_eq!(t["rows"][0]["cells"], json!(["w1", "Ready", 3]));
        assert_eq!(t["columnDefinitions"][2]["priority"], 1);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    fn meta_now() -> String {
        crate::meta::now()
    }
}
