"""Prometheus gauges of release rollouts (:mod:`.rollout`), read from the database at each scrape.

For the :data:`MAX_ROLLOUTS` most recently started rollouts: the share of the fleet each covers, its state (the
newest is the one hubs follow, ``active`` or ``paused`` — by the operator or by the failure threshold; older ones
are ``superseded``) and the outcomes hubs reported for its release. The ``version`` label is a release the operator
started a rollout of; an outcome a hub reports for any other version is not exported, so a hub cannot add series.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, get_args

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from cloud_sync import releases as rel
from cloud_sync.register.rollout import release_outcomes, release_rollouts

MAX_ROLLOUTS: Final = 5
STATES: Final = ("active", "paused", "superseded")
OUTCOMES: Final[tuple[str, ...]] = get_args(rel.OutcomeKind)


class RolloutCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterable[Metric]:
        r, oc = release_rollouts.c, release_outcomes.c
        with self._engine.connect() as conn:
            rollouts = conn.execute(
                select(r.version, r.percent, r.state).order_by(r.started_at.desc()).limit(MAX_ROLLOUTS)
            ).all()
            versions = [v for v, _, _ in rollouts]
            reported = conn.execute(
                select(oc.version, oc.outcome, func.count())
                .where(oc.version.in_(versions))
                .group_by(oc.version, oc.outcome)
            ).all()
        percent = GaugeMetricFamily(
            "kotihub_register_rollout_percent", "The share of hubs (by cohort) a rollout covers.", labels=["version"]
        )
        state = GaugeMetricFamily(
            "kotihub_register_rollout_state",
            "1 for the rollout's state: active or paused (the newest, which hubs follow) or superseded.",
            labels=["version", "state"],
        )
        outcomes = GaugeMetricFamily(
            "kotihub_register_rollout_outcomes",
            "Hubs by the outcome they last reported for the rollout's release.",
            labels=["version", "outcome"],
        )
        counts = {(v, o): 0 for v in versions for o in OUTCOMES}
        for version, outcome, n in reported:
            if (version, outcome) in counts:
                counts[(version, outcome)] = n
        for i, (version, pct, st) in enumerate(rollouts):
            percent.add_metric([version], pct)
            now_in = st if i == 0 and st in STATES else "superseded"
            for s in STATES:
                state.add_metric([version, s], 1 if s == now_in else 0)
        for (version, outcome), n in counts.items():
            outcomes.add_metric([version, outcome], n)
        return (percent, state, outcomes)
