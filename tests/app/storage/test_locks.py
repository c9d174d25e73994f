"""The retrain lock against a real Redis: renewed while its holder lives, freed soon after it dies."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import redis

from app.settings import Settings
from app.storage import redis_keys as keys
from app.storage.locks import Watchdog, retrain_lock
from app.storage.redis_client import connect

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(10)]

TTL_S = 1.0  # short, so the tests see several renewals and an expiry
DEADLINE_S = 60.0


@pytest.fixture
def conn(redis_settings: Settings) -> redis.Redis:
    client = connect(redis_settings)
    yield client
    client.close()


def wait_for(condition, what: str, deadline_s: float = DEADLINE_S) -> None:
    """Poll `condition` until true; fail naming `what` after a generous deadline."""
    until = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > until:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_second_acquirer_fails_while_the_lock_is_held_and_succeeds_after(redis_settings: Settings) -> None:
    with retrain_lock(redis_settings, ttl_s=TTL_S) as first:
        with retrain_lock(redis_settings, ttl_s=TTL_S) as second:
            assert first and not second
    with retrain_lock(redis_settings, ttl_s=TTL_S) as again:
        assert again, "the lock must be released when its holder ends"


def test_the_watchdog_keeps_the_lock_past_its_ttl(redis_settings: Settings, conn: redis.Redis) -> None:
    with retrain_lock(redis_settings, ttl_s=TTL_S) as held:
        assert held
        token = conn.get(keys.RETRAIN_LOCK)
        started = time.monotonic()
        while time.monotonic() - started < 4 * TTL_S:  # a state check at every poll, over four lifetimes
            assert conn.get(keys.RETRAIN_LOCK) == token, "the lock expired although its holder is alive"
            ttl_ms = conn.pttl(keys.RETRAIN_LOCK)
            assert 0 < ttl_ms <= TTL_S * 1000
            time.sleep(0.05)
        with retrain_lock(redis_settings, ttl_s=TTL_S) as second:
            assert not second
    assert not conn.exists(keys.RETRAIN_LOCK)


HOLDER = """
import sys, time
from app.settings import Settings
from app.storage.locks import retrain_lock
with retrain_lock(Settings.from_env({"REDIS_URL": sys.argv[1]}), ttl_s=float(sys.argv[2])) as held:
    print("held" if held else "refused", flush=True)
    time.sleep(3600)
"""


def test_a_killed_holder_frees_the_lock_after_its_ttl(redis_settings: Settings, conn: redis.Redis) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, redis_settings.redis_url, str(TTL_S)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with retrain_lock(redis_settings, ttl_s=TTL_S) as while_alive:
            assert not while_alive
        holder.kill()  # SIGKILL: no release, no cleanup; only the TTL frees the lock
        holder.wait(timeout=DEADLINE_S)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=DEADLINE_S)
    wait_for(lambda: not conn.exists(keys.RETRAIN_LOCK), "the dead holder's lock to expire")
    with retrain_lock(redis_settings, ttl_s=TTL_S) as after:
        assert after


def test_a_lock_lost_during_a_run_is_left_to_its_new_owner(redis_settings: Settings, conn: redis.Redis) -> None:
    with retrain_lock(redis_settings, ttl_s=TTL_S) as first:
        assert first
        conn.delete(keys.RETRAIN_LOCK)  # what an expiry does, e.g. Redis unreachable for a whole TTL
        with retrain_lock(redis_settings, ttl_s=TTL_S) as second:
            assert second
            token = conn.get(keys.RETRAIN_LOCK)
            # the first holder's watchdog keeps beating meanwhile and must not take it back
            started = time.monotonic()
            while time.monotonic() - started < 2 * TTL_S:
                assert conn.get(keys.RETRAIN_LOCK) == token
                time.sleep(0.05)
        conn.set(keys.RETRAIN_LOCK, token)  # the second run still holds it when the first ends
    assert conn.get(keys.RETRAIN_LOCK) == token


def test_watchdog_beats_until_stopped_survives_errors_and_stops_when_told() -> None:
    beats: list[int] = []
    failed_once = threading.Event()

    def beat() -> bool:
        if not failed_once.is_set():
            failed_once.set()
            raise ConnectionError("a blip")
        beats.append(1)
        return len(beats) < 3

    with Watchdog(beat, 0.01, name="test-watchdog"):
        wait_for(lambda: len(beats) == 3, "three beats after the failing one")
    assert failed_once.is_set() and len(beats) == 3  # returned False at the third: no fourth beat

    with pytest.raises(ValueError):
        Watchdog(beat, 0, name="bad")
