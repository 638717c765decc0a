"""The official Standard Webhooks library's verdict on signatures made by faceid-receiver.

Input (stdin, JSON):
  {"verify": [{"name", "secret", "headers": {...}, "body_b64"}],
   "sign":   [{"name", "secret", "id", "timestamp", "body_b64"}]}
Output (stdout, JSON):
  {"version": "<standardwebhooks version>",
   "verify": {name: "ok" | "rejected: <reason>"},
   "sign":   {name: "<webhook-signature value>"}}

Only the library decides: this script passes the bytes through and reports what it said.
"""

import base64
import importlib.metadata
import json
import sys
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    cases = json.load(sys.stdin)
    verdicts = {}
    for case in cases.get("verify", []):
        body = base64.b64decode(case["body_b64"])
        try:
            Webhook(case["secret"]).verify(body, case["headers"])
            verdicts[case["name"]] = "ok"
        except WebhookVerificationError as error:
            verdicts[case["name"]] = f"rejected: {error}"
    signatures = {}
    for case in cases.get("sign", []):
        body = base64.b64decode(case["body_b64"]).decode()
        at = datetime.fromtimestamp(case["timestamp"], tz=timezone.utc)
        signatures[case["name"]] = Webhook(case["secret"]).sign(case["id"], at, body)
    json.dump(
        {
            "version": importlib.metadata.version("standardwebhooks"),
            "verify": verdicts,
            "sign": signatures,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
