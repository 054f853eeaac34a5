"""Seeded card-transaction simulator after Le Borgne et al.'s handbook (chapter 3).

Same model as the handbook's simulator, vectorised over customers and days instead of looping
per customer, so 1.7M transactions take seconds. One `numpy.random.Generator` drives everything:
the same params and seed give an identical frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from domains.common.errors import PipelineError
from domains.fraud.params import SyntheticParams

DAY_S = 86_400
FRAUD_AMOUNT = 220.0  # scenario 1: any larger amount is fraud
TERMINAL_DAYS = 28  # scenario 2: a compromised terminal stays compromised this long
CUSTOMER_DAYS = 14  # scenario 3: a compromised card stays compromised this long
COLUMNS = [
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
]


def generate_transactions(p: SyntheticParams, seed: int) -> pd.DataFrame:
    """The handbook's transactions table (columns `COLUMNS`), sorted by time."""
    try:
        start = pd.Timestamp(p.start_date).to_datetime64().astype("datetime64[ns]")
    except ValueError:
        raise PipelineError(f"synthetic.start_date: not a date: {p.start_date!r}") from None
    rng = np.random.default_rng(seed)
    n_c, n_d = p.n_customers, p.n_days

    # Profiles: customers and terminals uniform on a 100x100 grid.
    cust_xy = rng.uniform(0, 100, (n_c, 2))
    mean_amount = rng.uniform(5, 100, n_c)
    std_amount = mean_amount / 2
    mean_nb_tx = rng.uniform(0, 4, n_c)
    term_xy = rng.uniform(0, 100, (p.n_terminals, 2))
    reach_start, reach_count, reach_terms = _terminals_within(cust_xy, term_xy, p.radius)

    # Transactions in (customer, day) order: contiguous per customer, days ascending.
    counts = rng.poisson(mean_nb_tx[:, None], (n_c, n_d))
    counts[reach_count == 0] = 0  # no reachable terminal, no transaction
    flat = counts.ravel()
    cust = np.repeat(np.repeat(np.arange(n_c), n_d), flat)
    day = np.repeat(np.tile(np.arange(n_d), n_c), flat)
    n = len(cust)
    secs = _time_of_day(rng, n)
    amount = rng.normal(mean_amount[cust], std_amount[cust])
    neg = amount < 0
    amount[neg] = rng.uniform(0, 2 * mean_amount[cust[neg]])
    amount = np.round(amount, 2)
    term = reach_terms[reach_start[cust] + rng.integers(0, np.maximum(reach_count[cust], 1))]

    # Fraud scenarios, applied in the handbook's order (a later one overwrites an earlier one).
    scenario = np.zeros(n, dtype=np.int64)
    scenario[amount > FRAUD_AMOUNT] = 1
    comp_terms = _daily_picks(rng, p.n_terminals, n_d, p.compromised_terminals_per_day)
    scenario[_active(comp_terms, p.n_terminals, n_d, TERMINAL_DAYS)[term, day]] = 2
    comp_cust = _daily_picks(rng, n_c, n_d, p.compromised_customers_per_day)
    stolen = _third_of_compromised(rng, cust * n_d + day, comp_cust, n_d)
    amount[stolen] = np.round(amount[stolen] * 5, 2)
    scenario[stolen] = 3

    tx_seconds = day * DAY_S + secs
    order = np.argsort(tx_seconds, kind="stable")
    tx_seconds = tx_seconds[order]
    scenario = scenario[order]
    return pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(n, dtype=np.int64),
            "TX_DATETIME": start + tx_seconds.astype("timedelta64[s]"),
            "CUSTOMER_ID": cust[order],
            "TERMINAL_ID": term[order],
            "TX_AMOUNT": amount[order],
            "TX_TIME_SECONDS": tx_seconds,
            "TX_TIME_DAYS": day[order],
            "TX_FRAUD": (scenario > 0).astype(np.int64),
            "TX_FRAUD_SCENARIO": scenario,
        },
        columns=COLUMNS,
    )


def _terminals_within(
    cust_xy: np.ndarray, term_xy: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR lists of the terminals strictly within `radius` of each customer: (start, count, terminals)."""
    chunk = max(1, 4_000_000 // max(len(term_xy), 1))  # bounds the distance matrix to ~32 MB
    custs, terms = [], []
    for s in range(0, len(cust_xy), chunk):
        dx = cust_xy[s : s + chunk, 0, None] - term_xy[None, :, 0]
        dy = cust_xy[s : s + chunk, 1, None] - term_xy[None, :, 1]
        c, t = np.nonzero(dx * dx + dy * dy < radius * radius)  # row-major: sorted by customer
        custs.append(c + s)
        terms.append(t)
    cust = np.concatenate(custs)
    count = np.bincount(cust, minlength=len(cust_xy))
    start = np.cumsum(count) - count
    # Pad one entry so customers without terminals index safely (they have no transactions).
    return start, count, np.concatenate([np.concatenate(terms), [0]])


def _time_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Whole seconds ~ N(noon, 20000 s), redrawn until inside the day."""
    secs = rng.normal(DAY_S / 2, 20_000, n)
    bad = (secs < 0) | (secs >= DAY_S)
    while bad.any():
        secs[bad] = rng.normal(DAY_S / 2, 20_000, int(bad.sum()))
        bad = (secs < 0) | (secs >= DAY_S)
    return secs.astype(np.int64)


def _daily_picks(rng: np.random.Generator, n: int, n_days: int, k: int) -> np.ndarray:
    """(n_days, k) distinct ids drawn each day (k capped at n)."""
    k = min(k, n)
    return np.stack([rng.choice(n, size=k, replace=False) for _ in range(n_days)]).reshape(n_days, k)


def _active(picks: np.ndarray, n: int, n_days: int, duration: int) -> np.ndarray:
    """Boolean (id, day): id was picked on one of the `duration` days up to and including day."""
    days = np.broadcast_to(np.arange(n_days)[:, None], picks.shape)
    delta = np.zeros((n, n_days + 1), dtype=np.int64)
    np.add.at(delta, (picks, days), 1)
    np.add.at(delta, (picks, np.minimum(days + duration, n_days)), -1)
    return np.cumsum(delta, axis=1)[:, :n_days] > 0


def _third_of_compromised(rng: np.random.Generator, cust_day: np.ndarray, picks: np.ndarray, n_days: int) -> np.ndarray:
    """Scenario 3: per compromise event, a random third of the card's transactions in the next 14 days.

    `cust_day` (= customer * n_days + day) is non-decreasing, so each event's transactions form one
    slice found by searchsorted. Overlapping events of one card pick their thirds independently.
    """
    day = np.broadcast_to(np.arange(n_days)[:, None], picks.shape).ravel()
    cust = picks.ravel()
    lo = np.searchsorted(cust_day, cust * n_days + day)
    hi = np.searchsorted(cust_day, cust * n_days + np.minimum(day + CUSTOMER_DAYS, n_days))
    size = hi - lo
    event = np.repeat(np.arange(len(size)), size)
    tx = lo[event] + np.arange(len(event)) - np.repeat(np.cumsum(size) - size, size)
    # Rank the transactions of each event in random order and keep the first floor(size / 3).
    order = np.lexsort((rng.random(len(tx)), event))
    rank = np.arange(len(tx)) - np.repeat(np.cumsum(size) - size, size)
    keep = rank < (size // 3)[event[order]]
    return np.unique(tx[order][keep])
