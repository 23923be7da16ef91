//! Object metadata the server owns: identity, timestamps and generation.

use serde_json::Value;

/// Now, as the API server writes times (RFC 3339, seconds, UTC).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A fresh object uid.
pub fn uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Five characters of `generateName`'s random suffix (the server's alphabet: no vowels,
/// no confusable digits).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// The object without what a generation does not count: metadata and status.
fn desired(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(map) = o.as_object_mut() {
        for key in ["metadata", "status", "apiVersion", "kind"] {
            map.remove(key);
        }
    }
    o
}

/// Whether an update changes what `metadata.generation` counts.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    desired(old) != desired(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_counts_spec_not_metadata_or_status() {
        use serde_json::json;
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"y": 1}});
        let mut b = a.clone();
        b["metadata"]["labels"]["a"] = json!("2");
        b["status"]["y"] = json!(2);
        assert!(!spec_changed(&a, &b));
        b["spec"]["x"] = json!(2);
        assert!(spec_changed(&a, &b));
        assert_eq!(name_suffix().len(), 5);
        assert!(now().ends_with('Z'));
    }
}
