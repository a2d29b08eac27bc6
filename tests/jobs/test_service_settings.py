"""ServiceSettings refuse combinations that would not work, naming the variables."""

import pytest
from pydantic import ValidationError

from jobs.settings import ServiceSettings


@pytest.mark.parametrize(("soft", "hard"), [(3600, 3600), (600, 300)])
def test_the_hard_time_limit_must_come_after_the_soft_one(soft: int, hard: int) -> None:
    with pytest.raises(ValidationError, match="PAINTS_UNDO_JOB_TIME_LIMIT .* must be above"):
        ServiceSettings(job_soft_time_limit=soft, job_time_limit=hard)


@pytest.mark.parametrize("prefix", ["", "has space", "x" * 33])
def test_the_redis_prefix_is_a_short_plain_name(prefix: str) -> None:
    with pytest.raises(ValidationError, match="redis_prefix"):
        ServiceSettings(redis_prefix=prefix)
