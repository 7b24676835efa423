"""Simulated studies for the statistics' guards: a host whose speed drifts, launches that
differ from one another, noisy rounds and the odd outlier round, measured in interleaved
blocks, and the racing procedure of ``deploybench.stats`` run on them to the end.

The model (all effects multiplicative, so on the log scale they add):

- host drift: a random walk of the host's speed, one step per block (sd ``drift_step``)
  and a smaller one per round within a block (``round_drift``), shared by every scenario;
- launch effect: each launch of a scenario draws a factor, sd ``launch_sd`` (a few %), or
  the scenario's own in ``launch_sd_of`` (unequal launch variances);
- round noise: each round draws a factor, sd ``round_sd``;
- outliers: a round is, with probability ``outlier_rate``, ``outlier_factor`` times slower
  (uniform in that range).

A launch epoch launches every active scenario once and runs ``blocks`` blocks, each a round
of every active scenario in a fresh random order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from deploybench.stats import EpochPlan, Round, plan_epoch

#: The default budget of a simulated race: at most this many launch epochs.
MAX_EPOCHS = 10
#: Costs given to the planner (IC tiny on BM: about 3.7 s to launch, 0.3 s a round).
LAUNCH_S, ROUND_S = 4.0, 0.3


@dataclass(frozen=True)
class HostModel:
    drift_step: float = 0.01
    round_drift: float = 0.002
    launch_sd: float = 0.02
    round_sd: float = 0.01
    outlier_rate: float = 0.03
    outlier_factor: tuple[float, float] = (1.5, 3.0)
    launch_sd_of: tuple[tuple[str, float], ...] = ()  # (scenario, its launch sd)


@dataclass
class SimulatedStudy:
    """One study on one simulated host: the true mean E2E of each scenario (ms)."""

    true_ms: Mapping[str, float]
    model: HostModel = HostModel()
    seed: int = 0
    rounds: list[Round] = field(default_factory=list)
    epochs: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.host_log = 0.0

    def run_epoch(self, active: Sequence[str], blocks: int) -> list[Round]:
        """Launch every scenario in ``active`` once and run ``blocks`` blocks of them."""
        m, rng = self.model, self.rng
        names = list(active)
        own = dict(m.launch_sd_of)
        launch_effect = rng.normal(0.0, 1.0, len(names)) * np.array([own.get(n, m.launch_sd) for n in names])
        n = len(names) * blocks
        noise = rng.normal(0.0, m.round_sd, n)
        wander = rng.normal(0.0, m.round_drift, n)
        steps = rng.normal(0.0, m.drift_step, blocks)
        hiccup = np.where(rng.random(n) < m.outlier_rate,
                          np.log(rng.uniform(*m.outlier_factor, n)), 0.0)
        new: list[Round] = []
        i = 0
        for b in range(blocks):
            self.host_log += steps[b]
            block = f"e{self.epochs}b{b}"
            for j in rng.permutation(len(names)):
                self.host_log += wander[i]
                log_ms = (np.log(self.true_ms[names[j]]) + self.host_log + launch_effect[j]
                          + noise[i] + hiccup[i])
                new.append(Round(names[j], f"{names[j]}@{self.epochs}", float(np.exp(log_ms)),
                                 block))
                i += 1
        self.epochs += 1
        self.rounds += new
        return new


def race(study: SimulatedStudy, scenarios: Sequence[str] = (),
         claims: Sequence[tuple[str, str]] = (), *, max_epochs: int = MAX_EPOCHS,
         **options) -> EpochPlan:
    """Run the racing procedure on ``study`` until every needed decision is made or the
    budget of ``max_epochs`` launch epochs is spent; the last plan says where it stands."""
    while True:
        plan = plan_epoch(study.rounds, scenarios, claims, launch_s=LAUNCH_S, round_s=ROUND_S,
                          **options)
        if plan.done or study.epochs >= max_epochs:
            return plan
        study.run_epoch(plan.active, plan.blocks_per_launch)
