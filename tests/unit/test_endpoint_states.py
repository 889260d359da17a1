"""Every (status, event) pair of the endpoint state machine: the legal moves and the refused ones."""

from __future__ import annotations

import itertools

import pytest

from launch.server.domain.endpoint_states import EndpointStatus as S
from launch.server.domain.endpoint_states import Event as E
from launch.server.domain.endpoint_states import IllegalTransition, transition

LEGAL = {
    (S.UPDATE_PENDING, E.STARTING): S.UPDATE_IN_PROGRESS,
    (S.UPDATE_PENDING, E.WORKER_READY): S.READY,
    (S.UPDATE_PENDING, E.FAILED): S.UPDATE_FAILED,
    (S.UPDATE_PENDING, E.EDITED): S.UPDATE_PENDING,
    (S.UPDATE_IN_PROGRESS, E.STARTING): S.UPDATE_IN_PROGRESS,
    (S.UPDATE_IN_PROGRESS, E.WORKER_READY): S.READY,
    (S.UPDATE_IN_PROGRESS, E.FAILED): S.UPDATE_FAILED,
    (S.UPDATE_IN_PROGRESS, E.EDITED): S.UPDATE_PENDING,
    (S.READY, E.STARTING): S.READY,  # scaling up or rolling out keeps a READY endpoint READY
    (S.READY, E.WORKER_READY): S.READY,
    (S.READY, E.FAILED): S.UPDATE_FAILED,
    (S.READY, E.EDITED): S.UPDATE_PENDING,
    (S.UPDATE_FAILED, E.EDITED): S.UPDATE_PENDING,
    (S.UPDATE_FAILED, E.FAILED): S.UPDATE_FAILED,
    # a worker that does not fit on the host leaves the status as it is, with the reason
    (S.UPDATE_PENDING, E.WAITING): S.UPDATE_PENDING,
    (S.UPDATE_IN_PROGRESS, E.WAITING): S.UPDATE_IN_PROGRESS,
    (S.READY, E.WAITING): S.READY,
    **{(status, E.DELETE): S.DELETE_IN_PROGRESS for status in S},
}
ALL_PAIRS = list(itertools.product(S, E))
ILLEGAL = [pair for pair in ALL_PAIRS if pair not in LEGAL]


@pytest.mark.parametrize(("current", "event"), list(LEGAL), ids=lambda v: str(v))
def test_legal_transition(current: S, event: E) -> None:
    assert transition(current, event) is LEGAL[(current, event)]


@pytest.mark.parametrize(("current", "event"), ILLEGAL, ids=lambda v: str(v))
def test_illegal_transition_raises(current: S, event: E) -> None:
    with pytest.raises(IllegalTransition):
        transition(current, event)


def test_the_table_covers_every_pair() -> None:
    assert len(LEGAL) + len(ILLEGAL) == len(S) * len(E) == 30
    # the refused moves that matter: a failed endpoint cannot become ready without an edit, and nothing
    # brings back an endpoint that is being deleted
    assert (S.UPDATE_FAILED, E.WORKER_READY) in ILLEGAL
    assert (S.UPDATE_FAILED, E.STARTING) in ILLEGAL
    assert {(S.DELETE_IN_PROGRESS, e) for e in E if e is not E.DELETE} <= set(ILLEGAL)


def test_happy_path_walk() -> None:
    status = S.UPDATE_PENDING
    for event, expected in [(E.STARTING, S.UPDATE_IN_PROGRESS), (E.WORKER_READY, S.READY),
                            (E.EDITED, S.UPDATE_PENDING), (E.FAILED, S.UPDATE_FAILED),
                            (E.EDITED, S.UPDATE_PENDING), (E.DELETE, S.DELETE_IN_PROGRESS)]:
        status = transition(status, event)
        assert status is expected
