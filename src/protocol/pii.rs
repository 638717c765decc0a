//! Which parts of a FaceID result identify a person, and how to mask them.
//!
//! Owns the masking rule applied to `result` for API callers without the `pii` scope:
//! - the subtrees `idcard_info`, `ocr_front_quality` and `ocr_back_quality` (FaceID nests the
//!   latter two inside `idcard_info` in lite 2.0; they are matched at the top level too, in
//!   case a seed's shape varies) hold the ID card: number, names, address, birthday, issuing
//!   authority, valid dates and every OCR result;
//! - inside them every string leaf becomes [`MASK`], and so does every number leaf except the
//!   scores that say nothing about the person (`legality.*`, `quality`, `logic`,
//!   `upload_times`) — FaceID's examples sometimes send strings as numbers, and an ID number
//!   that arrives as a number must not slip through;
//! - the structure is kept (keys, objects, arrays, booleans, nulls), so a caller can still see
//!   which fields FaceID filled in, and everything outside those subtrees (status, liveness,
//!   verify scores, biz_info, time_used) is untouched.
//!
//! Choice: values are replaced rather than subtrees dropped, because consumers written
//! against the full shape keep parsing it, and "present but hidden" differs from "absent".
//!
//! Invariant: pure (no I/O); masking never fails — text that is not a JSON object is hidden
//! entirely (it cannot be told apart safely).

use serde_json::{Map, Value};

/// What a masked value reads as.
pub const MASK: &str = "***";

/// The API scope that lets a caller see identity data and image bytes.
pub const PII_SCOPE: &str = "pii";

/// Subtrees that hold identity data.
const IDENTITY_SUBTREES: [&str; 3] = ["idcard_info", "ocr_front_quality", "ocr_back_quality"];

/// Metadata strings inside the identity subtrees that identify nobody.
const KEEP_STRINGS: [&str; 3] = [
    "idcard_mode",
    "idcard_uneditable_field",
    // FaceID's own misspelling, seen in the seeds.
    "idcard_uneditable_feild",
];

/// Scores inside the identity subtrees that identify nobody.
const KEEP_NUMBERS: [&str; 3] = ["quality", "logic", "upload_times"];

/// The masked copy of raw result text, read as [`super::payload::parse_object`] reads it (so
/// a lone surrogate or `1e999` in it does not hide the whole result). Text that is not a JSON
/// object becomes `{}`.
pub fn mask_result(raw: &str) -> Value {
    match super::payload::parse_object(raw.as_bytes()) {
        Ok((_, mut object)) => {
            mask_object(&mut object);
            Value::Object(object)
        }
        Err(_) => Value::Object(Map::new()),
    }
}

/// Masks the identity subtrees of a parsed result in place.
pub fn mask_object(object: &mut Map<String, Value>) {
    for key in IDENTITY_SUBTREES {
        if let Some(subtree) = object.get_mut(key) {
            mask_subtree(subtree, None, false);
        }
    }
}

/// `key` is the key `value` sits under (None in arrays); `scores` is true below `legality`.
fn mask_subtree(value: &mut Value, key: Option<&str>, scores: bool) {
    match value {
        Value::Object(object) => {
            for (child_key, child) in object.iter_mut() {
                let scores = scores || child_key == "legality";
                mask_subtree(child, Some(child_key), scores);
            }
        }
        Value::Array(items) => {
            for item in items {
                mask_subtree(item, key, scores);
            }
        }
        Value::String(_) if key.is_some_and(|k| KEEP_STRINGS.contains(&k)) => {}
        Value::Number(_) if scores || key.is_some_and(|k| KEEP_NUMBERS.contains(&k)) => {}
        Value::String(_) | Value::Number(_) => *value = Value::String(MASK.to_owned()),
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../tests/vectors/seed_get_result_ok.json");

    #[test]
    fn the_seed_loses_every_identity_value_and_keeps_the_rest() {
        let masked = mask_result(SEED);
        let text = masked.to_string();
        for secret in [
            "xxxxxx19910602xxxx",
            "陈AB",
            "陈XX",
            "北京市公安局",
            "北京市海淀区",
            "2010.11.13-2020.11.13",
            "1991",
            "汉",
        ] {
            assert!(!text.contains(secret), "{secret} survived masking");
        }
        let id = &masked["idcard_info"];
        assert_eq!(id["idcard_number"], MASK);
        assert_eq!(id["idcard_name"], MASK);
        assert_eq!(id["front_side"]["ocr_result"]["birthday"]["year"], MASK);
        assert_eq!(id["back_side"]["ocr_result"]["valid_date"], MASK);
        // Metadata and scores stay.
        assert_eq!(id["idcard_mode"], "1");
        assert_eq!(id["front_side"]["upload_times"], 1);
        assert_eq!(
            id["front_side"]["ocr_result"]["legality"]["ID Photo"],
            0.855
        );
        // Outside the identity subtrees nothing changes.
        let original: Value = serde_json::from_str(SEED).unwrap();
        for key in [
            "status",
            "liveness_result",
            "verify_result",
            "biz_info",
            "time_used",
        ] {
            assert_eq!(masked[key], original[key], "{key} changed");
        }
    }

    #[test]
    fn quality_results_are_masked_but_their_scores_kept() {
        let raw = r#"{"status":"OK","idcard_info":{"ocr_front_quality":{"gender":{"quality":0.925,"logic":0,"result":"男"}}},
                      "ocr_back_quality":{"valid_date":{"quality":0.9,"result":"2010.11.13-2020.11.13"}}}"#;
        let masked = mask_result(raw);
        let front = &masked["idcard_info"]["ocr_front_quality"]["gender"];
        assert_eq!(front["result"], MASK);
        assert_eq!(front["quality"], 0.925);
        assert_eq!(front["logic"], 0);
        assert_eq!(masked["ocr_back_quality"]["valid_date"]["result"], MASK);
    }

    #[test]
    fn an_id_number_sent_as_a_number_is_masked_too() {
        let masked = mask_result(
            r#"{"idcard_info":{"idcard_number":110101199003070000,"names":["a","b"]}}"#,
        );
        assert_eq!(masked["idcard_info"]["idcard_number"], MASK);
        assert_eq!(
            masked["idcard_info"]["names"],
            serde_json::json!([MASK, MASK])
        );
    }

    #[test]
    fn text_that_is_not_an_object_is_hidden_entirely() {
        assert_eq!(mask_result("not json"), serde_json::json!({}));
        assert_eq!(mask_result("[\"陈AB\"]"), serde_json::json!({}));
    }
}
