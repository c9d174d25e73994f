"""The local stack behind `make services`: Kafka (KRaft), ClickHouse and Redis
as background processes owned by the project, state under `settings.local_dir`."""
from __future__ import annotations

from typing import ContextManager

from app.localstack.clickhouse import ClickHouse
from app.localstack.kafka import Kafka
from app.localstack.proc import ServiceError, exclusive
from app.localstack.redis import Redis
from app.localstack.service import LocalService, State, Status
from app.settings import Settings

# Longer than the slowest `up` (first Kafka download + JVM start on a busy box).
LOCK_TIMEOUT_S = 900.0

__all__ = ["ServiceError", "LocalService", "State", "Status", "services", "lifecycle_lock"]

# Start order: the quick ones first, so a Kafka problem does not hide them.
SERVICE_CLASSES: tuple[type[LocalService], ...] = (Redis, ClickHouse, Kafka)


def services(settings: Settings, names: tuple[str, ...] = ()) -> list[LocalService]:
    """The services to act on, all of them when `names` is empty."""
    unknown = set(names) - {cls.name for cls in SERVICE_CLASSES}
    if unknown:
        raise ServiceError(f"unknown service(s): {', '.join(sorted(unknown))}")
    return [cls(settings) for cls in SERVICE_CLASSES if not names or cls.name in names]


def lifecycle_lock(settings: Settings) -> ContextManager[None]:
    """Serialise `up`/`down` between concurrent invocations on this machine."""
    return exclusive(settings.local_dir / "services.lock", LOCK_TIMEOUT_S)
