"""Which between-deployments steps an environment's pass runs (``orchestrator.idle_steps``, pure):
a step is left out only when it would find nothing to do."""

from __future__ import annotations

from conveyor.deploy.orchestrator import IDLE_STEPS, EnvFacts, idle_steps

ALIVE = {"h1", "h2"}


def steps(facts: EnvFacts, alive: set[str] = ALIVE, drained: set[str] | None = None, heal: bool = True) -> set[str]:
    return set(idle_steps(facts, alive, drained or set(), heal))


def test_an_environment_serving_its_current_release_has_nothing_to_do() -> None:
    assert steps(EnvFacts(current=3, instances=((3, "h1", False), (3, "h2", False)))) == set()
    assert steps(EnvFacts()) == set()  # nothing deployed yet


def test_instances_of_a_release_neither_current_nor_routed_are_retired() -> None:
    assert steps(EnvFacts(current=3, instances=((3, "h1", False), (2, "h2", False)))) == {"retire"}
    # a routed release (a canary, a paused deployment's) is kept, and so is a warm one still baking:
    # retire decides that from the releases' rows
    assert steps(EnvFacts(current=3, routed=frozenset({2, 3}), instances=((2, "h2", False),))) == set()
    assert steps(EnvFacts(current=None, instances=((1, "h1", False),))) == {"retire"}  # a failed first deploy's


def test_draining_instances_are_reaped_and_are_never_lost_or_moved() -> None:
    facts = EnvFacts(current=3, instances=((3, "h1", False), (3, "gone", True)))
    assert steps(facts, drained={"gone"}) == {"reap"}


def test_a_serving_instance_on_a_host_that_is_not_alive_is_healed_once_hosts_may_be_judged() -> None:
    facts = EnvFacts(current=3, instances=((3, "h1", False), (3, "h3", False)))
    assert steps(facts) == {"heal"}
    assert steps(facts, heal=False) == set()  # a control plane just started: hosts have not reported yet


def test_restarts_scale_counts_and_autoscalers_run_their_steps() -> None:
    base = EnvFacts(current=1, instances=((1, "h1", False),))
    assert steps(EnvFacts(**{**base.__dict__, "restarting": True})) == {"restart"}
    assert steps(EnvFacts(**{**base.__dict__, "scaled": True})) == {"scale"}
    assert steps(EnvFacts(**{**base.__dict__, "autoscaled": True})) == {"autoscale"}


def test_a_serving_instance_on_a_drained_host_is_moved_by_holding_the_counts() -> None:
    facts = EnvFacts(current=1, instances=((1, "h1", False), (1, "h2", False)))
    assert steps(facts, drained={"h2"}) == {"scale"}
    assert steps(facts, drained={"h9"}) == set()


def test_every_step_is_named_in_the_pass_order() -> None:
    every = EnvFacts(current=1, instances=((0, "x", False), (1, "d", True), (1, "dr", False)), restarting=True,
                     scaled=True, autoscaled=True)
    assert steps(every, alive={"d"}, drained={"dr"}) == set(IDLE_STEPS)
