"""`make run`'s check before it starts anything: settings valid, an API key set, Redis and storage reachable.

Run as `python -m api.preflight`; exit status 1 with a message saying what to do.
"""

import sys

import redis
from pydantic import ValidationError

from api.config import ApiSettings
from jobs.storage import StorageError, open_storage


def main() -> None:
    try:
        settings = ApiSettings()
    except ValidationError as err:
        problems = "\n".join(f"  PAINTS_UNDO_{str(e['loc'][0]).upper()}: {e['msg']}" for e in err.errors())
        example = "Example: PAINTS_UNDO_API_KEYS=$(openssl rand -hex 24)"
        sys.exit(f"The service settings are not valid:\n{problems}\n{example}")
    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as err:
        sys.exit(
            f"Redis at {settings.redis_url} is unreachable ({err}).\n"
            "Start it (redis-server --daemonize yes) or point PAINTS_UNDO_REDIS_URL at one."
        )
    try:
        open_storage(settings).check()
    except (StorageError, ValueError) as err:
        sys.exit(f"Storage is not usable: {err}")
    print(
        f"API on {settings.base_url} with {len(settings.api_keys)} API key(s); storage {settings.storage_url}; "
        f"model {settings.model}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
