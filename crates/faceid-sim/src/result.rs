//! Generated FaceID results: the JSON the simulator serves from get_result (Lite and RAW) and
//! signs into callbacks, shaped like the seeds' examples but with obviously fake identity data.
//!
//! Rules kept from the seeds: `NOT_STARTED` and `PROCESSING` carry no `idcard_info`,
//! `liveness_result` or `verify_result`; neither do flows the user interrupted (`CANCELLED`,
//! `TIMEOUT`, `WEBRTC_UNSUPPORTED`), since "如果用户中途中断了活体流程,则此字段不返回". Images
//! appear only in get_result answers, chosen by `return_image`, as
//! `data:image/jpeg;base64,<jpeg>` strings; callbacks never carry them.

use base64::Engine;
use serde_json::{Map, Value, json};

use faceid_protocol::Status;

/// An 8×8 mid-grey baseline JPEG (155 bytes), built by hand: JFIF header, an all-ones
/// quantisation table, one-code Huffman tables, and a single block whose DC and AC are both
/// "nothing" — small enough to inline, yet a real image any decoder opens.
pub const TINY_JPEG: &[u8] = &[
    0xff, 0xd8, // SOI
    0xff, 0xe0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01,
    0x00, 0x00, // APP0 JFIF 1.1, 1:1 aspect
    0xff, 0xdb, 0x00, 0x43, 0x00, // DQT table 0, then 64 ones
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, // end of DQT
    0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x08, 0x00, 0x08, 0x01, 0x01, 0x11,
    0x00, // SOF0 8-bit 8×8, one component
    0xff, 0xc4, 0x00, 0x26, // DHT: DC table 0 and AC table 0, each one 1-bit code for 0x00
    0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, //
    0x10, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, //
    0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00, // SOS
    0x3f, // DC diff 0 ("0"), EOB ("0"), padded with ones
    0xff, 0xd9, // EOI
];

/// `TINY_JPEG` as FaceID writes images: a data URI.
pub fn jpeg_data_uri() -> String {
    format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(TINY_JPEG)
    )
}

/// FaceID's request_id shape: `<epoch seconds>,<uuid>`.
pub fn request_id(now_ms: i64) -> String {
    format!("{},{}", now_ms.div_euclid(1000), uuid::Uuid::new_v4())
}

/// A fresh biz_id created at `created_at_ms`: `<epoch seconds>,<uuid>`, like FaceID's.
pub fn mint_biz_id(created_at_ms: i64) -> String {
    request_id(created_at_ms)
}

/// What a generated result is about; the parts a test may want to choose.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub biz_id: String,
    pub biz_no: String,
    pub biz_extra_data: String,
    /// `liveness_result.result`; `None` means PASS for `OK` and FAIL otherwise.
    pub liveness: Option<String>,
    /// `verify_result.result_faceid.confidence`.
    pub confidence: f64,
    /// When the user finished the flow, in epoch seconds (`verify_time`).
    pub verify_time: i64,
}

pub const DEFAULT_CONFIDENCE: f64 = 76.5;

impl Subject {
    /// A subject with defaults: a random biz_no, empty extra data, a passing confidence.
    pub fn new(biz_id: impl Into<String>, verify_time: i64) -> Self {
        Self {
            biz_id: biz_id.into(),
            biz_no: uuid::Uuid::new_v4().to_string(),
            biz_extra_data: String::new(),
            liveness: None,
            confidence: DEFAULT_CONFIDENCE,
            verify_time,
        }
    }

    fn liveness_for(&self, status: &Status) -> String {
        self.liveness.clone().unwrap_or_else(|| {
            if *status == Status::Ok {
                "PASS".into()
            } else {
                "FAIL".into()
            }
        })
    }
}

/// Which results carry liveness, comparison and ID-card sections: flows that ran to the end.
fn has_outcome(status: &Status) -> bool {
    matches!(status, Status::Ok | Status::Failed)
}

/// get_result's options that shape the answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// 0–6 for Lite, 0–2 for RAW (validated by the server).
    pub return_image: u8,
    pub return_verify_time: bool,
}

/// A Lite result (get_result or callback `data`), fields in the seed example's order.
/// `images` and `time_used` are added by the caller where they apply.
fn lite_base(
    subject: &Subject,
    status_text: &str,
    request_id: &str,
    verify_time: bool,
) -> Map<String, Value> {
    let status = Status::parse(status_text);
    let mut out = Map::new();
    out.insert("request_id".into(), json!(request_id));
    out.insert("status".into(), json!(status_text));
    out.insert(
        "biz_info".into(),
        json!({
            "biz_extra_data": subject.biz_extra_data,
            "biz_id": subject.biz_id,
            "biz_no": subject.biz_no,
        }),
    );
    if has_outcome(&status) {
        out.insert("idcard_info".into(), fake_idcard_info());
        out.insert(
            "liveness_result".into(),
            lite_liveness(&subject.liveness_for(&status)),
        );
        let mut verify = json!({
            "error_message": null,
            "result_faceid": comparison(subject.confidence),
            "result_idcard_photo": comparison(subject.confidence),
            "id_exceptions": { "id_attacked": 0, "id_photo_monochrome": 0 },
        });
        if verify_time {
            verify["verify_time"] = json!(subject.verify_time);
        }
        out.insert("verify_result".into(), verify);
    }
    out
}

/// The answer of `GET /faceid/lite/get_result`.
pub fn lite_get_result(
    subject: &Subject,
    status_text: &str,
    request_id: &str,
    options: Options,
    time_used: u64,
) -> Value {
    let mut out = lite_base(subject, status_text, request_id, options.return_verify_time);
    if has_outcome(&Status::parse(status_text)) && options.return_image != 0 {
        let names: &[&str] = match options.return_image {
            1 => &["image_best"],
            2 => &["image_idcard_front"],
            3 => &["image_idcard_back"],
            4 => &["image_best", "image_idcard_front", "image_idcard_back"],
            5 => &["image_face_front"],
            6 => &["image_face_side"],
            _ => &[],
        };
        let uri = jpeg_data_uri();
        let images: Map<String, Value> = names
            .iter()
            .map(|n| ((*n).to_owned(), json!(uri)))
            .collect();
        out.insert("images".into(), Value::Object(images));
    }
    out.insert("time_used".into(), json!(time_used));
    Value::Object(out)
}

/// The `data` of a notify or return callback: the Lite result without images.
pub fn callback_data(subject: &Subject, status_text: &str, request_id: &str) -> String {
    let mut out = lite_base(subject, status_text, request_id, false);
    out.insert("time_used".into(), json!(0));
    Value::Object(out).to_string()
}

/// The answer of `GET /faceid/lite/raw/get_result` (seed 002): `biz_no` at the top level, a
/// flash-style liveness with `score`, and images as top-level `image_best` / `image_best_2`.
pub fn raw_get_result(
    subject: &Subject,
    status_text: &str,
    request_id: &str,
    options: Options,
    time_used: u64,
) -> Value {
    let status = Status::parse(status_text);
    let mut out = Map::new();
    out.insert("request_id".into(), json!(request_id));
    out.insert("biz_no".into(), json!(subject.biz_no));
    out.insert("time_used".into(), json!(time_used));
    out.insert("status".into(), json!(status_text));
    if has_outcome(&status) {
        out.insert(
            "liveness_result".into(),
            json!({
                "result": subject.liveness_for(&status),
                "details": detail_counts(),
                "score": { "flash_attack": 0.02, "living_attack": 0.01 },
            }),
        );
        out.insert(
            "verify_result".into(),
            json!({
                "error_message": null,
                "result_faceid": comparison(subject.confidence),
                "result_ref1": comparison(subject.confidence),
            }),
        );
        if options.return_image >= 1 {
            out.insert("image_best".into(), json!(jpeg_data_uri()));
        }
        if options.return_image >= 2 {
            out.insert("image_best_2".into(), json!(jpeg_data_uri()));
        }
    }
    Value::Object(out)
}

fn comparison(confidence: f64) -> Value {
    json!({
        "confidence": confidence,
        "thresholds": { "1e-3": 62.169, "1e-4": 69.315, "1e-5": 74.399, "1e-6": 78.038 },
    })
}

fn detail_counts() -> Value {
    json!({
        "FACE_NOT_FOUND": 0, "SIDE_FACE": 0, "UPDOWN_FACE": 0, "EYE_OCCLUSION": 0,
        "MOUTH_OCCLUSION": 0, "AWAY_FROM_CAMERA": 0, "CLOSE_TO_CAMERA": 1,
        "FACE_OUT_OF_CAMERA": 0, "HIGH_BRIGHTNESS": 0, "LOW_BRIGHTNESS": 0, "LOW_FACE_QUALITY": 0,
    })
}

fn lite_liveness(result: &str) -> Value {
    json!({
        "procedure_type": "still",
        "still_type": "STILL_WEBRTC",
        "result": result,
        "details": detail_counts(),
        "face_genuineness": {
            "synthetic_face_confidence": 0.02, "synthetic_face_threshold": 0.5,
            "mask_confidence": 0.01, "mask_threshold": 0.5,
            "screen_replay_confidence": 0.03, "screen_replay_threshold": 0.5,
        },
    })
}

/// Identity data that cannot belong to anyone: region code 000000, born 1900-01-01, a name
/// that reads "test simulation", an issuer and address marked as test data.
pub const FAKE_IDCARD_NUMBER: &str = "000000190001010000";
pub const FAKE_IDCARD_NAME: &str = "测试模拟";

fn fake_idcard_info() -> Value {
    let issued_by = "模拟公安局（测试数据）";
    let valid_date = "2000.01.01-2099.12.31";
    json!({
        "idcard_mode": "1",
        "idcard_uneditable_field": "idcard_number",
        "idcard_number": FAKE_IDCARD_NUMBER,
        "idcard_name": FAKE_IDCARD_NAME,
        "idcard_valid_date": valid_date,
        "idcard_issued_by": issued_by,
        "front_side": {
            "ocr_result": {
                "address": "模拟省测试市示例路1号（测试数据）",
                "birthday": { "day": "1", "month": "1", "year": "1900" },
                "gender": "男",
                "id_card_number": FAKE_IDCARD_NUMBER,
                "name": FAKE_IDCARD_NAME,
                "race": "汉",
            },
            "upload_times": 1,
        },
        "back_side": {
            "ocr_result": { "issued_by": issued_by, "valid_date": valid_date },
            "upload_times": 1,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject::new(
            "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1",
            1_462_259_760,
        )
    }

    #[test]
    fn the_tiny_jpeg_is_a_well_formed_baseline_8x8_jpeg() {
        assert_eq!(&TINY_JPEG[..2], [0xff, 0xd8], "starts with SOI");
        // Walk the segments by their length fields: each must land exactly on the next marker.
        let mut at = 2;
        let mut markers = Vec::new();
        loop {
            assert_eq!(TINY_JPEG[at], 0xff, "a marker at byte {at}");
            let marker = TINY_JPEG[at + 1];
            let len = usize::from(u16::from_be_bytes([TINY_JPEG[at + 2], TINY_JPEG[at + 3]]));
            markers.push(marker);
            if marker == 0xc0 {
                assert_eq!(&TINY_JPEG[at + 5..at + 9], [0, 8, 0, 8], "8×8");
            }
            at += 2 + len;
            if marker == 0xda {
                break;
            }
        }
        assert_eq!(
            markers,
            [0xe0, 0xdb, 0xc0, 0xc4, 0xda],
            "APP0, DQT, SOF0, DHT, SOS"
        );
        assert_eq!(
            &TINY_JPEG[at..],
            [0x3f, 0xff, 0xd9],
            "one entropy byte, then EOI"
        );
    }

    #[test]
    fn an_ok_result_parses_like_a_callback_and_carries_its_fields() {
        let s = subject();
        let data = callback_data(&s, "OK", "1,x");
        let parsed = faceid_protocol::payload::parse_callback_data(data.as_bytes()).unwrap();
        assert_eq!(parsed.biz_id.as_str(), s.biz_id);
        assert_eq!(parsed.fields.status, Status::Ok);
        assert_eq!(
            parsed.fields.liveness,
            Some(faceid_protocol::Liveness::Pass)
        );
        assert_eq!(parsed.fields.confidence, Some(DEFAULT_CONFIDENCE));
        assert_eq!(parsed.fields.biz_no.as_deref(), Some(s.biz_no.as_str()));
        assert!(!data.contains("images"), "callbacks never carry images");
    }

    #[test]
    fn unfinished_and_interrupted_flows_omit_the_outcome_sections() {
        for status in [
            "NOT_STARTED",
            "PROCESSING",
            "CANCELLED",
            "TIMEOUT",
            "WEBRTC_UNSUPPORTED",
        ] {
            let v = lite_get_result(
                &subject(),
                status,
                "1,x",
                Options {
                    return_image: 4,
                    return_verify_time: true,
                },
                3,
            );
            for key in ["idcard_info", "liveness_result", "verify_result", "images"] {
                assert!(v.get(key).is_none(), "{status} must not carry {key}");
            }
            assert_eq!(v["biz_info"]["biz_id"], json!(subject().biz_id), "{status}");
        }
    }

    #[test]
    fn verify_time_appears_only_when_asked() {
        let with = lite_get_result(
            &subject(),
            "OK",
            "1,x",
            Options {
                return_image: 0,
                return_verify_time: true,
            },
            3,
        );
        assert_eq!(with["verify_result"]["verify_time"], json!(1_462_259_760));
        let without = lite_get_result(&subject(), "OK", "1,x", Options::default(), 3);
        assert!(without["verify_result"].get("verify_time").is_none());
    }
}
