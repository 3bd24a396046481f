"""Fixtures for judges: the stand-in model server (in a thread, on a free loopback port), judges and items."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

import pytest

from annotate.models import Item, Project
from annotate.services.items import item_build
from judges import prompts
from judges.models import Judge, JudgeVersion
from judges.services import judge_versions
from judges.standin import Config, StandinServer, serve

MODEL = "standin-judge-2025-01-01"


@pytest.fixture(scope="session")
def standin_server() -> Iterator[StandinServer]:
    server = serve(Config(latency_ms=0))
    yield server
    server.shutdown()
    server.server_close()


@dataclass
class Standin:
    """The running stand-in as the tests see it: change its options, read its counters."""

    server: StandinServer

    @property
    def port(self) -> int:
        return self.server.port

    def configure(self, **changes: Any) -> None:
        with self.server.lock:
            for name, value in changes.items():
                setattr(self.server.config, name, value)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stats", timeout=5) as response:
            return json.loads(response.read())


@pytest.fixture
def standin(standin_server: StandinServer, settings) -> Standin:
    """The stand-in with default options and fresh counters, and settings pointing the "standin" endpoint at it."""
    with standin_server.lock:
        defaults = Config(latency_ms=0)
        for f in fields(Config):
            setattr(standin_server.config, f.name, getattr(defaults, f.name))
        standin_server.stats = type(standin_server.stats)()
    settings.JUDGE_STANDIN_PORT = standin_server.port
    settings.JUDGE_STANDIN_CONCURRENCY = 8
    settings.JUDGE_STANDIN_TIMEOUT_SECONDS = 5
    settings.JUDGE_BACKOFF_BASE_MS = 5
    settings.JUDGE_BACKOFF_MAX_MS = 50
    settings.JUDGE_PRICES = {**settings.JUDGE_PRICES, MODEL: (1.0, 4.0)}
    # The limiter's slots and single-flight's answers in Redis start empty too (tests/conftest.py, before every test).
    assert asdict(standin_server.config)["latency_ms"] == 0
    return Standin(standin_server)


@pytest.fixture(scope="session")
def priced_server() -> Iterator[StandinServer]:
    """A second stand-in on another loopback port: to the app, an ordinary OpenAI-compatible server, whose models are
    priced (JUDGE_PRICES) as a real provider's are. The stand-in's own port is the one that costs $0."""
    server = serve(Config(latency_ms=0))
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def priced(standin: Standin, priced_server: StandinServer, settings) -> str:
    """The name of a configured endpoint ("priced") on priced_server, with the stand-in fixture's settings."""
    assert priced_server.port != standin.port
    settings.JUDGE_ENDPOINTS = [{"name": "priced", "base_url": f"http://127.0.0.1:{priced_server.port}/v1"}]
    return "priced"


def make_item(project: Project, n: int, *, split: str = "dev", **content: str) -> Item:
    fields_ = content or (
        {"input": f"Question {n}?", "output_a": f"Answer A{n}.", "output_b": f"Answer B{n}."}
        if project.is_pairwise
        else {"input": f"Question {n}?", "output": f"Answer {n}."}
    )
    item = item_build(project=project, fields=fields_, external_id=f"item-{n}", split=split)
    item.save()
    return item


@pytest.fixture
def judge(project, lead) -> Judge:
    return judge_versions.judge_create(project=project, criterion_key="acceptable", actor=lead)


def make_version(judge: Judge, **overrides: Any) -> JudgeVersion:
    kind = judge.project.kind
    options: dict[str, Any] = {
        "system_template": prompts.DEFAULT_SYSTEM[kind],
        "user_template": prompts.DEFAULT_USER[kind],
        "endpoint": "standin",
        "model": MODEL,
    }
    return judge_versions.judge_version_create(judge=judge, **(options | overrides))


@pytest.fixture
def version(judge, standin) -> JudgeVersion:
    return make_version(judge)
