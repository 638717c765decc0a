//! Which parts of a FaceID result identify a person, and how to mask them.
//!
//! Owns the masking rule applied to `result` for API callers without the `pii` scope:
//! - a key that names identity data is masked **wherever it appears**, at any depth: the ID
//!   card subtrees (`idcard_info`, its `front_side`/`back_side`, every `ocr_result`, and
//!   `ocr_front_quality`/`ocr_back_quality`, which lite 2.0 nests in `idcard_info` but which
//!   are matched anywhere), the identity fields FaceID names in the seeds (`idcard_number`,
//!   `idcard_name`, `id_card_number`, `name`, `address`, `birthday`, `birth_*`, `gender`,
//!   `race`, `nationality`, `issued_by`, `valid_date*`, …), `biz_extra_data` (the merchant's
//!   free text, passed through by FaceID: it may hold anything), and images (`images`,
//!   `image_*`);
//! - under such a key every string leaf becomes [`MASK`], and so does every number leaf except
//!   the scores that say nothing about the person (`legality.*`, `quality`, `logic`,
//!   `upload_times`) — FaceID's examples sometimes send strings as numbers, and an ID number
//!   that arrives as a number must not slip through;
//! - anywhere else, a string that is an image (`data:` URL) is masked too;
//! - the structure is kept (keys, objects, arrays, booleans, nulls), so a caller can still see
//!   which fields FaceID filled in, and everything else (status, liveness, verify scores,
//!   `biz_id`, `biz_no`, time_used) is untouched.
//!
//! Also owns the masking of a network address ([`mask_address`]) for the journal.
//!
//! Choice: values are replaced rather than subtrees dropped, because consumers written
//! against the full shape keep parsing it, and "present but hidden" differs from "absent".
//!
//! Invariant: pure (no I/O); masking never fails — text that is not a JSON object is hidden
//! entirely (it cannot be told apart safely).

use std::net::IpAddr;

use serde_json::{Map, Value};

/// What a masked value reads as.
pub const MASK: &str = "***";

/// The API scope that lets a caller see identity data and image bytes.
pub const PII_SCOPE: &str = "pii";

/// Keys whose whole value is identity data, wherever they appear.
const IDENTITY_KEYS: [&str; 26] = [
    // The ID card, its two sides and what OCR read off them.
    "idcard_info",
    "front_side",
    "back_side",
    "ocr_result",
    "ocr_front_quality",
    "ocr_back_quality",
    // Identity fields, by every name the seeds use for them.
    "idcard_number",
    "idcard_name",
    "idcard_valid_date",
    "idcard_issued_by",
    "id_card_number",
    "name",
    "address",
    "birthday",
    "birth_year",
    "birth_month",
    "birth_day",
    "gender",
    "race",
    "nationality",
    "issued_by",
    "valid_date",
    "valid_date_start",
    "valid_date_end",
    // The merchant's free text from get_token.
    "biz_extra_data",
    // Pictures (get_result's, or any a callback carried).
    "images",
];

/// Image keys outside `images` (`image_best`, `image_idcard_front`, RAW's `image_best_2`, …).
const IMAGE_KEY_PREFIX: &str = "image_";

/// Metadata strings inside identity values that identify nobody.
const KEEP_STRINGS: [&str; 3] = [
    "idcard_mode",
    "idcard_uneditable_field",
    // FaceID's own misspelling, seen in the seeds.
    "idcard_uneditable_feild",
];

/// Scores inside identity values that identify nobody.
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

/// Masks the identity data of a parsed result in place, at any depth.
pub fn mask_object(object: &mut Map<String, Value>) {
    for (key, value) in object.iter_mut() {
        if is_identity_key(key) {
            mask_subtree(value, Some(key), false);
        } else {
            mask_anywhere(value);
        }
    }
}

fn is_identity_key(key: &str) -> bool {
    IDENTITY_KEYS.contains(&key) || key.starts_with(IMAGE_KEY_PREFIX)
}

/// Looks for identity keys and images below a value that is not identity data itself.
fn mask_anywhere(value: &mut Value) {
    match value {
        Value::Object(object) => mask_object(object),
        Value::Array(items) => items.iter_mut().for_each(mask_anywhere),
        Value::String(text) if is_image(text) => *value = Value::String(MASK.to_owned()),
        _ => {}
    }
}

/// `data:image/…` (whitespace tolerated, as in the seeds' `"data: image/jpeg;base64,..."`).
fn is_image(text: &str) -> bool {
    let start: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(11)
        .collect();
    start.eq_ignore_ascii_case("data:image/")
}

/// Masks every value of an identity subtree. `key` is the key `value` sits under (None in
/// arrays); `scores` is true below `legality`.
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

/// A journal address with each IP cut to its network: `203.0.113.7 via 127.0.0.1` becomes
/// `203.0.113.*** via 127.0.0.***`, an IPv6 address keeps its first three groups
/// (`2001:db8:1:***`). Anything that is not an address (other than the word `via`) is
/// masked whole.
pub fn mask_address(text: &str) -> String {
    text.split(' ')
        .map(|part| match part.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => {
                let [a, b, c, _] = ip.octets();
                format!("{a}.{b}.{c}.{MASK}")
            }
            Ok(IpAddr::V6(ip)) => {
                let [a, b, c, ..] = ip.segments();
                format!("{a:x}:{b:x}:{c:x}:{MASK}")
            }
            Err(_) if part == "via" => part.to_owned(),
            Err(_) => MASK.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../../tests/vectors/seed_get_result_ok.json");

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
        for key in ["status", "liveness_result", "verify_result", "time_used"] {
            assert_eq!(masked[key], original[key], "{key} changed");
        }
        // The merchant's references stay; its free text does not.
        assert_eq!(masked["biz_info"]["biz_id"], original["biz_info"]["biz_id"]);
        assert_eq!(masked["biz_info"]["biz_no"], original["biz_info"]["biz_no"]);
        assert_eq!(masked["biz_info"]["biz_extra_data"], MASK);
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
    fn identity_keys_are_masked_at_any_depth_and_the_merchant_s_free_text_too() {
        let masked = mask_result(
            r#"{"status":"OK","idcard_name":"李四","idcard_number":"110101199001010011",
                "biz_info":{"biz_id":"1462259748,x","biz_no":"order-1","biz_extra_data":"{\"id\":\"1101\"}"},
                "extra":{"steps":[{"ocr_result":{"name":"赵六","legality":{"Edited":0.1}}},
                                  {"person":{"birthday":{"year":1990,"month":"1"},"address":"上海"}}]},
                "liveness_result":{"result":"PASS","name_hint":"kept"}}"#,
        );
        assert_eq!(masked["idcard_name"], MASK);
        assert_eq!(masked["idcard_number"], MASK);
        assert_eq!(masked["biz_info"]["biz_extra_data"], MASK);
        assert_eq!(masked["biz_info"]["biz_id"], "1462259748,x");
        assert_eq!(masked["biz_info"]["biz_no"], "order-1");
        let steps = &masked["extra"]["steps"];
        assert_eq!(steps[0]["ocr_result"]["name"], MASK);
        assert_eq!(steps[0]["ocr_result"]["legality"]["Edited"], 0.1);
        assert_eq!(steps[1]["person"]["birthday"]["year"], MASK);
        assert_eq!(steps[1]["person"]["address"], MASK);
        assert_eq!(masked["liveness_result"]["result"], "PASS");
        assert_eq!(masked["liveness_result"]["name_hint"], "kept");
    }

    #[test]
    fn images_are_masked_by_key_and_by_shape() {
        let masked = mask_result(
            r#"{"images":{"image_best":"data:image/jpeg;base64,/9j/"},"image_best_2":"/9j/4AAQ",
                "deep":[{"photo":"DATA: image/jpeg;base64,/9j/"}],"note":"data about nothing"}"#,
        );
        assert_eq!(masked["images"]["image_best"], MASK);
        assert_eq!(masked["image_best_2"], MASK);
        assert_eq!(masked["deep"][0]["photo"], MASK);
        assert_eq!(masked["note"], "data about nothing");
    }

    #[test]
    fn addresses_keep_only_their_network() {
        assert_eq!(mask_address("203.0.113.7"), "203.0.113.***");
        assert_eq!(
            mask_address("203.0.113.7 via 127.0.0.1"),
            "203.0.113.*** via 127.0.0.***"
        );
        assert_eq!(mask_address("2001:db8:1:2::7"), "2001:db8:1:***");
        assert_eq!(mask_address("evil<script>"), MASK);
    }

    #[test]
    fn text_that_is_not_an_object_is_hidden_entirely() {
        assert_eq!(mask_result("not json"), serde_json::json!({}));
        assert_eq!(mask_result("[\"陈AB\"]"), serde_json::json!({}));
    }
}
