"""Run the bundle's handler in this process for a separate-process local server or a smoke test.

    python -m entrypoint.local_runner < events.jsonl > responses.jsonl

Reads one JSON Lambda event per line on stdin and writes one JSON response per line on stdout, in
order, flushing each. Anything the handler or Datasette prints goes to stderr, so stdout carries only
responses. A line that is not a JSON object gets a 400 response. Standard library only; the bundle
root is found as in Lambda ($DATASETTE_LAMBDA_ROOT, or the parent of `entrypoint/`).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from entrypoint.events import lambda_context

Handler = Callable[[Any, Any], dict[str, Any]]


def _error(text: str) -> dict[str, Any]:
    return {"statusCode": 400, "headers": {"content-type": "text/plain; charset=utf-8"}, "body": text}


def run(stdin: TextIO, stdout: TextIO, handler: Handler | None = None) -> int:
    """Answer every event line; returns the number of events handled."""
    if handler is None:
        from entrypoint.handler import handler as lambda_handler

        handler = lambda_handler
    context = lambda_context()
    count = 0
    for line in stdin:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as error:
            response = _error(f"local_runner: not a JSON event: {error}")
        else:
            if isinstance(event, dict):
                with contextlib.redirect_stdout(sys.stderr):
                    response = handler(event, context)
            else:
                response = _error("local_runner: an event must be a JSON object")
        stdout.write(json.dumps(response) + "\n")
        stdout.flush()
        count += 1
    return count


def main() -> int:
    run(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
