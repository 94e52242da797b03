//! The XML-RPC codec, on `dxr`, with Koji's conventions.
//!
//! - Keyword arguments travel as a trailing struct with the member `__starstar: true`
//!   (`koji.encode_args`); the hub turns it back into Python kwargs.
//! - `<nil/>` is always allowed and `<i8>` carries integers beyond 32 bits.
//! - Datetimes arrive as strings; typed responses use the `*_ts` doubles instead.
//!
//! Typed requests and responses go through `serde_json::Value` as an intermediate form: it keeps
//! response structs tolerant of new fields (`#[serde(default)]`, unknown members ignored) and lets
//! request builders derive `Serialize`.

use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use dxr::Value;

use crate::error::{Error, Fault, Result};

/// Keyword arguments of a call, in order.
pub type Kwargs = Vec<(String, Value)>;

/// The member name that marks a trailing struct as keyword arguments.
pub(crate) const STARSTAR: &str = "__starstar";

/// Serialise a method call. `kwargs` become the trailing `__starstar` struct when not empty.
pub(crate) fn encode_call(method: &str, args: &[Value], kwargs: &[(String, Value)]) -> Result<String> {
    let mut params = args.to_vec();
    if !kwargs.is_empty() {
        let mut members: std::collections::BTreeMap<String, Value> = kwargs.iter().cloned().collect();
        members.insert(STARSTAR.into(), Value::Boolean(true));
        params.push(Value::Struct(members));
    }
    let call = dxr::MethodCall {
        name: method.into(),
        params,
    };
    let body = call.to_xml().map_err(|e| Error::Encode {
        method: method.into(),
        reason: e.to_string(),
    })?;
    Ok(format!("<?xml version='1.0'?>\n{body}\n"))
}

/// Parse a method response: the returned value, or the hub's fault as [`Error::Fault`].
pub(crate) fn decode_response(method: &str, body: &str) -> Result<Value> {
    if let Ok(resp) = dxr::MethodResponse::from_xml(body) {
        return Ok(resp.value);
    }
    if let Some(fault) = parse_fault(body) {
        return Err(Error::Fault {
            method: method.into(),
            fault,
        });
    }
    let snippet = crate::redact::peer_text_within(body, 120);
    let reason = if body.trim().is_empty() {
        "empty body".to_string()
    } else if !body.contains("</methodResponse>") {
        format!("truncated or not a methodResponse, starts with {snippet:?}")
    } else {
        format!("malformed methodResponse, starts with {snippet:?}")
    };
    Err(Error::InvalidResponse {
        method: method.into(),
        reason,
    })
}

/// Koji's fault responses hold a struct with `faultCode` and `faultString` (newer hubs may add members
/// such as `traceback`, which dxr's strict fault type would refuse), so the struct is read leniently.
fn parse_fault(body: &str) -> Option<Fault> {
    let start = body.find("<fault>")? + "<fault>".len();
    let end = body[start..].find("</fault>")? + start;
    let value = Value::from_xml(body[start..end].trim()).ok()?;
    fault_from_struct(&value)
}

/// A `{faultCode, faultString}` struct as a [`Fault`] (as in a multicall entry or a task result).
pub(crate) fn fault_from_struct(value: &Value) -> Option<Fault> {
    let Value::Struct(members) = value else {
        return None;
    };
    let code = match members.get("faultCode")? {
        Value::Integer(i) => *i,
        Value::Long(l) => i32::try_from(*l).ok()?,
        _ => return None,
    };
    let message = match members.get("faultString") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    Some(Fault::new(code, message))
}

/// Encode any `Serialize` value as an XML-RPC value.
///
/// Integers that fit 32 bits become `<int>`, larger ones `<i8>`; `None`/unit become `<nil/>`.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    let json = serde_json::to_value(value).map_err(|e| Error::Encode {
        method: String::new(),
        reason: e.to_string(),
    })?;
    json_to_value(json).map_err(|reason| Error::Encode {
        method: String::new(),
        reason,
    })
}

/// Decode an XML-RPC value into any `DeserializeOwned` type.
///
/// `<dateTime.iso8601>` becomes its string form and `<base64>` a base64 string.
pub fn from_value<T: DeserializeOwned>(value: Value) -> std::result::Result<T, String> {
    serde_json::from_value(value_to_json(value)).map_err(|e| e.to_string())
}

fn json_to_value(json: serde_json::Value) -> std::result::Result<Value, String> {
    use serde_json::Value as J;
    Ok(match json {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                match i32::try_from(i) {
                    Ok(small) => Value::Integer(small),
                    Err(_) => Value::Long(i),
                }
            } else if let Some(f) = n.as_f64() {
                if n.is_u64() {
                    return Err(format!("integer {n} does not fit XML-RPC's i8"));
                }
                Value::Double(f)
            } else {
                return Err(format!("number {n} cannot be encoded"));
            }
        }
        J::String(s) => Value::String(s),
        J::Array(items) => Value::Array(items.into_iter().map(json_to_value).collect::<Result<_, _>>()?),
        J::Object(map) => Value::Struct(
            map.into_iter()
                .map(|(k, v)| Ok((k, json_to_value(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

pub(crate) fn value_to_json(value: Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Integer(i) => J::from(i),
        Value::Long(l) => J::from(l),
        Value::Boolean(b) => J::Bool(b),
        Value::String(s) => J::String(s),
        Value::Double(d) => serde_json::Number::from_f64(d).map_or(J::Null, J::Number),
        Value::DateTime(dt) => J::String(dt.to_string()),
        Value::Base64(bytes) => J::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        Value::Struct(members) => J::Object(members.into_iter().map(|(k, v)| (k, value_to_json(v))).collect()),
        Value::Array(items) => J::Array(items.into_iter().map(value_to_json).collect()),
        Value::Nil => J::Null,
        // `Value` is non-exhaustive; a future dxr type is kept visible rather than dropped.
        other => J::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kwargs_travel_as_a_trailing_starstar_struct() {
        let xml = encode_call(
            "getTaskInfo",
            &[Value::Integer(4242)],
            &[("request".into(), Value::Boolean(true))],
        )
        .unwrap();
        let call = dxr::MethodCall::from_xml(xml.trim_start_matches("<?xml version='1.0'?>\n").trim()).unwrap();
        assert_eq!(call.name, "getTaskInfo");
        assert_eq!(call.params.len(), 2);
        let Value::Struct(kw) = &call.params[1] else {
            panic!("no struct")
        };
        assert_eq!(kw.get(STARSTAR), Some(&Value::Boolean(true)));
        assert_eq!(kw.get("request"), Some(&Value::Boolean(true)));
    }

    #[test]
    fn large_integers_become_i8_and_none_becomes_nil() {
        assert_eq!(to_value(&5_000_000_000i64).unwrap(), Value::Long(5_000_000_000));
        assert_eq!(to_value(&7i64).unwrap(), Value::Integer(7));
        assert_eq!(to_value(&Option::<i32>::None).unwrap(), Value::Nil);
    }

    #[test]
    fn a_fault_response_becomes_a_typed_fault() {
        let body = include_str!("../tests/fixtures/xml/fault.xml");
        let err = decode_response("buildImageOz", body).unwrap_err();
        let fault = err.fault().unwrap();
        assert_eq!(fault.code, 1005);
        assert_eq!(fault.kind, crate::FaultKind::BuildError);
        assert_eq!(fault.message, "Invalid arch for build tag: ppc64le");
    }

    #[test]
    fn garbage_and_truncated_bodies_are_invalid_responses() {
        for body in [
            "<html><body>502 Bad Gateway</body></html>",
            "",
            "<?xml version='1.0'?>\n<methodResponse><params><param><value><int>1",
        ] {
            let err = decode_response("getAPIVersion", body).unwrap_err();
            assert!(matches!(err, Error::InvalidResponse { .. }), "{body:?}: {err}");
        }
    }

    #[test]
    fn i8_values_and_nil_decode() {
        let body = include_str!("../tests/fixtures/xml/createImage_result.xml");
        let value = decode_response("getTaskResult", body).unwrap();
        let json = value_to_json(value);
        assert!(json.to_string().contains("task_id"));
    }
}
