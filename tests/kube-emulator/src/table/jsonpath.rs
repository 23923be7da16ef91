//! The JSONPath subset CRD printer columns use: `.a.b`, `.a[0].b` and `.a['x.y']`
//! (a key with dots), evaluated on an object to one value.

use serde_json::Value;

/// The value at `path` in `object`, or `None` when the path does not parse or leads
/// nowhere (the API server then prints an empty cell).
pub fn eval<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    let mut at = object;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            if key.is_empty() {
                return None;
            }
            at = at.get(key)?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            at = match inner.strip_prefix(['\'', '"']) {
                Some(quoted) => at.get(&quoted[..quoted.len().checked_sub(1)?])?,
                None => at.get(inner.parse::<usize>().ok()?)?,
            };
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_indexes_and_quoted_keys() {
        let o = json!({"status": {"conditions": [{"type": "Ready"}]},
                       "metadata": {"labels": {"example.dev/tier": "gold"}}});
        assert_eq!(
            eval(&o, ".status.conditions[0].type"),
            Some(&json!("Ready"))
        );
        assert_eq!(
            eval(&o, ".metadata.labels['example.dev/tier']"),
            Some(&json!("gold"))
        );
        assert_eq!(
            eval(&o, "{.status.conditions[0]}"),
            Some(&json!({"type": "Ready"}))
        );
        assert_eq!(eval(&o, ".status.conditions[3].type"), None);
        assert_eq!(eval(&o, ".spec.size"), None);
    }
}
