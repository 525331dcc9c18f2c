//! JSON text exactly as Python's `json.dumps(value)` prints it by default.

use std::fmt::Write as _;

use serde_json::{Number, Value};

/// Renders `value` as Python's `json.dumps(value)` does with its defaults:
/// separators `", "` and `": "`, no newlines, and `ensure_ascii=True`
/// (every character outside printable ASCII escaped as lowercase `\uXXXX`,
/// as a surrogate pair beyond the BMP; `\n`, `\r`, `\t`, `\b`, `\f`, `"` and
/// `\` with their short escapes). Floats print like Python's `repr`
/// (`1.0`, `1e+16`, `1e-05`).
///
/// Objects print in the order `serde_json` keeps their keys: sorted, unless
/// its `preserve_order` feature is on. Python keeps insertion order, so only
/// objects whose keys were inserted sorted compare byte for byte.
///
/// ```
/// use rpc_discovery::plan::render_json;
/// use serde_json::json;
///
/// assert_eq!(render_json(&json!(["hi", 1.0, {"k": "é"}])), r#"["hi", 1.0, {"k": "\u00e9"}]"#);
/// ```
pub fn render_json(value: &Value) -> String {
    let mut out = String::new();
    render_json_into(value, &mut out);
    out
}

/// Appends the rendering of `value` to `out`.
pub(super) fn render_json_into(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => render_number(n, out),
        Value::String(s) => render_string_into(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_json_into(item, out);
            }
            out.push(']');
        }
        Value::Object(object) => {
            out.push('{');
            for (i, (key, item)) in object.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_string_into(key, out);
                out.push_str(": ");
                render_json_into(item, out);
            }
            out.push('}');
        }
    }
}

/// Appends `s` as a quoted JSON string with `ensure_ascii` escaping.
pub(super) fn render_string_into(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

fn render_number(n: &Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        render_float(f, out);
    } else {
        // Only reachable with serde_json's arbitrary_precision feature,
        // where the number keeps its source text.
        let _ = write!(out, "{n}");
    }
}

/// Python's `float.__repr__`: the shortest digits that round-trip, in fixed
/// notation when the decimal exponent is in `-4 < decpt <= 16`, else in
/// exponent notation with a signed exponent of at least two digits.
fn render_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    // Rust's `{:e}` prints the shortest round-trip digits as `d.ddde±x`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // The value is 0.DIGITS * 10^decpt.
    let decpt = exp + 1;
    if negative {
        out.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.unsigned_abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', decpt.unsigned_abs() as usize));
        out.push_str(&digits);
    } else {
        let decpt = decpt.unsigned_abs() as usize;
        if decpt < digits.len() {
            out.push_str(&digits[..decpt]);
            out.push('.');
            out.push_str(&digits[decpt..]);
        } else {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', decpt - digits.len()));
            out.push_str(".0");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check(value: Value, expect: &str) {
        assert_eq!(render_json(&value), expect);
    }

    #[track_caller]
    fn check_float(f: f64, expect: &str) {
        let mut out = String::new();
        render_float(f, &mut out);
        assert_eq!(out, expect, "{f:?}");
    }

    #[test]
    fn containers() {
        check(json!([]), "[]");
        check(json!({}), "{}");
        check(
            json!([1, [2, 3], {"a": null}]),
            r#"[1, [2, 3], {"a": null}]"#,
        );
        check(json!({"b": true, "a": false}), r#"{"a": false, "b": true}"#);
    }

    #[test]
    fn strings() {
        check(json!("hi there!"), r#""hi there!""#);
        check(json!("q\"b\\"), r#""q\"b\\""#);
        check(json!("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        check(json!("\u{1}\u{1f}\u{7f}"), r#""\u0001\u001f\u007f""#);
        check(json!("é€"), r#""\u00e9\u20ac""#);
        check(json!("😀"), r#""\ud83d\ude00""#);
        check(json!("/"), r#""/""#);
    }

    #[test]
    fn numbers() {
        check(json!(0), "0");
        check(json!(-7), "-7");
        check(json!(u64::MAX), "18446744073709551615");
        check_float(1.0, "1.0");
        check_float(-0.0, "-0.0");
        check_float(0.0, "0.0");
        check_float(0.5, "0.5");
        check_float(123.456, "123.456");
        check_float(0.1 + 0.2, "0.30000000000000004");
        check_float(1e15, "1000000000000000.0");
        check_float(1e16, "1e+16");
        check_float(1.5e16, "1.5e+16");
        check_float(123456789012345680.0, "1.2345678901234568e+17");
        check_float(0.0001, "0.0001");
        check_float(0.00001, "1e-05");
        check_float(-2.5e-7, "-2.5e-07");
        check_float(1e300, "1e+300");
        check_float(5e-324, "5e-324");
        check_float(f64::INFINITY, "Infinity");
        check_float(f64::NAN, "NaN");
    }
}
