//! Canonical JSON: the byte form that op digests are computed over.
//!
//! serde_json's map type keeps keys sorted only while no crate in the build enables its
//! `preserve_order` feature; features unify across a workspace, so relying on that would let an
//! unrelated dependency change every digest. This writer sorts object keys itself and emits no
//! whitespace, so the bytes depend only on the value.

use serde::Serialize;
use serde_json::Value;

/// Serializes `value` to canonical JSON bytes: keys sorted bytewise, no insignificant whitespace.
pub(crate) fn to_canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let tree = serde_json::to_value(value)?;
    let mut out = Vec::with_capacity(256);
    write_value(&tree, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            serde_json::to_writer(&mut *out, value)?;
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_at_every_level_and_whitespace_dropped() {
        let v = serde_json::json!({"b": 1, "a": {"z": [true, null], "y": "q\""}});
        let bytes = to_canonical_json(&v).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"a":{"y":"q\"","z":[true,null]},"b":1}"#
        );
    }
}
