//! Canonical JSON as securesystemslib writes it (the OLPC dialect TUF signs).
//!
//! Guarantees:
//! - Object keys are sorted by Unicode code point (byte order of their UTF-8,
//!   which is what Python's `sorted()` on `str` gives), with no whitespace.
//! - Strings escape only `\` and `"`; every other character, control
//!   characters and non-ASCII included, is written as its raw UTF-8.
//! - Only integers are allowed: a float (or an integer too large for 64 bits,
//!   which `serde_json` reads as a float) is refused, because securesystemslib
//!   refuses to encode one and no signature could cover it.
//!
//! Signatures are checked over `encode(&received_value)`, never over a
//! re-serialised struct, so fields Flotte does not know are still covered.

use serde_json::Value;

/// `value` has no canonical form.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("no canonical JSON form: {0}")]
pub struct CanonicalError(pub String);

/// The canonical JSON bytes of `value`.
pub fn encode(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::new();
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(CanonicalError(format!("{n} is not an integer")));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sort explicitly: serde_json's map is ordered only without its
            // `preserve_order` feature, which another crate could turn on.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '"' => out.extend_from_slice(b"\\\""),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value) -> String {
        String::from_utf8(encode(&v).unwrap()).unwrap()
    }

    #[test]
    fn keys_are_sorted_and_there_is_no_whitespace() {
        let v = json!({"b": [1, -2, {"z": null, "a": true}], "a": "x", "B": false});
        assert_eq!(canon(v), r#"{"B":false,"a":"x","b":[1,-2,{"a":true,"z":null}]}"#);
    }

    #[test]
    fn only_backslash_and_quote_are_escaped() {
        let v = json!({"k": "a\"b\\c\nd\u{1}é€"});
        assert_eq!(canon(v), "{\"k\":\"a\\\"b\\\\c\nd\u{1}é€\"}");
    }

    #[test]
    fn keys_sort_by_code_point_like_python() {
        // 'é' (U+00E9) sorts after 'z'; '€' (U+20AC) after 'é'.
        let v = json!({"€": 1, "é": 2, "z": 3, "Z": 4});
        assert_eq!(canon(v), r#"{"Z":4,"z":3,"é":2,"€":1}"#);
    }

    #[test]
    fn floats_and_huge_integers_are_refused() {
        assert!(encode(&json!({"x": 1.5})).is_err());
        let huge: Value = serde_json::from_str("[123456789012345678901234567890]").unwrap();
        assert!(encode(&huge).is_err());
        assert_eq!(canon(json!([u64::MAX, i64::MIN])), format!("[{},{}]", u64::MAX, i64::MIN));
    }
}
