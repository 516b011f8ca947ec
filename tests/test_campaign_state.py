"""The campaign state record: round trip, old versions, malformed records, and a resume after
SIGKILL between executions that continues with the same times-chosen and RNG state."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest

from covfuzz.campaign.state import (CampaignState, CampaignStateError, Counters, restore_rng,
                                    rng_state)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_state_round_trips_with_rng_and_times_chosen():
    rng = random.Random(7)
    rng.random()
    state = CampaignState(counters=Counters(execs=5, elapsed=12.5, next_gen_seed=60,
                                            outcomes={"pass": 4, "mismatch": 1},
                                            by_mutator={"splice": {"proposals": 2, "wins": 1}}),
                          rng=rng_state(rng), times_chosen={"0123456789abcdef": 3},
                          mutator_stats={"splice": {"wins": 1, "tries": 2}},
                          strategies={"mutate": {"gain": 1.0, "cost": 2.0, "tries": 1}},
                          traits={"table": {}, "total_gain": 0.0, "total_seconds": 0.0, "executions": 0})
    info = json.loads(json.dumps({"covfuzz": "x", "state": state.to_record()}))
    assert "traits" not in info["state"]  # a record of its own, saved less often
    back = CampaignState.from_info(info, json.loads(json.dumps(state.traits)))
    assert back.to_record() == state.to_record() and back.traits == state.traits
    again = random.Random()
    restore_rng(again, back.rng)
    assert again.random() == rng.random()


def test_version_1_state_still_loads():
    info = {"state": {"execs": 3, "elapsed": 1.0, "next_gen_seed": 12, "restarts": 0,
                      "last_new_feature": None, "last_new_failure": 1.7e9, "proposals": 0,
                      "valid": 0, "ran": 3, "by_mutator": {}, "outcomes": {"pass": 3}},
            "scheduler": {"mutators": {"splice": {"wins": 0, "tries": 1}}},
            "bandits": {"strategies": {}, "settings": {}}, "traits": None}
    state = CampaignState.from_info(info)
    assert state.counters.execs == 3 and state.rng is None and state.times_chosen == {}
    assert state.mutator_stats == {"splice": {"wins": 0, "tries": 1}}


@pytest.mark.parametrize("record", [
    {"version": 2, "counters": {"execs": -1}},
    {"version": 2, "counters": {"elapsed": "12"}},
    {"version": 2, "counters": {"last_new_feature": 1e20}},
    {"version": 2, "rng": [3, [1, 2], None]},
    {"version": 2, "scheduler": {"times_chosen": {"a": "x"}}},
    {"version": 9},
    {"version": 2.0},
    {"version": True},
    [1, 2],
])
def test_malformed_state_is_one_error(record):
    with pytest.raises(CampaignStateError):
        CampaignState.from_info({"state": record})


CHILD = textwrap.dedent("""
    import json, os, signal, sys
    from covfuzz.campaign import Campaign, CampaignOptions
    from covfuzz.campaign.stages import Stage
    from covfuzz.campaign.state import rng_state
    from covfuzz.generator import GenOptions

    directory, snapshot = sys.argv[1], sys.argv[2]

    class KillAfterPicks(Stage):
        # A stage (the base class does nothing for the hooks this one leaves out): once
        # seeds have been chosen for mutation, note the in-memory state and
        # SIGKILL this process between two executions (no `finally` runs).
        def process(self, ex, campaign):
            chosen = campaign.seeds.times_chosen()
            if (chosen and campaign.counters.execs >= 3) or campaign.counters.execs >= 12:
                with open(snapshot, "w") as handle:
                    json.dump({"times_chosen": chosen, "rng": rng_state(campaign.rng),
                               "execs": campaign.counters.execs,
                               "strategies": campaign.candidates.strategies.state()}, handle)
                os.kill(os.getpid(), signal.SIGKILL)

    opts = CampaignOptions(workers=1, execs=40, initial_seeds=1, gen_candidates=2, quiet=True,
                           gen=GenOptions(max_nodes=3))
    Campaign(directory, opts, stages=[KillAfterPicks()]).run()
""")


@pytest.mark.slow
def test_resume_after_sigkill_has_the_same_times_chosen_and_rng(tmp_path):
    from covfuzz.campaign import Campaign, CampaignOptions

    directory, snapshot = tmp_path / "camp", tmp_path / "snapshot.json"
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(directory), str(snapshot)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    before = json.loads(snapshot.read_text())
    campaign = Campaign(str(directory), CampaignOptions(workers=1, quiet=True))
    try:
        assert campaign.counters.execs == before["execs"]
        assert campaign.seeds.times_chosen() == before["times_chosen"]
        assert rng_state(campaign.rng) == before["rng"]
        assert campaign.candidates.strategies.state() == before["strategies"]
    finally:
        campaign.close()


def test_saving_drops_version_1_keys_and_keeps_the_trait_table_apart(tmp_path):
    from corpus import CorpusStore
    from covfuzz.campaign import Campaign, CampaignOptions
    from covfuzz.campaign.loop import TRAITS_RECORD
    from covfuzz import workdir

    directory = tmp_path / "camp"
    v1_traits = {"table": {"op:torch.sin": [5.0, 1, 2.0]}, "total_gain": 5.0,
                 "total_seconds": 2.0, "executions": 1}
    with CorpusStore(workdir.corpus_path(str(directory))) as store:
        store.set_info({"covfuzz": "0", "torch": "x", "mode": "feedback",
                        "state": {"execs": 3, "elapsed": 1.0}, "scheduler": {"mutators": {}},
                        "bandits": {"strategies": {}, "settings": {}}, "traits": v1_traits})
    campaign = Campaign(str(directory), CampaignOptions(quiet=True))
    try:
        assert campaign.counters.execs == 3 and campaign.candidates.trait_yield.executions == 1
        campaign.save_state()
        info = campaign.store.get_info()
        assert not {"scheduler", "bandits", "traits"} & set(info)
        assert info["state"]["version"] == 2
        assert campaign.store.get_info_record(TRAITS_RECORD)["table"] == v1_traits["table"]
    finally:
        campaign.close()
