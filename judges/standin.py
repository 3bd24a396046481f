"""A stand-in for an OpenAI-compatible model server, on loopback, for tests, benchmarks and the offline demo.

    python -m judges.standin --port 8765 --latency-ms 200 --rate-429 0.1 --rule keyword

It answers `POST /v1/chat/completions` with a judge's JSON verdict, deterministically:

- The verdict follows a rule over the item in the last user message: its <output> (<output_a>, <output_b>) block,
  never one of a few-shot example's (the "Example N ... Answer: ..." blocks of judges/prompts.py are skipped).
  `hash` (the default): binary items pass for about 70% of outputs, chosen by a hash of the text inside
  <output>...</output> (else the whole message); pairwise items prefer one of the texts inside
  <output_a>/<output_b> by a hash that ignores their order, so the verdict follows the content wherever it is shown.
  `keyword`: binary fails when the --fail-word appears in the output; pairwise prefers the output containing the
  --prefer-word (a tie when both or neither do). `first`: always "pass" / always "A" (a
  judge with total position bias).
- Faults are drawn from a hash of (seed, messages, attempt number of these messages), so a fault on one attempt
  does not make the next attempt of the same messages fail too: --rate-429 (with a Retry-After header),
  --rate-500, --rate-timeout (the answer is held back for --hang-ms), and --rate-garbage (prose without JSON,
  decided per messages, so a garbage answer stays garbage). --script 429,500 instead fails the first attempts of
  every message in that order (also: 401, garbage).
- With `response_format` in the request the answer is bare JSON; without it, --style json|fenced|prose.
- A message "Group these N notes." with a <notes> block ("[n] note" per line: judges/suggest.py) gets a
  failure-mode grouping of its notes instead of a verdict (`grouping_for`), by the words the notes share.
- Usage counts tokens as one per four characters.
- `reply` (tests only, through `/_control` or the config) makes every answer a fixed text, where {system} and {user}
  become the messages received: a model talked into echoing its prompt or answering out of format.
- `POST /recorded/v1/chat/completions` (the app's `recorded` endpoint) replays real judges: when the model and the
  rendered prompt match a recording of LLMBar (judges/recorded.py), the answer is what that model answered to that
  item in that order, as a JSON verdict whose reasoning is the model's own text (completion tokens counted from that
  text). Anything else gets the plain stand-in's answer, its reasoning saying so. Faults apply to both.

`GET /_stats` reports what it has answered (requests, outcomes, messages answered more than once, the most requests
in flight at once); `POST /_control` with a JSON object changes the options of a running server; `POST /_reset`
clears the counters. It binds to loopback only; it is not a model and must never face a network.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import math
import re
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from judges import recorded

GARBAGE = "I looked at this carefully and I would rather not say."


@dataclass
class Config:
    latency_ms: int = 200
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_garbage: float = 0.0
    retry_after: float | None = 1.0
    hang_ms: int = 30_000
    rule: str = "hash"
    fail_word: str = "WRONG"
    prefer_word: str = "BETTER"
    pass_share: float = 0.7
    style: str = "json"
    script: list[str] = field(default_factory=list)
    seed: int = 0
    # When set, every answer is this text, with {system} and {user} replaced by the messages received: a model that
    # was talked into saying something else (prompt-injection tests).
    reply: str = ""


@dataclass
class Stats:
    requests: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)  # 200s per message hash
    attempts: Counter[str] = field(default_factory=Counter)  # requests per message hash
    in_flight: int = 0
    max_in_flight: int = 0
    structured: int = 0  # requests that asked for a JSON schema answer (response_format)
    key_fingerprints: set[str] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "outcomes": dict(self.outcomes),
            "answered": sum(self.answered.values()),
            "distinct_answered": len(self.answered),
            "answered_more_than_once": sum(n - 1 for n in self.answered.values() if n > 1),
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
            "structured": self.structured,
            "key_fingerprints": sorted(self.key_fingerprints),
        }


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / float(1 << 64)


def _between(text: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
    return match.group(1).strip() if match else None


# One few-shot example as judges/prompts.py (examples_text) writes it: "Example N", the example's blocks, its answer.
# Item text inside a prompt has its block tags written as entities (prompts.as_data), so a tag here is always the
# prompt's own structure and an example cannot end early inside its text.
_EXAMPLE = re.compile(
    r"Example \d+\n<input>\n.*?\n</input>\n"
    r"(?:<output>\n.*?\n</output>|<output_a>\n.*?\n</output_a>\n<output_b>\n.*?\n</output_b>)"
    r"\nAnswer: [^\n]*\n",
    re.DOTALL,
)


def _item_text(text: str) -> str:
    """The user message without its few-shot examples: what is left holds the item being judged, wherever the
    template put the {{ examples }} block (before the item, as the default templates do, or after it)."""
    return _EXAMPLE.sub("", text)


def _item_block(text: str, tag: str) -> str | None:
    """The item's own <tag> block: the first one outside the few-shot examples, else the last one of the message
    (a message whose examples were written by hand ends with the item)."""
    found = _between(_item_text(text), tag)
    if found is not None:
        return found
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
    return blocks[-1].strip() if blocks else None


def _is_pairwise(body: dict[str, Any], messages: list[dict[str, Any]]) -> bool:
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema", {})
    enum = schema.get("properties", {}).get("verdict", {}).get("enum")
    if enum:
        return "A" in enum
    system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
    return '"verdict": "A"' in system


def verdict_for(config: Config, text: str, *, pairwise: bool) -> tuple[str, str]:
    """(verdict, reasoning) by the configured rule."""
    if not pairwise:
        output = _item_block(text, "output")
        section = output if output is not None else text
        if config.rule == "first":
            return "pass", "Stand-in rule 'first': always pass."
        if config.rule == "keyword":
            failed = config.fail_word in section
            return ("fail" if failed else "pass"), f"Stand-in rule 'keyword': {config.fail_word!r} " + (
                "appears." if failed else "does not appear."
            )
        passed = _unit(config.seed, "binary", section) < config.pass_share
        return ("pass" if passed else "fail"), "Stand-in rule 'hash' over the output."
    a, b = _item_block(text, "output_a"), _item_block(text, "output_b")
    if config.rule == "first":
        return "A", "Stand-in rule 'first': always the first output."
    if a is None or b is None:
        choice = ["A", "B", "tie"][int(_unit(config.seed, "pair", text) * 3)]
        return choice, "Stand-in: no <output_a>/<output_b> found; a hash of the whole message decided."
    if config.rule == "keyword":
        a_has, b_has = config.prefer_word in a, config.prefer_word in b
        choice = "A" if a_has and not b_has else "B" if b_has and not a_has else "tie"
        return choice, f"Stand-in rule 'keyword': prefers the output containing {config.prefer_word!r}."
    if a == b:
        return "tie", "Stand-in rule 'hash': the outputs are identical."
    first, second = sorted([a, b])
    winner = first if _unit(config.seed, "pair", first, second) < 0.5 else second
    return ("A" if winner == a else "B"), "Stand-in rule 'hash' over the two outputs, in either order."


# Words too common to name a failure mode by.
_STOPWORDS = frozenset(
    {
        "about",
        "after",
        "again",
        "also",
        "because",
        "been",
        "being",
        "does",
        "doesn",
        "from",
        "have",
        "into",
        "just",
        "more",
        "most",
        "much",
        "only",
        "other",
        "over",
        "same",
        "should",
        "some",
        "than",
        "that",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "very",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "with",
        "would",
        "your",
        "response",
        "answer",
        "output",
        "item",
        "question",
        "user",
    }
)
_NOTE_LINE = re.compile(r"^\[(\d+)\]\s*(.*)$")


def grouping_for(text: str) -> dict[str, Any] | None:
    """A failure-mode grouping of the numbered notes in the message's <notes> block ("[n] text" per line), or None
    when there is none. Deterministic: each note joins the group of its word (4+ letters, not a stop word) that the
    most notes share, ties going to the alphabetically first; notes without such a word go to "Other"."""
    # Only judges.suggest's request ("Group these N notes." then the block): an item that quotes a <notes> block in
    # a judge's prompt still gets a verdict.
    block = _between(text, "notes") if text.startswith("Group these ") else None
    if block is None:
        return None
    notes: dict[int, set[str]] = {}
    for line in block.splitlines():
        match = _NOTE_LINE.match(line.strip())
        if match:
            words = {w for w in re.findall(r"[a-z]{4,}", match.group(2).lower()) if w not in _STOPWORDS}
            notes[int(match.group(1))] = words
    shared = Counter(w for words in notes.values() for w in words)
    groups: dict[str, list[int]] = {}
    for n, words in sorted(notes.items()):
        word = min(words, key=lambda w: (-shared[w], w)) if words else ""
        groups.setdefault(word, []).append(n)
    out = [
        {
            "name": word.capitalize() if word else "Other",
            "definition": f"Notes that mention “{word}”." if word else "Notes that share no word with the others.",
            "notes": members,
        }
        for word, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0] or "~"))
    ]
    return {"groups": out}


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _replay(body: dict[str, Any], messages: list[dict[str, Any]]) -> recorded.Reply | None:
    """The recorded answer of the requested model to these messages (judges/recorded.py), if there is one."""
    return recorded.reply_for(str(body.get("model") or ""), messages)


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], config: Config) -> None:
        super().__init__(address, Handler)
        self.config = config
        self.stats = Stats()
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def fault(self, message_hash: str) -> str | None:
        """Which fault (if any) this attempt of these messages gets; counts the attempt."""
        with self.lock:
            self.stats.attempts[message_hash] += 1
            attempt = self.stats.attempts[message_hash]
            config = self.config
        if config.script:
            return config.script[attempt - 1] if attempt <= len(config.script) else None
        u = _unit(config.seed, message_hash, attempt)
        for name, rate in (("429", config.rate_429), ("500", config.rate_500), ("timeout", config.rate_timeout)):
            if u < rate:
                return name
            u -= rate
        return None


class Handler(BaseHTTPRequestHandler):
    server: StandinServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the client's delayed ACK
    # add about 40 ms to every answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a benchmark makes thousands of requests."""

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self) -> None:
        if self.path == "/_stats":
            with self.server.lock:
                self._send(200, {**self.server.stats.as_json(), "config": asdict(self.server.config)})
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "standin", "object": "model", "owned_by": "standin"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        if self.path == "/_control":
            changes = self._body()
            known = {f.name for f in fields(Config)}
            with self.server.lock:
                for name, value in changes.items():
                    if name in known:
                        setattr(self.server.config, name, value)
                self._send(200, asdict(self.server.config))
        elif self.path == "/_reset":
            with self.server.lock:
                self.server.stats = Stats()
            self._send(200, {"reset": True})
        elif self.path.rstrip("/") == "/v1/chat/completions":
            self._chat()
        elif self.path.rstrip("/") == "/recorded/v1/chat/completions":
            self._chat(from_recordings=True)
        else:
            self._send(404, {"error": {"message": "not found"}})

    def _chat(self, *, from_recordings: bool = False) -> None:
        server = self.server
        body = self._body()
        messages = body.get("messages") or []
        message_hash = hashlib.sha256(
            json.dumps({"model": body.get("model"), "messages": messages}, sort_keys=True).encode()
        ).hexdigest()
        authorization = self.headers.get("Authorization", "")
        with server.lock:
            config = Config(**asdict(server.config))
            # A request counts in the counters of its own time: one still sleeping when the counters are reset (a
            # test that ended while its client had given up) cannot show up in the next test's figures.
            stats = server.stats
            stats.requests += 1
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            if body.get("response_format"):
                stats.structured += 1
            if authorization.startswith("Bearer "):
                stats.key_fingerprints.add(hashlib.sha256(authorization[7:].encode()).hexdigest())
        outcome = "ok"
        try:
            fault = server.fault(message_hash)
            time.sleep(config.latency_ms / 1000)
            if fault == "429":
                outcome = "429"
                headers = {} if config.retry_after is None else {"Retry-After": f"{config.retry_after:g}"}
                self._send(429, {"error": {"message": "stand-in: rate limited", "type": "rate_limit"}}, headers)
                return
            if fault == "500":
                outcome = "500"
                # A body with something that must never reach a page or a log.
                self._send(500, {"error": {"message": "stand-in internal error; trace id SECRET-TRACE-0000"}})
                return
            if fault == "401":
                outcome = "401"
                self._send(401, {"error": {"message": "stand-in: invalid key", "type": "invalid_request_error"}})
                return
            if fault == "timeout":
                outcome = "timeout"
                with server.lock:  # counted now: the client has given up long before the answer
                    stats.outcomes[outcome] += 1
                time.sleep(config.hang_ms / 1000)
                self._send(504, {"error": {"message": "stand-in: too late"}})
                return
            text = str(next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), ""))
            pairwise = _is_pairwise(body, messages)
            completion_tokens: int | None = None
            if config.reply:
                system = str(next((m.get("content", "") for m in messages if m.get("role") == "system"), ""))
                content = config.reply.replace("{system}", system).replace("{user}", text)
            elif fault == "garbage" or _unit(config.seed, message_hash, "garbage") < config.rate_garbage:
                outcome = "garbage"
                content = GARBAGE
            elif from_recordings and (replay := _replay(body, messages)) is not None:
                content, completion_tokens = replay.content, replay.tokens_out
            elif (grouping := grouping_for(text)) is not None:
                content = json.dumps(grouping)
            else:
                verdict, reasoning = verdict_for(config, text, pairwise=pairwise)
                if from_recordings:
                    model = body.get("model")
                    reasoning = f"Plain stand-in: no recorded answer of {model!r} to this prompt. {reasoning}"
                answer = json.dumps({"reasoning": reasoning, "verdict": verdict})
                if body.get("response_format") or config.style == "json":
                    content = answer
                elif config.style == "fenced":
                    content = f"```json\n{answer}\n```"
                else:
                    content = f"Here is my judgment of the item.\n{answer}\nI hope this helps."
            prompt_tokens = sum(_tokens(str(m.get("content", ""))) + 4 for m in messages)
            if completion_tokens is None:
                completion_tokens = _tokens(content)
            self._send(
                200,
                {
                    "id": f"chatcmpl-standin-{message_hash[:16]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "standin"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                },
            )
            with server.lock:
                server.stats.answered[message_hash] += 1
        finally:
            with server.lock:
                # The counters this request was counted in: after a reset, an older request ending must not lower the
                # new counters' in_flight (which made a later test's max_in_flight read one short).
                stats.in_flight -= 1
                if outcome != "timeout":
                    server.stats.outcomes[outcome] += 1


def serve(config: Config | None = None, *, host: str = "127.0.0.1", port: int = 0) -> StandinServer:
    """Start a stand-in in a background thread (port 0: a free port) and return it; `.shutdown()` stops it."""
    server = StandinServer((host, port), config or Config())
    threading.Thread(target=server.serve_forever, name="judges-standin", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m judges.standin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback only (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--rate-500", type=float, default=0.0)
    parser.add_argument("--rate-timeout", type=float, default=0.0)
    parser.add_argument("--rate-garbage", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=1.0, help="seconds sent with each 429")
    parser.add_argument("--hang-ms", type=int, default=30_000, help="how long a timeout fault holds the answer")
    parser.add_argument("--rule", choices=["hash", "keyword", "first"], default="hash")
    parser.add_argument("--fail-word", default="WRONG")
    parser.add_argument("--prefer-word", default="BETTER")
    parser.add_argument("--style", choices=["json", "fenced", "prose"], default="json")
    parser.add_argument("--script", default="", help="faults for the first attempts of each message, e.g. 429,500")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.host not in {"127.0.0.1", "localhost", "::1"}:
        parser.error("the stand-in binds to loopback only")
    config = Config(
        latency_ms=args.latency_ms,
        rate_429=args.rate_429,
        rate_500=args.rate_500,
        rate_timeout=args.rate_timeout,
        rate_garbage=args.rate_garbage,
        retry_after=args.retry_after,
        hang_ms=args.hang_ms,
        rule=args.rule,
        fail_word=args.fail_word,
        prefer_word=args.prefer_word,
        style=args.style,
        script=[s for s in args.script.split(",") if s],
        seed=args.seed,
    )
    try:
        server = StandinServer((args.host, args.port), config)
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        parser.exit(1, f"stand-in: port {args.port} on {args.host} is in use; choose another with --port.\n")
    print(f"stand-in model server on http://{args.host}:{server.port}/v1 (rule {args.rule})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
