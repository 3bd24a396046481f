"""`make run` (manage.py rundemo, then honcho with Procfile.dev) as real processes on the embedded default: two demos
side by side on one machine, a third refused at once, and Ctrl-C (pressed once, twice, three times) leaving no
process behind, the worker at a lower CPU priority."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 180  # migrate and load the demo on a fresh SQLite file, on a CPU the other tests share
# What each of Procfile.dev's processes runs, as its command line shows it.
COMMANDS = {
    "web": "manage.py runserver",
    "worker": "celery -A annotate worker",
    "beat": "celery -A annotate beat",
    "standin": "-m judges.standin",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of `make run` on a clean machine: no PostgreSQL, Redis or model key."""
    drop = {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "OPENAI_API_KEY", "PORT", "JUDGE_STANDIN_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return env | {"DEBUG": "true", "HTTPS": "false", "VAR_DIR": str(var_dir), "PYTHONUNBUFFERED": "1"} | extra


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, ..., starttime at 19]."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _tree(root: int) -> dict[int, str]:
    """Every process descended from root (root included), by pid, with its start time (pids get reused)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            parents.setdefault(int(stat[1]), []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if (stat := _stat(pid)) is not None:
            found[pid] = stat[19]
            todo += parents.get(pid, [])
    return found


def _alive(pid: int, started: str) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z" and stat[19] == started


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode(errors="replace").split("=", 1) for entry in raw if b"=" in entry)


class Demo:
    """One `manage.py rundemo` in a session of its own, as `make run` is in a terminal: interrupt() is a Ctrl-C."""

    def __init__(self, tmp: Path, name: str, *, port: int, standin_port: int) -> None:
        self.name, self.port = name, port
        self.var_dir = tmp / name
        self.env = _env(self.var_dir, JUDGE_STANDIN_PORT=str(standin_port))
        self.out_path, self.err_path = tmp / f"{name}.out", tmp / f"{name}.err"
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "rundemo", "--port", str(port)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.seen: dict[int, str] = {}

    def out(self) -> str:
        return self.out_path.read_text()

    def err(self) -> str:
        return self.err_path.read_text()

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {what}\n{self.out()[-3000:]}\n{self.err()[-3000:]}")
            time.sleep(0.2)

    def serves(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/")
            return connection.getresponse().status in {200, 302}
        except OSError:
            return False
        finally:
            connection.close()

    def wait_ready(self) -> None:
        """Until the web server answers, the worker is ready and honcho runs all four of Procfile.dev's lines."""
        self.wait_for(self.serves, "web server")
        self.wait_for(lambda: "ready." in self.out(), "ready worker")
        self.wait_for(lambda: all(self.child(word) for word in COMMANDS.values()), "every process", timeout=30)

    def tree(self) -> dict[int, str]:
        found = _tree(self.process.pid)
        self.seen |= found
        return found

    def child(self, command: str) -> list[int]:
        """The processes running one of Procfile.dev's commands (not honcho's, whose command line names them all)."""
        return [pid for pid in self.tree() if pid != self.process.pid and command in _cmdline(pid)]

    def interrupt(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)

    def survivors(self, within: float = 3.0) -> list[str]:
        deadline = time.monotonic() + within
        while (left := [p for p, started in self.seen.items() if _alive(p, started)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        return [f"{p}: {_cmdline(p)}" for p in left]

    def kill(self) -> None:
        """Teardown after a failed test: nothing of the demo may outlive it."""
        self.tree()
        for pid, started in self.seen.items():
            if _alive(pid, started):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def demos(tmp_path: Path) -> Iterator[Callable[..., Demo]]:
    started: list[Demo] = []

    def start(name: str, **kwargs: int) -> Demo:
        started.append(Demo(tmp_path, name, **kwargs))
        return started[-1]

    yield start
    for demo in started:
        demo.kill()


def _tables(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=5) as response:
        return json.loads(response.read())


def _log_in(opener: urllib.request.OpenerDirector, demo: Demo) -> None:
    """Log in as the demo's first annotator through the login form, keeping the cookies in `opener`'s jar."""
    base = f"http://127.0.0.1:{demo.port}"
    password = json.loads((demo.var_dir / "demo_credentials.json").read_text())["annotator1"]
    with opener.open(f"{base}/login/", timeout=10) as answer:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', answer.read().decode()).group(1)
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "annotator1", "password": password})
    request = urllib.request.Request(f"{base}/login/", data=form.encode(), headers={"Referer": f"{base}/login/"})
    with opener.open(request, timeout=10) as answer:
        assert "/login/" not in answer.geturl(), f"{demo.name}: login refused"


def _signed_in(opener: urllib.request.OpenerDirector, demo: Demo) -> bool:
    with opener.open(f"http://127.0.0.1:{demo.port}/", timeout=10) as answer:
        return "/login/" not in answer.geturl()


@pytest.mark.slow
def test_two_demos_run_side_by_side_and_a_third_on_a_taken_port_or_folder_is_refused_at_once(tmp_path, demos):
    standin_port = _free_port()  # as JUDGE_STANDIN_PORT's default would be: the same for both demos
    first = demos("first", port=_free_port(), standin_port=standin_port)
    first.wait_for(lambda: _listening(standin_port), "stand-in")
    second = demos("second", port=_free_port(), standin_port=standin_port)
    first.wait_ready()
    second.wait_ready()

    # The second demo's stand-in moved to a free port, said so, and its web server and worker were told.
    moved = re.search(
        rf"stand-in model on http://127\.0\.0\.1:(\d+)/v1: port {standin_port} \(JUDGE_STANDIN_PORT\) is taken",
        second.out(),
    )
    assert moved, second.out()
    second_standin = int(moved.group(1))
    assert second_standin != standin_port
    for pid in second.child(COMMANDS["web"]) + second.child(COMMANDS["worker"]):
        assert _environ(pid)["JUDGE_STANDIN_PORT"] == str(second_standin), _cmdline(pid)

    # One browser, both demos: cookies are per host, not per port, so each demo names its cookies after its port and
    # signing in to the second does not sign the first out.
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    _log_in(browser, first)
    _log_in(browser, second)
    assert _signed_in(browser, first) and _signed_in(browser, second)

    # A third demo on the first one's port, or in its folder, stops at once with one line saying what to run.
    third_dir = tmp_path / "third"
    for port, var_dir, says in [
        (first.port, third_dir, f"Port {first.port} on 127.0.0.1 is already in use"),
        (_free_port(), first.var_dir, f"{first.var_dir} is in use by another demo"),
    ]:
        done = subprocess.run(
            [sys.executable, "manage.py", "rundemo", "--port", str(port)],
            cwd=ROOT,
            env=_env(var_dir),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().count("\n") == 0, done.stderr
        assert says in done.stderr and re.search(r"PORT=\d+ .*make run", done.stderr), done.stderr
        assert "Database migrated" not in done.stdout
    assert re.search(rf"PORT={port} VAR_DIR=var/demo\d+ make run", done.stderr)  # its port was free: the folder moves
    assert _tables(third_dir / "annotate.sqlite3") == set()  # nothing migrated (the system checks open the file)

    # A judge run in the second demo goes through its own worker to its own stand-in, not the first demo's.
    judged = subprocess.run(
        [sys.executable, "-m", "tests.sqlite.demo_judge"],
        cwd=ROOT,
        env=second.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert judged.returncode == 0, judged.stderr[-3000:]
    result = json.loads(judged.stdout.strip().splitlines()[-1])
    assert result == {"status": "done", "error": "", "verdicts": {"ok": 10}}
    assert _stats(second_standin)["answered"] > 0  # (items with the same text share one call: the cache)
    assert _stats(standin_port)["requests"] == 0

    first.tree()
    second.tree()
    first.interrupt()
    second.interrupt()
    for demo in (first, second):
        assert demo.process.wait(timeout=30) == 0, demo.err()[-3000:]
        assert "Stopped." in demo.out()
        output = demo.err() + demo.out()
        assert "Traceback" not in output, output[output.find("Traceback") - 500 :][:4000]
        assert not demo.survivors()


def _nice(pid: int) -> int:
    stat = _stat(pid)
    assert stat is not None, f"{pid} is gone"
    return int(stat[16])


@pytest.mark.slow
def test_ctrl_c_again_during_cleanup_stops_everything_without_a_traceback_and_the_worker_runs_niced(tmp_path, demos):
    demo = demos("demo", port=_free_port(), standin_port=_free_port())
    demo.wait_ready()
    # Procfile.dev's `nice -n 10`: background work yields the CPU to the web server.
    assert [_nice(pid) for pid in demo.child(COMMANDS["worker"])] == [10]
    assert _nice(demo.child(COMMANDS["web"])[0]) == 0

    first = time.monotonic()
    demo.interrupt()
    time.sleep(1.0)  # the first Ctrl-C has asked every process to stop; the worker takes several seconds
    demo.interrupt()
    time.sleep(0.1)
    demo.interrupt()
    assert demo.process.wait(timeout=30) == 0, demo.err()[-3000:]
    # honcho kills whatever is left 5 seconds after the first Ctrl-C.
    assert time.monotonic() - first < 10
    output = demo.err() + demo.out()
    assert "Traceback" not in output, output[output.find("Traceback") - 500 :][:4000]
    assert demo.out().rstrip().endswith("Stopped.")
    assert not demo.survivors()
