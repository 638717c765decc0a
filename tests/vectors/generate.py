#!/usr/bin/env python3
"""Generates tests/vectors/callbacks.json: callback deliveries with the answer FaceID's rules
demand, computed independently of the Rust code (Python's hashlib for signs, a pure-Python
SHA-1 for the length-extension forgery).

Run from the repository root:  python3 tests/vectors/generate.py
"""
import base64
import hashlib
import json
import pathlib
import struct
import urllib.parse

HERE = pathlib.Path(__file__).parent
SECRET = "vector-secret-7f3a"


def sign(data: bytes, secret: str = SECRET) -> str:
    return hashlib.sha1(secret.encode() + data).hexdigest()


def _rotl(x, n):
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF


def _compress(state, block):
    w = list(struct.unpack(">16I", block)) + [0] * 64
    for i in range(16, 80):
        w[i] = _rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1)
    a, b, c, d, e = state
    for i in range(80):
        if i < 20:
            f, k = (b & c) | (~b & d), 0x5A827999
        elif i < 40:
            f, k = b ^ c ^ d, 0x6ED9EBA1
        elif i < 60:
            f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
        else:
            f, k = b ^ c ^ d, 0xCA62C1D6
        a, b, c, d, e = (_rotl(a, 5) + f + e + k + w[i]) & 0xFFFFFFFF, a, _rotl(b, 30), c, d
    return [(x + y) & 0xFFFFFFFF for x, y in zip(state, [a, b, c, d, e])]


def _padding(length):
    pad = b"\x80" + b"\x00" * ((55 - length) % 64)
    return pad + struct.pack(">Q", length * 8)


def length_extend(known_sign, secret_len, data, tail):
    state = list(struct.unpack(">5I", bytes.fromhex(known_sign)))
    glue = _padding(secret_len + len(data))
    prefix = secret_len + len(data) + len(glue)
    rest = tail + _padding(prefix + len(tail))
    for i in range(0, len(rest), 64):
        state = _compress(state, rest[i:i + 64])
    forged_sign = struct.pack(">5I", *state).hex()
    forged = data + glue + tail
    assert hashlib.sha1(SECRET.encode() + forged).hexdigest() == forged_sign, "forgery must verify"
    return forged, forged_sign


def form(pairs):
    # quote_from_bytes keeps arbitrary bytes (the forged glue) exact.
    return "&".join(f"{k}={urllib.parse.quote_from_bytes(v, safe='')}" for k, v in pairs)


def vector(name, body, expect_status, expect_error=None, content_type="application/x-www-form-urlencoded",
           biz_id=None, why=""):
    v = {"name": name, "why": why, "content_type": content_type,
         "body_base64": base64.b64encode(body if isinstance(body, bytes) else body.encode()).decode(),
         "expect": {"status": expect_status}}
    if expect_error:
        v["expect"]["error"] = expect_error
    if biz_id:
        v["expect"]["biz_id"] = biz_id
    return v


def main():
    seed_ok = (HERE / "seed_get_result_ok.json").read_bytes()
    raw_failed = (HERE / "seed_raw_failed.json").read_bytes()
    raw_ok = (HERE / "seed_raw_ok.json").read_bytes()
    seed_biz = "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1"
    simple = json.dumps({"status": "Failed", "biz_info": {"biz_id": "1795392000,vec-simple", "biz_no": 7},
                         "liveness_result": {"result": "FAIL"}}, ensure_ascii=False).encode()
    vectors = [
        vector("seed success example, form", form([("data", seed_ok), ("sign", sign(seed_ok).encode())]), 200,
               biz_id=seed_biz, why="the get_result document's example, verbatim, correctly signed"),
        vector("seed example, upper-case sign", form([("data", seed_ok), ("sign", sign(seed_ok).upper().encode())]),
               200, biz_id=seed_biz, why="hex case is ignored"),
        vector("fields in the other order", form([("sign", sign(simple).encode()), ("data", simple)]), 200,
               biz_id="1795392000,vec-simple", why="mixed-case status and a numeric biz_no are tolerated"),
        vector("JSON envelope", json.dumps({"data": simple.decode(), "sign": sign(simple)}), 200,
               content_type="application/json", biz_id="1795392000,vec-simple"),
        vector("multipart", b"--B0undary\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n" + simple +
               b"\r\n--B0undary\r\nContent-Disposition: form-data; name=\"sign\"\r\n\r\n" + sign(simple).encode() +
               b"\r\n--B0undary--\r\n", 200, content_type="multipart/form-data; boundary=B0undary",
               biz_id="1795392000,vec-simple"),
        vector("wrong secret", form([("data", seed_ok), ("sign", sign(seed_ok, "other").encode())]), 403,
               "bad_signature"),
        vector("tampered data", form([("data", seed_ok.replace(b'"OK"', b'"FAILED"')),
                                      ("sign", sign(seed_ok).encode())]), 403, "bad_signature"),
        vector("sign of the wrong length", form([("data", seed_ok), ("sign", sign(seed_ok)[:39].encode())]), 403,
               "bad_signature"),
        vector("sign missing", form([("data", seed_ok)]), 400, "missing_field"),
        vector("data missing", form([("sign", sign(seed_ok).encode())]), 400, "missing_field"),
        vector("data twice", form([("data", seed_ok), ("data", simple), ("sign", sign(seed_ok).encode())]), 400,
               "duplicate_field", why="which one was signed would be ambiguous"),
        vector("RAW Failed example has no biz_id", form([("data", raw_failed), ("sign", sign(raw_failed).encode())]),
               400, "malformed_data", why="a callback result must name its biz_id"),
        vector("RAW OK example is not JSON", form([("data", raw_ok), ("sign", sign(raw_ok).encode())]), 400,
               "malformed_data", why="the document's own example has unbalanced braces"),
        vector("trailing content after the object",
               form([("data", seed_ok + b"\n{}"), ("sign", sign(seed_ok + b"\n{}").encode())]), 400,
               "malformed_data"),
        vector("unsupported content type", form([("data", seed_ok), ("sign", sign(seed_ok).encode())]), 400,
               "unsupported_content_type", content_type="text/plain"),
    ]
    tail = b',"status":"OK","biz_info":{"biz_id":"1795392000,vec-forged"}}'
    forged, forged_sign = length_extend(sign(simple), len(SECRET), simple, tail)
    vectors.append(vector("SHA-1 length extension", form([("data", forged), ("sign", forged_sign.encode())]), 400,
                          "malformed_data", why="valid sign over data + glue padding + forged tail"))
    out = {"secret": SECRET, "generator": "tests/vectors/generate.py", "vectors": vectors}
    (HERE / "callbacks.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(vectors)} vectors")


if __name__ == "__main__":
    main()
