"""Whether the Hugging Face Hub answers, asked once with a short timeout before a download.

Without a network, `datasets` and `huggingface_hub` retry with backoff and fail after ~30 s. One
HEAD request to the Hub's endpoint says within seconds whether a download can work at all; with
`HF_HUB_OFFLINE=1` nothing is asked and the local cache answers.
"""

from __future__ import annotations

import urllib.error
import urllib.request

HUB_TIMEOUT_S = 5.0


def hub_unreachable(timeout: float = HUB_TIMEOUT_S) -> str | None:
    """None when the Hub answers (or offline mode is on: the cache is used); else why it does not."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None
    request = urllib.request.Request(constants.ENDPOINT, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return f"{constants.ENDPOINT} is unreachable ({reason})"
