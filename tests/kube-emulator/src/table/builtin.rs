//! The columns the API server prints for the built-in kinds the emulator serves, after
//! NAME and in its order (priority 1: only with `kubectl get -o wide`). AGE is among
//! them where the server puts it; its cell is computed with the CRD columns' dates.

use serde_json::{Value, json};

/// (name, type, priority) of a kind's columns.
const AGE: (&str, &str, i64) = ("Age", "string", 0);
type Columns = &'static [(&'static str, &'static str, i64)];

pub fn columns(kind: &str) -> Columns {
    match kind {
        "Pod" => &[
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            AGE,
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        "ConfigMap" => &[("Data", "integer", 0), AGE],
        "Secret" => &[("Type", "string", 0), ("Data", "integer", 0), AGE],
        "Namespace" => &[("Status", "string", 0), AGE],
        "Service" => &[
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            AGE,
            ("Selector", "string", 1),
        ],
        "Node" => &[
            ("Status", "string", 0),
            ("Roles", "string", 0),
            AGE,
            ("Version", "string", 0),
        ],
        "PersistentVolumeClaim" => &[
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            AGE,
        ],
        // The server prints a CRD's creation time, not its age.
        "CustomResourceDefinition" => &[("Created At", "date", 0)],
        _ => &[AGE],
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn or_none(s: &str) -> Value {
    json!(if s.is_empty() { "<none>" } else { s })
}

fn count(v: &Value) -> usize {
    v.as_object().map_or(0, |m| m.len())
}

/// The cells of `columns(kind)` but AGE, for one object.
pub fn cells(kind: &str, o: &Value) -> Vec<Value> {
    let spec = &o["spec"];
    let status = &o["status"];
    match kind {
        "Pod" => {
            let statuses = status["containerStatuses"].as_array();
            let total = spec["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
            let restarts: i64 = statuses.map_or(0, |s| {
                s.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
            });
            let waiting = statuses.and_then(|s| {
                s.iter()
                    .find_map(|c| c["state"]["waiting"]["reason"].as_str())
            });
            let phase = status["reason"]
                .as_str()
                .or(waiting)
                .or(status["phase"].as_str())
                .unwrap_or("Unknown");
            let phase = if o["metadata"]["deletionTimestamp"].is_null() {
                phase
            } else {
                "Terminating"
            };
            let gates = spec["readinessGates"].as_array().map_or(0, Vec::len);
            vec![
                json!(format!("{ready}/{total}")),
                json!(phase),
                json!(restarts.to_string()),
                or_none(str_of(&status["podIP"])),
                or_none(str_of(&spec["nodeName"])),
                or_none(str_of(&status["nominatedNodeName"])),
                json!(if gates == 0 {
                    "<none>".to_owned()
                } else {
                    format!("0/{gates}")
                }),
            ]
        }
        "ConfigMap" => vec![json!(count(&o["data"]) + count(&o["binaryData"]))],
        "Secret" => vec![
            json!(o["type"].as_str().unwrap_or("Opaque")),
            json!(count(&o["data"]) + count(&o["stringData"])),
        ],
        "Namespace" => vec![json!(status["phase"].as_str().unwrap_or("Active"))],
        "Service" => {
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let port = p["port"].as_i64().unwrap_or(0);
                            let proto = p["protocol"].as_str().unwrap_or("TCP");
                            match p["nodePort"].as_i64() {
                                Some(n) => format!("{port}:{n}/{proto}"),
                                None => format!("{port}/{proto}"),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let selector: Vec<String> = spec["selector"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", str_of(v)))
                        .collect()
                })
                .unwrap_or_default();
            let external: Vec<&str> = status["loadBalancer"]["ingress"]
                .as_array()
                .map(|i| i.iter().filter_map(|x| x["ip"].as_str()).collect())
                .unwrap_or_default();
            vec![
                json!(spec["type"].as_str().unwrap_or("ClusterIP")),
                or_none(str_of(&spec["clusterIP"])),
                or_none(&external.join(",")),
                or_none(&ports.join(",")),
                or_none(&selector.join(",")),
            ]
        }
        "Node" => {
            let ready = status["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"] == "True");
            let mut state = match ready {
                Some(true) => "Ready".to_owned(),
                _ => "NotReady".to_owned(),
            };
            if spec["unschedulable"] == true {
                state.push_str(",SchedulingDisabled");
            }
            let roles: Vec<&str> = o["metadata"]["labels"]
                .as_object()
                .map(|l| {
                    l.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .collect()
                })
                .unwrap_or_default();
            vec![
                json!(state),
                or_none(&roles.join(",")),
                json!(str_of(&status["nodeInfo"]["kubeletVersion"])),
            ]
        }
        "PersistentVolumeClaim" => {
            let modes: Vec<&str> = status["accessModes"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|x| match x.as_str()? {
                            "ReadWriteOnce" => Some("RWO"),
                            "ReadOnlyMany" => Some("ROX"),
                            "ReadWriteMany" => Some("RWX"),
                            "ReadWriteOncePod" => Some("RWOP"),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![
                json!(status["phase"].as_str().unwrap_or("Pending")),
                json!(str_of(&spec["volumeName"])),
                json!(str_of(&status["capacity"]["storage"])),
                json!(modes.join(",")),
                json!(str_of(&spec["storageClassName"])),
            ]
        }
        "CustomResourceDefinition" => vec![o["metadata"]["creationTimestamp"].clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cells_count_ready_containers_and_restarts() {
        let pod = json!({
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
                {"ready": true, "restartCount": 2}, {"ready": false, "restartCount": 1}]},
        });
        let cells = cells("Pod", &pod);
        assert_eq!(cells.len(), columns("Pod").len() - 1);
        assert_eq!(
            cells,
            vec![
                json!("1/2"),
                json!("Running"),
                json!("3"),
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }
}
